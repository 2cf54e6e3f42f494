"""Plain-terminal chat (`swiftdeck chat`): `python -m engine.chat_cli [--model M] [--adapters CKPT ...] [--once P]`.

The model runs in a chat worker process (engine/chat_worker.py). Interactive commands: `clear` (forget the
history), `exit`/`quit`, `/use base|NAME|CKPT` (switch target without reloading the base), `/stats`, `/help`.
Ctrl-C stops the answer being written; at the prompt Ctrl-D leaves. Messages go to stderr, answers to stdout.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from engine.chat_client import BASE, ChatClient, ChatClientError, adapter_name_for

EXIT_USAGE, EXIT_FAILED = 2, 1
HELP = ("commands: clear | exit | /use base|NAME|CKPT | /stats | /help   (Ctrl-C stops an answer)")


def build_parser() -> argparse.ArgumentParser:
    return add_arguments(argparse.ArgumentParser(prog="swiftdeck chat",
                                                 description="Chat with a base model and its LoRA adapters."))


def add_arguments(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p.add_argument("--model", help="base model folder or id (default: from the first adapter's args.json)")
    p.add_argument("--adapters", nargs="+", action="extend", default=[], metavar="[NAME=]CKPT",
                   help="LoRA checkpoint folder(s); the first one is the chat target")
    p.add_argument("--model_type", "--model-type", dest="model_type")
    p.add_argument("--template")
    p.add_argument("--system", help="system prompt (default: the checkpoint's)")
    p.add_argument("--torch_dtype", "--torch-dtype", dest="torch_dtype", help="ignored on CPU (always float32)")
    p.add_argument("--target", help="chat with this adapter name, or 'base'")
    p.add_argument("--once", metavar="PROMPT", help="print one answer and exit")
    p.add_argument("--temperature", type=float, default=0.0)
    p.add_argument("--top_p", "--top-p", dest="top_p", type=float)
    p.add_argument("--top_k", "--top-k", dest="top_k", type=int)
    p.add_argument("--max_new_tokens", "--max-new-tokens", dest="max_new_tokens", type=int, default=512)
    p.add_argument("--repetition_penalty", "--repetition-penalty", dest="repetition_penalty", type=float)
    p.add_argument("--log", type=Path, help="worker log file (default: in the swiftdeck data dir)")
    return p


def parse_adapters(items: list[str]) -> dict[str, str]:
    """`NAME=PATH` or `PATH` (named after its folder) -> {name: absolute path}; raises ValueError for bad input."""
    adapters: dict[str, str] = {}
    for item in items:
        name, sep, path = item.partition("=")
        if not sep or Path(item).expanduser().exists():
            name, path = "", item
        folder = Path(path).expanduser()
        if not folder.is_dir():
            raise ValueError(f"adapter checkpoint not found: {path}")
        adapters[name or adapter_name_for(folder.absolute(), adapters)] = str(folder.absolute())
    return adapters


def stream_answer(client: ChatClient, prompt: str, gen: dict) -> None:
    stream = client.chat(prompt, **gen)
    try:
        for piece in stream:
            sys.stdout.write(piece)
            sys.stdout.flush()
    except KeyboardInterrupt:
        stream.cancel()
        stream.text()  # drain to the `done` event
        sys.stdout.write(" [stopped]")
    sys.stdout.write("\n")
    sys.stdout.flush()


def interactive(client: ChatClient, gen: dict) -> None:
    try:
        import readline  # noqa: F401 - line editing and history for input()
    except ImportError:
        pass
    print(HELP, file=sys.stderr)
    while True:
        try:
            line = input(f"[{client.target}] >>> ").strip()
        except EOFError:
            print(file=sys.stderr)
            return
        except KeyboardInterrupt:
            print(file=sys.stderr)
            continue
        if not line:
            continue
        if line in ("exit", "quit"):
            return
        try:
            if line == "clear":
                client.clear()
                print("(history cleared)", file=sys.stderr)
            elif line in ("/help", "help"):
                print(HELP, file=sys.stderr)
            elif line == "/stats":
                print(json.dumps(client.stats(), ensure_ascii=False, indent=1), file=sys.stderr)
            elif line.startswith("/use"):
                target = line[4:].strip()
                took = client.switch(target or BASE)
                print(f"(now chatting with {client.target}; switch took {took:.3f} s)", file=sys.stderr)
            else:
                stream_answer(client, line, gen)
        except ChatClientError as e:
            print(f"error: {e}", file=sys.stderr)
            if not client.alive:
                raise


def main(argv: list[str] | None = None) -> int:
    return run(build_parser().parse_args(argv))


def run(args: argparse.Namespace) -> int:
    try:
        adapters = parse_adapters(args.adapters)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USAGE
    if not args.model and not adapters:
        print("error: give --model and/or --adapters CKPT", file=sys.stderr)
        return EXIT_USAGE
    gen = {k: getattr(args, k) for k in ("temperature", "top_p", "top_k", "max_new_tokens", "repetition_penalty")}
    if args.system is not None:
        gen["system"] = args.system
    print("loading the model in a chat worker...", file=sys.stderr)
    client = None
    try:
        client = ChatClient.start(args.model, adapters=adapters, model_type=args.model_type, template=args.template,
                                  torch_dtype=args.torch_dtype, target=args.target, log_path=args.log)
        if args.target and args.target != BASE and args.target not in client.adapters:
            raise ChatClientError(f"unknown --target {args.target!r}; loaded: {', '.join([BASE, *client.adapters])}")
        base = client.base
        print(f"model {base['model']} on {base['device']} ({base['dtype']}), adapters: "
              f"{', '.join(client.adapters) or 'none'}", file=sys.stderr)
        if args.once is not None:
            stream_answer(client, args.once, gen)
        else:
            interactive(client, gen)
        return 0
    except ChatClientError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        return 130
    finally:
        if client is not None:
            client.close()


if __name__ == "__main__":
    sys.exit(main())
