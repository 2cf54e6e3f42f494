"""Chat latency: the chat worker (separate process, JSON lines) against ms-swift's TransformersEngine called
directly in one process, on the same model, adapter, prompt and settings. Also: start-up, adapter attach, target
switch and cancel latency.

    .venv/bin/python bench/bench_chat.py --adapter CKPT [--runs 5] [--prompt 你是谁?] [--max-new-tokens 64] [--json F]

TTFT = request sent -> first non-empty text piece received; tokens/s = completion tokens / (request -> last piece).
"worker (client)" is measured in the client process (includes the pipe), "worker (self)" is the worker's own
figure. One warm-up answer per path is left out. No assertions: numbers go to docs (CHAT_PROTOCOL.md).
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.chat_client import ChatClient, target_from_checkpoint  # noqa: E402

LONG_PROMPT = "Tell me a long story."


def gpu_apps() -> dict[int, int] | None:
    """pid -> MiB held on the GPU (nvidia-smi), None without NVIDIA tools."""
    import shutil
    import subprocess

    if not shutil.which("nvidia-smi"):
        return None
    out = subprocess.run(["nvidia-smi", "--query-compute-apps=pid,used_memory", "--format=csv,noheader,nounits"],
                         capture_output=True, text=True).stdout
    return {int(pid): int(mib) for pid, mib in (line.split(",") for line in out.strip().splitlines() if "," in line)}


def summary(values: list[float]) -> str:
    if not values:
        return "n/a"
    return f"{statistics.median(values):.4g} (min {min(values):.4g}, max {max(values):.4g})"


def bench_worker(ckpt: Path, prompt: str, runs: int, max_new: int, log: Path) -> dict:
    res: dict = {}
    t0 = time.perf_counter()
    client = ChatClient.start(adapters={"robot": ckpt}, log_path=log)
    res["start_s"] = time.perf_counter() - t0
    res["base_load_s"] = client.base["load_s"]
    try:
        ttft_client, ttft_self, tps_client, tps_self, answer = [], [], [], [], ""
        for i in range(runs + 1):
            client.clear()
            t = time.perf_counter()
            stream = client.chat(prompt, temperature=0, max_new_tokens=max_new)
            answer = stream.text()
            total = time.perf_counter() - t
            if i == 0:
                continue  # warm-up
            done = stream.done
            ttft_client.append(stream.first_token_s)
            ttft_self.append(done["ttft_s"])
            tps_client.append(done["usage"]["completion_tokens"] / total)
            tps_self.append(done["tokens_per_s"])
        res.update(answer=answer, completion_tokens=done["usage"]["completion_tokens"],
                   ttft_client_s=ttft_client, ttft_self_s=ttft_self, tps_client=tps_client, tps_self=tps_self)

        # attaching a second adapter to the loaded base, then switching targets between answers
        added = client.add_adapter("robot2", ckpt)
        res["adapter_attach_s"] = added["load_s"]
        switch_s, first_answer_s = [], []
        for target in ["base", "robot", "robot2"] * max(1, runs // 2):
            switch_s.append(client.switch(target))
            client.clear()
            t = time.perf_counter()
            client.ask(prompt, temperature=0, max_new_tokens=max_new)
            first_answer_s.append(time.perf_counter() - t)
        res["switch_s"], res["answer_after_switch_s"] = switch_s, first_answer_s

        # cancel: ask the babbling base for a long answer, cancel after the 3rd piece
        cancel_s, after_cancel_tokens = [], []
        for _ in range(runs):
            client.clear()
            stream = client.chat(LONG_PROMPT, target="base", temperature=0, max_new_tokens=4000)
            n, t = 0, None
            for _piece in stream:
                n += 1
                if n == 3:
                    t = time.perf_counter()
                    stream.cancel()
            cancel_s.append(time.perf_counter() - t)
            after_cancel_tokens.append(stream.done["usage"]["completion_tokens"])
        res["cancel_to_done_s"], res["cancelled_at_tokens"] = cancel_s, after_cancel_tokens
        res["stats"] = client.stats()
        res["gpu_mib_while_loaded"] = (gpu_apps() or {}).get(client.pid)
    finally:
        t = time.perf_counter()
        res["clean_exit"] = client.close()
        res["close_s"] = time.perf_counter() - t
    apps = gpu_apps()
    res["gpu_mib_after_close"] = None if apps is None else apps.get(client.pid, 0)
    return res


def bench_direct(ckpt: Path, prompt: str, runs: int, max_new: int) -> dict:
    """ms-swift's API in this process, the way the worker drives it (base + AdapterRequest)."""
    t0 = time.perf_counter()
    import torch
    from swift import InferRequest, RequestConfig, TransformersEngine
    from swift.infer_engine import AdapterRequest

    res: dict = {"import_s": time.perf_counter() - t0}
    target = target_from_checkpoint(ckpt)
    device = "cuda:0" if torch.cuda.is_available() else "cpu"
    dtype = getattr(torch, target["torch_dtype"]) if device != "cpu" and target["torch_dtype"] else torch.float32
    t0 = time.perf_counter()
    engine = TransformersEngine(target["model"], model_type=target["model_type"], template_type=target["template"],
                                torch_dtype=dtype, device_map=device)
    res["base_load_s"] = time.perf_counter() - t0
    messages = [{"role": "system", "content": target["system"]}] if target["system"] else []
    messages.append({"role": "user", "content": prompt})
    config = RequestConfig(max_tokens=max_new, temperature=0, stream=True)
    adapter = AdapterRequest("robot", str(ckpt))
    ttft, tps, answer = [], [], ""
    for i in range(runs + 1):
        t = time.perf_counter()
        first, parts, usage = None, [], None
        for chunk in engine.infer([InferRequest(messages=messages)], config, use_tqdm=False,
                                  adapter_request=adapter)[0]:
            if chunk.choices[0].delta.content:
                first = first or time.perf_counter() - t
                parts.append(chunk.choices[0].delta.content)
            usage = chunk.usage
        total = time.perf_counter() - t
        answer = "".join(parts)
        if i:
            ttft.append(first)
            tps.append(usage.completion_tokens / total)
    res.update(answer=answer, completion_tokens=usage.completion_tokens, ttft_s=ttft, tps=tps, device=device)
    return res


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--adapter", type=Path, required=True, help="a trained checkpoint folder (args.json inside)")
    p.add_argument("--prompt", default="你是谁?")
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--max-new-tokens", type=int, default=64)
    p.add_argument("--json", type=Path, help="write all numbers here")
    p.add_argument("--log", type=Path, default=Path("/tmp/bench_chat_worker.log"))
    args = p.parse_args()
    ckpt = args.adapter.expanduser().absolute()

    worker = bench_worker(ckpt, args.prompt, args.runs, args.max_new_tokens, args.log)
    direct = bench_direct(ckpt, args.prompt, args.runs, args.max_new_tokens)
    out = {"machine": f"{platform.node()} {platform.machine()} cpus={__import__('os').cpu_count()}",
           "prompt": args.prompt, "runs": args.runs, "worker": worker, "direct": direct}
    if args.json:
        args.json.write_text(json.dumps(out, ensure_ascii=False, indent=1))

    print(f"device {worker['stats']['device']}; prompt {args.prompt!r}; {args.runs} runs after 1 warm-up; median (min, max)")
    print(f"answer (worker): {worker['answer']!r} ({worker['completion_tokens']} tokens)")
    print(f"answer (direct): {direct['answer']!r} ({direct['completion_tokens']} tokens)")
    print("| path | TTFT s | tokens/s |\n| --- | --- | --- |")
    print(f"| direct TransformersEngine (one process) | {summary(direct['ttft_s'])} | {summary(direct['tps'])} |")
    print(f"| worker, measured by the client | {summary(worker['ttft_client_s'])} | {summary(worker['tps_client'])} |")
    print(f"| worker, its own figures | {summary(worker['ttft_self_s'])} | {summary(worker['tps_self'])} |")
    print(f"worker start (spawn+imports+load): {worker['start_s']:.2f} s, of which base load {worker['base_load_s']} s;"
          f" direct: imports {direct['import_s']:.2f} s + load {direct['base_load_s']:.2f} s")
    print(f"adapter attach: {worker['adapter_attach_s']} s; switch call: {summary(worker['switch_s'])} s; "
          f"answer right after a switch: {summary(worker['answer_after_switch_s'])} s")
    print(f"cancel -> done: {summary(worker['cancel_to_done_s'])} s, stopped at {worker['cancelled_at_tokens']} "
          f"tokens of 4000")
    print(f"base loads {worker['stats']['base_loads']}, adapter loads {worker['stats']['adapter_loads']}, "
          f"worker RSS {worker['stats']['rss_mb']} MB; close {worker['close_s']:.2f} s, clean={worker['clean_exit']}")
    if worker["gpu_mib_after_close"] is not None:
        print(f"worker GPU memory: {worker['gpu_mib_while_loaded']} MiB loaded, "
              f"{worker['gpu_mib_after_close']} MiB after close")
    return 0


if __name__ == "__main__":
    sys.exit(main())
