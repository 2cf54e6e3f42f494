"""Chat worker process: `python -m engine.chat_worker`, spoken to in JSON lines (docs/CHAT_PROTOCOL.md).

It runs with the Python of the ms-swift environment swiftdeck drives (engine.swift_env) and loads one base model
with ms-swift's TransformersEngine (4.x; PtEngine in 3.x, see `swift_api`) and attaches any number of LoRA adapters to it by name
(ms-swift's per-request `AdapterRequest`, the mechanism `swift deploy` uses), so switching the chat target never
reloads the base. A reader thread takes stdin so that `cancel` arrives while the main thread is generating; the
cancel sets a flag that a stopping criterion checks after every token. stdout carries only protocol lines: fd 1 is
pointed at stderr at start-up so that library prints cannot corrupt the stream.
"""
from __future__ import annotations

import gc
import json
import os
import queue
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any, BinaryIO

from engine.chat_protocol import (BASE, DEFAULT_CONV, PROTOCOL_VERSION, ProtocolError, decode_request, encode, error,
                                  event)

DEFAULT_MAX_NEW_TOKENS = 512


class ChatError(Exception):
    """An expected failure whose message is shown to the user as is (no traceback)."""


class Output:
    """Protocol writer on a private copy of the original stdout; fd 1 then goes to stderr."""

    def __init__(self) -> None:
        sys.stdout.flush()
        self._file = os.fdopen(os.dup(1), "wb")
        os.dup2(2, 1)
        sys.stdout = sys.stderr
        self._lock = threading.Lock()

    def send(self, msg: dict[str, Any]) -> None:
        with self._lock:
            try:
                self._file.write(encode(msg))
                self._file.flush()
            except (BrokenPipeError, ValueError):  # the client is gone; the EOF on stdin ends us
                pass


def check_model_dir(model: str) -> None:
    path = Path(model).expanduser()
    if not path.exists():
        if path.is_absolute() or model.startswith((".", "~")):
            raise ChatError(f"model folder not found: {model}")
        return  # a hub id: ms-swift resolves it
    if not path.is_dir():
        raise ChatError(f"not a model folder: {model}")
    if (path / "adapter_config.json").is_file() and not (path / "config.json").is_file():
        raise ChatError(f"{model} is a LoRA adapter, not a base model: load its base and add it as an adapter")
    if not (path / "config.json").is_file():
        raise ChatError(f"not a model folder (no config.json): {model}")


def check_adapter_dir(path: Path) -> None:
    """Raise ChatError unless `path` is a LoRA/PEFT adapter folder (adapter_config.json)."""
    if not path.exists():
        raise ChatError(f"adapter folder not found: {path}")
    if not path.is_dir():
        raise ChatError(f"not an adapter folder: {path} is a file")
    if (path / "adapter_config.json").is_file():
        return
    if (path / "config.json").is_file() or path.name.endswith("-merged"):
        raise ChatError(f"{path} is a full model (merged?), not a LoRA adapter (no adapter_config.json): "
                        "load it as the base model instead")
    if any(path.glob("checkpoint-*/adapter_config.json")):
        raise ChatError(f"{path} is a run folder, not an adapter: pick one of its checkpoint-N folders")
    raise ChatError(f"not a LoRA adapter (no adapter_config.json): {path}")


def read_args(folder: Path) -> dict[str, Any]:
    try:
        return json.loads((folder / "args.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[-1] if text else ''}".rstrip(": ")


class Worker:
    def __init__(self, out: Output) -> None:
        self.out = out
        self.requests: queue.Queue[dict[str, Any]] = queue.Queue()
        self.engine: Any = None
        self.base: dict[str, Any] = {}  # the load request that built the engine
        self.device = "cpu"
        self.base_loads = 0
        self.adapter_loads = 0
        self.adapters: dict[str, dict[str, Any]] = {}  # public name -> {path, internal, system, load_s}
        self._next_internal = 0
        self.history: dict[str, list[dict[str, str]]] = {}
        self._lock = threading.Lock()
        self._pending: set[Any] = set()  # chat ids queued, not started
        self._cancelled: set[Any] = set()
        self._current: Any = None
        self.stop = threading.Event()  # checked by the stopping criterion after every generated token
        self._loop: Any = None  # ms-swift 3.x: the event loop of the last answer (see _fresh_event_loop)

    # ---- reader thread -------------------------------------------------------------------------------------------
    def read(self, stdin: BinaryIO) -> None:
        for line in stdin:
            if not line.strip():
                continue
            try:
                req = decode_request(line)
            except ProtocolError as e:
                self.out.send(error(_id_of(line), str(e)))
                continue
            op = req["op"]
            if op == "cancel":
                self._cancel(req["id"])
                continue
            if op == "chat":
                with self._lock:
                    self._pending.add(req["id"])
            if op == "shutdown":
                self._cancel_all()
            self.requests.put(req)
        self._cancel_all()  # EOF: the client is gone
        self.requests.put({"op": "shutdown"})

    def _cancel(self, req_id: Any) -> None:
        with self._lock:
            if req_id in self._pending:
                self._cancelled.add(req_id)
            if req_id == self._current:
                self.stop.set()

    def _cancel_all(self) -> None:
        with self._lock:
            self._cancelled |= self._pending
            if self._current is not None:
                self.stop.set()

    # ---- main thread ---------------------------------------------------------------------------------------------
    def serve(self) -> None:
        self.out.send(event("ready", pid=os.getpid(), protocol=PROTOCOL_VERSION))
        while True:
            req = self.requests.get()
            op = req["op"]
            if op == "shutdown":
                self.out.send(event("bye", req.get("id")))
                return
            try:
                getattr(self, f"op_{op}")(req)
            except ChatError as e:
                self.out.send(error(req.get("id"), str(e), op))
            except Exception as e:  # noqa: BLE001 - reported, logged, the worker stays alive
                traceback.print_exc()
                self.out.send(error(req.get("id"), one_line(e), op))

    def op_load(self, req: dict[str, Any]) -> None:
        key = {k: req.get(k) for k in ("model", "model_type", "template", "torch_dtype")}
        if self.engine is None or key != {k: self.base.get(k) for k in key}:
            check_model_dir(req["model"])
            self._unload()
            import torch

            self.device = "cuda:0" if torch.cuda.is_available() else "cpu"
            dtype = req.get("torch_dtype")
            if self.device == "cpu":
                dtype = "float32"  # bf16/fp16 are slow or unsupported on CPU
            t0 = time.perf_counter()
            engine = load_engine(req["model"], model_type=req.get("model_type"), template_type=req.get("template"),
                                 device_map=self.device, torch_dtype=getattr(torch, dtype) if dtype else None)
            _install_stop(engine, self.stop)
            self.engine, self.base_loads = engine, self.base_loads + 1
            self.base = dict(req, load_s=round(time.perf_counter() - t0, 3))
        self.base["system"] = req.get("system")
        self.out.send(event("loaded", req.get("id"), model=req["model"], model_type=self.engine.model_info.model_type,
                            template=template_of(self.engine).template_meta.template_type, device=self.device,
                            dtype=str(self.engine.model_info.torch_dtype).removeprefix("torch."),
                            load_s=self.base["load_s"], base_loads=self.base_loads))

    def _unload(self) -> None:
        if self.engine is None:
            return
        self.engine, self.adapters, self.history = None, {}, {}
        gc.collect()
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    def op_adapter(self, req: dict[str, Any]) -> None:
        name, path = req["name"], Path(req["path"]).expanduser().absolute()
        if name == BASE or not name.strip():
            raise ChatError(f"adapter name {name!r} is reserved; pick another")
        check_adapter_dir(path)
        self._require_engine()
        AdapterRequest = swift_api("AdapterRequest")

        old = self.adapters.get(name)
        if old is None or old["path"] != str(path):
            self._next_internal += 1
            internal = f"swiftdeck_{self._next_internal}"  # never clashes with peft's "default"/"__base__"
            t0 = time.perf_counter()
            self.engine._get_adapter_names(AdapterRequest(internal, str(path)))  # ms-swift's lazy adapter load
            args = read_args(path)  # the system prompt it was trained with, like `swift infer --adapters`
            self.adapters[name] = {"path": str(path), "internal": internal, "load_s": round(time.perf_counter() - t0, 3),
                                   "system": args["system"] if "system" in args else self.base.get("system"),
                                   "base_model": args.get("model")}
            self.adapter_loads += 1
            if old is not None:  # same name, new path: the old weights go
                self.engine.model.delete_adapter(old["internal"])
                self.engine._adapters_pool.pop(old["internal"], None)
        info = self.adapters[name]
        warning = None
        if info["base_model"] and os.path.abspath(info["base_model"]) != os.path.abspath(self.base["model"]):
            warning = f"trained on {info['base_model']}, loaded base is {self.base['model']}"
        self.out.send(event("adapter", req.get("id"), name=name, path=info["path"], load_s=info["load_s"],
                            reused=old is not None and old["path"] == str(path), warning=warning,
                            adapters=sorted(self.adapters)))

    def _require_engine(self) -> None:
        if self.engine is None:
            raise ChatError("no model loaded: send a 'load' request first")

    def op_chat(self, req: dict[str, Any]) -> None:
        req_id = req["id"]
        with self._lock:
            self._pending.discard(req_id)
            cancelled = req_id in self._cancelled
            self._cancelled.discard(req_id)
            if not cancelled:
                self._current = req_id
                self.stop.clear()
        if cancelled:
            self.out.send(event("done", req_id, finish_reason="cancelled", text="", usage=None, ttft_s=None,
                                tokens_per_s=None, elapsed_s=0.0))
            return
        try:
            self._chat(req)
        finally:
            with self._lock:
                self._current = None
                self.stop.clear()

    def _chat(self, req: dict[str, Any]) -> None:
        self._require_engine()
        InferRequest, RequestConfig, AdapterRequest = (swift_api(n) for n in ("InferRequest", "RequestConfig",
                                                                                 "AdapterRequest"))

        req_id, target = req["id"], req.get("target", BASE)
        if target != BASE and target not in self.adapters:
            raise ChatError(f"unknown target {target!r}; loaded: {', '.join([BASE, *self.adapters])}")
        adapter = self.adapters.get(target)
        conv = req.get("conv", DEFAULT_CONV)
        if "prompt" in req:
            turn = [{"role": "user", "content": req["prompt"]}]
            messages = self.history.get(conv, []) + turn
        else:
            messages = list(req["messages"])
        system = req["system"] if "system" in req else (adapter or self.base).get("system")
        if system is not None and messages[0]["role"] != "system":
            messages = [{"role": "system", "content": system}, *messages]
        config = RequestConfig(max_tokens=req.get("max_new_tokens") or DEFAULT_MAX_NEW_TOKENS, stream=True,
                               temperature=req.get("temperature"), top_p=req.get("top_p"), top_k=req.get("top_k"),
                               repetition_penalty=req.get("repetition_penalty"))
        adapter_request = AdapterRequest(adapter["internal"], adapter["path"]) if adapter else None

        t0 = time.perf_counter()
        ttft, parts, usage, finish = None, [], None, None
        if not hasattr(self.engine, "template"):  # ms-swift 3.x's PtEngine
            self._fresh_event_loop()
        stream = self.engine.infer([InferRequest(messages=messages)], config, use_tqdm=False,
                                   adapter_request=adapter_request)[0]
        for chunk in stream:
            choice = chunk.choices[0]
            if choice.delta.content:
                if ttft is None:
                    ttft = time.perf_counter() - t0
                parts.append(choice.delta.content)
                self.out.send(event("token", req_id, text=choice.delta.content))
            usage, finish = chunk.usage, choice.finish_reason or finish
        elapsed = time.perf_counter() - t0
        if self.stop.is_set():
            finish = "cancelled"
        text = "".join(parts)
        if "prompt" in req and finish != "cancelled":
            self.history[conv] = messages[1:] if messages[0]["role"] == "system" else messages
            self.history[conv] = self.history[conv] + [{"role": "assistant", "content": text}]
        completion = usage.completion_tokens if usage else 0
        self.out.send(event(
            "done", req_id, finish_reason=finish, text=text, target=target, conv=conv,
            usage={"prompt_tokens": usage.prompt_tokens, "completion_tokens": completion} if usage else None,
            ttft_s=round(ttft, 4) if ttft is not None else None, elapsed_s=round(elapsed, 4),
            tokens_per_s=round(completion / elapsed, 2) if completion and elapsed > 0 else None))

    def _fresh_event_loop(self) -> None:
        """ms-swift 3.x streams by running this thread's event loop in a new thread, and says the answer is done
        before that loop has stopped: the next answer, asked at once, failed with "This event loop is already
        running" and never came. Each answer gets its own loop; the one before is closed once it has stopped."""
        import asyncio

        old, self._loop = self._loop, asyncio.new_event_loop()
        asyncio.set_event_loop(self._loop)
        if old is not None and not old.is_running():
            old.close()

    def op_clear(self, req: dict[str, Any]) -> None:
        conv = req.get("conv")
        if conv is None:
            self.history.clear()
        else:
            self.history.pop(conv, None)
        self.out.send(event("cleared", req.get("id"), conv=conv))

    def op_stats(self, req: dict[str, Any]) -> None:
        import psutil

        self.out.send(event(
            "stats", req.get("id"), pid=os.getpid(), base_loads=self.base_loads, adapter_loads=self.adapter_loads,
            model=self.base.get("model"), device=self.device if self.engine else None,
            adapters={n: a["path"] for n, a in self.adapters.items()},
            conversations={c: len(h) for c, h in self.history.items()},
            rss_mb=round(psutil.Process().memory_info().rss / 2**20, 1)))


def swift_api(name: str) -> Any:
    """An inference class of the installed ms-swift: 4.x exports it from `swift` (AdapterRequest from
    `swift.infer_engine`), 3.x from `swift.llm` (TransformersEngine is PtEngine there)."""
    try:
        if name == "AdapterRequest":
            from swift.infer_engine import AdapterRequest
            return AdapterRequest
        import swift
        return getattr(swift, name)
    except (ImportError, AttributeError):  # ms-swift 3.x
        import swift.llm
        return getattr(swift.llm, {"TransformersEngine": "PtEngine"}.get(name, name))


def load_engine(model: str, *, model_type: str | None, template_type: str | None, device_map: str, torch_dtype):
    """The inference engine of the installed ms-swift with this model type and template (3.x's PtEngine takes no
    template name: its default template is replaced by the named one, as `swift infer --template` does)."""
    cls = swift_api("TransformersEngine")
    if cls.__name__ == "TransformersEngine":
        return cls(model, model_type=model_type, template_type=template_type, device_map=device_map,
                   torch_dtype=torch_dtype)
    engine = cls(model, torch_dtype, model_type=model_type, device_map=device_map)
    if template_type and template_of(engine).template_meta.template_type != template_type:
        from swift.llm import get_template

        engine.default_template = get_template(template_type, engine.processor)
    return engine


def template_of(engine: Any) -> Any:
    """The engine's template (`template` in 4.x, `default_template` in 3.x)."""
    return getattr(engine, "template", None) or engine.default_template


def _install_stop(engine: Any, stop: threading.Event) -> None:
    """Add a stopping criterion that ends generation as soon as `stop` is set (checked after each token).

    ms-swift builds the stopping criteria in `template.prepare_generate_kwargs`; we append ours there.
    """
    import torch
    from transformers import StoppingCriteria

    class StopOnFlag(StoppingCriteria):
        def __call__(self, input_ids, scores, **kwargs):
            return torch.full((input_ids.shape[0],), stop.is_set(), dtype=torch.bool, device=input_ids.device)

    template = template_of(engine)
    prepare = template.prepare_generate_kwargs

    def prepare_with_stop(generate_kwargs, *, model=None):
        generate_kwargs = prepare(generate_kwargs, model=model)
        generate_kwargs["stopping_criteria"].append(StopOnFlag())
        return generate_kwargs

    template.prepare_generate_kwargs = prepare_with_stop


def _id_of(line: bytes) -> Any:
    try:
        msg = json.loads(line)
        return msg.get("id") if isinstance(msg, dict) and isinstance(msg.get("id"), (str, int)) else None
    except ValueError:
        return None


def main() -> None:
    out = Output()
    worker = Worker(out)
    threading.Thread(target=worker.read, args=(sys.stdin.buffer,), name="stdin-reader", daemon=True).start()
    try:
        worker.serve()
    finally:
        _record_exit()
        sys.stderr.flush()
        os._exit(0)  # don't wait for library threads; exiting frees all model memory


def _record_exit() -> None:
    """Mark this worker's registry record finished (it exits on shutdown or when its client's pipe closes)."""
    run_id = os.environ.get("SWIFTDECK_RUN_ID")
    if not run_id:
        return
    def ended(r) -> None:
        if r.active:
            r.status, r.exit_code, r.ended_at = "finished", 0, time.time()

    try:
        from engine import runs

        runs.update(run_id, ended)
    except Exception:  # noqa: BLE001 - a full disk, or another environment without orjson/psutil: the client
        pass  # marks the record when it closes


if __name__ == "__main__":
    main()
