"""Client side of the chat worker: spawns `python -m engine.chat_worker`, sends requests, yields streamed text.

The worker runs with the Python of the ms-swift environment swiftdeck drives (engine.swift_env: its own, or the
user's venv given with --swift / SWIFTDECK_SWIFT), so it loads that environment's torch and ms-swift (3.x or 4.x).
Pure Python (no torch): safe to use from the CLI and the TUI process. One reader thread turns the worker's stdout
into events; `chat()` returns a `ChatStream` (an iterator of text pieces) that another thread may `cancel()`.
"""
from __future__ import annotations

from engine.errors import SwiftdeckError
import json
import os
import queue
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

import psutil

from engine import paths, runs
from engine.chat_protocol import BASE, ProtocolError, decode_event, encode

REPO_ROOT = Path(__file__).resolve().parents[1]
LOAD_TIMEOUT_S = 600.0  # imports + model load; a 7B on a slow disk takes minutes


class ChatClientError(SwiftdeckError):
    """The worker reported an error, died, or did not answer (one-line message for the user)."""


def _cuda_visible() -> bool:
    """Cheap guess without importing torch: an NVIDIA device node and CUDA not hidden."""
    return Path("/dev/nvidiactl").exists() and os.environ.get("CUDA_VISIBLE_DEVICES", "x").strip() not in ("", "-1")


def target_from_checkpoint(ckpt: Path | str) -> dict[str, Any]:
    """What `swift infer --adapters CKPT` takes from `<ckpt>/args.json`: the base model (absolute path when it is
    a local folder), model_type, template, system and torch_dtype (float32 when no GPU: the worker forces it too)."""
    ckpt = Path(ckpt).expanduser().absolute()
    try:
        args = json.loads((ckpt / "args.json").read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ChatClientError(f"no args.json in {ckpt}: not an ms-swift checkpoint") from None
    except (OSError, ValueError) as e:
        raise ChatClientError(f"cannot read {ckpt / 'args.json'}: {e}") from None
    model = args.get("model")
    if not isinstance(model, str) or not model:
        raise ChatClientError(f"{ckpt / 'args.json'} names no base model")
    if Path(model).expanduser().exists():
        model = str(Path(model).expanduser().absolute())
    dtype = args.get("torch_dtype") if _cuda_visible() else "float32"
    return {"model": model, "model_type": args.get("model_type"), "template": args.get("template"),
            "system": args.get("system"), "torch_dtype": dtype}


def _worker_env():
    """The ms-swift environment the worker runs in: the one swiftdeck drives (engine.swift_env)."""
    from engine import swift_env

    try:
        return swift_env.selected()
    except swift_env.SwiftEnvError as exc:
        raise ChatClientError(str(exc)) from None


def adapter_name_for(path: Path | str, taken: Mapping[str, Any] = {}) -> str:
    """A short unique name for a checkpoint folder: `checkpoint-240`, `v1-...-checkpoint-240` if taken."""
    path = Path(path)
    name = path.name
    if name in taken or name == BASE:
        name = f"{path.parent.name}-{path.name}"
    base, n = name, 2
    while name in taken or name == BASE:
        name, n = f"{base}-{n}", n + 1
    return name


class ChatStream:
    """Iterator over the text pieces of one answer. After it ends, `done` holds the worker's `done` event
    (finish_reason stop|length|cancelled, usage, ttft_s, tokens_per_s, elapsed_s, text)."""

    def __init__(self, client: ChatClient, req_id: str, timeout: float | None) -> None:
        self.client, self.id, self.timeout = client, req_id, timeout
        self.done: dict[str, Any] | None = None
        self.first_token_s: float | None = None  # client-side: request sent -> first piece received
        self._t0 = time.perf_counter()

    def __iter__(self) -> Iterator[str]:
        return self

    def __next__(self) -> str:
        if self.done is not None:
            raise StopIteration
        try:
            ev = self.client._wait(self.id, ("token", "done"), self.timeout)
        except ChatClientError as e:
            self.done = {"event": "done", "id": self.id, "finish_reason": "error", "text": "", "message": str(e)}
            self.client._current = None
            raise
        if ev["event"] == "done":
            self.done = ev
            if self.client._current is self:
                self.client._current = None
            raise StopIteration
        if self.first_token_s is None:
            self.first_token_s = time.perf_counter() - self._t0
        return ev["text"]

    def cancel(self) -> None:
        if self.done is None:
            self.client._send({"op": "cancel", "id": self.id})

    def text(self) -> str:
        """Consume the rest and return the whole answer."""
        for _ in self:
            pass
        return self.done["text"] if self.done else ""


class ChatClient:
    """A running chat worker. Create with `ChatClient.start(...)`; always `close()` (or use `with`)."""

    def __init__(self, proc: subprocess.Popen, log_path: Path) -> None:
        self.proc = proc
        self.pid = proc.pid
        self.run_id: str | None = None  # its registry record
        self.log_path = log_path
        self.create_time = psutil.Process(proc.pid).create_time() if proc.poll() is None else None
        self.target = BASE  # default target of chat()
        self.conv: str | None = None  # default conversation of chat() (None: the worker's "default")
        self.adapters: dict[str, str] = {}
        self.base: dict[str, Any] = {}
        self._events: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self._write_lock = threading.Lock()
        self._next_id = 0
        self._current: ChatStream | None = None
        self._dead_reason: str | None = None
        threading.Thread(target=self._read, name=f"chat-client-{proc.pid}", daemon=True).start()

    # ---- lifecycle -----------------------------------------------------------------------------------------------
    @classmethod
    def spawn(cls, *, log_path: Path | None = None, python: str | None = None,
              on_spawn: Callable[[subprocess.Popen], None] | None = None) -> ChatClient:
        """Start a bare worker (no model yet) and wait for its `ready`. `python`: default, the interpreter of the
        driven ms-swift environment."""
        python = python or _worker_env().python
        if log_path is None:
            folder = paths.data_dir() / "chat"
            folder.mkdir(parents=True, exist_ok=True)
            log_path = folder / f"worker-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        argv = [python, "-m", "engine.chat_worker"]
        rec = runs.create("chat", argv, os.getcwd(), label="chat worker")  # supervised like any other run
        env = dict(os.environ, PYTHONUNBUFFERED="1", TQDM_DISABLE="1", SWIFTDECK_RUN_ID=rec.id)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p)
        with open(log_path, "ab") as log:
            proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log,
                                    start_new_session=True, env=env)
        client = cls(proc, log_path)
        client.run_id = rec.id

        def running(r: runs.RunRecord) -> None:
            r.pid, r.pgid, r.create_time, r.status = proc.pid, proc.pid, client.create_time, "running"
            r.meta["log"] = str(log_path)

        runs.update(rec.id, running)
        if on_spawn is not None:
            on_spawn(proc)
        try:
            client._wait(None, ("ready",), 60)
        except BaseException:
            client.close()
            raise
        return client

    @classmethod
    def start(cls, model: str | Path | None = None, *, adapters: Mapping[str, str | Path] | None = None,
              model_type: str | None = None, template: str | None = None, system: str | None = None,
              torch_dtype: str | None = None, target: str | None = None, log_path: Path | None = None,
              python: str | None = None, on_spawn: Callable[[subprocess.Popen], None] | None = None,
              ) -> ChatClient:
        """Spawn a worker, load the base model once and attach `adapters` ({name: checkpoint folder}).
        Without `model`, the base (and model_type/template/system/dtype) comes from the first adapter's args.json.
        The default chat target is `target`, else the first adapter, else the base."""
        adapters = dict(adapters or {})
        base: dict[str, Any] = {"model": None, "model_type": model_type, "template": template, "system": system,
                                "torch_dtype": torch_dtype}
        if model is not None:
            base["model"] = str(Path(model).expanduser().absolute()) if Path(model).expanduser().exists() else str(model)
        if adapters:  # fill what was not given from the first checkpoint, when it was trained on this base
            first = Path(next(iter(adapters.values()))).expanduser()
            found = target_from_checkpoint(first) if model is None or (first / "args.json").is_file() else {}
            if model is None or found.get("model") == base["model"]:
                base.update({k: v for k, v in found.items() if base.get(k) is None})
        elif model is None:
            raise ChatClientError("give a model or at least one adapter checkpoint")
        if not (base["model_type"] and base["template"]):  # a local folder resolved as `swiftdeck train` does
            from engine.swift_args import model_settings

            try:  # with the registry of the environment the worker runs in
                base["model_type"], base["template"] = model_settings(
                    base["model"], model_type=base["model_type"], template=base["template"], env=_worker_env())
            except SwiftdeckError as exc:
                raise ChatClientError(str(exc)) from None
        client = cls.spawn(log_path=log_path, python=python, on_spawn=on_spawn)
        try:
            client.load(**base)
            for name, path in adapters.items():
                client.add_adapter(name, path)
            client.target = target or next(iter(adapters), BASE)
        except BaseException:
            client.close()
            raise
        return client

    def close(self, timeout: float = 10.0) -> bool:
        """Ask the worker to exit, then SIGTERM / SIGKILL its process group. True when no process of it is left."""
        if self.proc.poll() is None:
            try:
                self._send({"op": "shutdown"})
                self.proc.stdin.close()
            except (ChatClientError, OSError):
                pass
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                for sig in (signal.SIGTERM, signal.SIGKILL):
                    self._signal_group(sig)
                    try:
                        self.proc.wait(5)
                        break
                    except subprocess.TimeoutExpired:
                        continue
        for stream in (self.proc.stdin, self.proc.stdout):
            try:
                stream.close()
            except (OSError, ValueError):
                pass
        gone = not self._group_alive()
        if self.run_id:
            code = self.proc.poll()
            runs.update(self.run_id, lambda r: r.active and (
                setattr(r, "status", "finished" if code == 0 else "stopped"), setattr(r, "exit_code", code),
                setattr(r, "ended_at", time.time())))
        return gone

    def _group_members(self) -> list[psutil.Process]:
        """Live processes of the worker's process group (pgid == our pid), started no earlier than the worker."""
        found = []
        for p in psutil.process_iter(["pid", "create_time"]):
            try:
                if os.getpgid(p.pid) == self.pid and p.info["create_time"] >= (self.create_time or 0) - 1:
                    if p.status() != psutil.STATUS_ZOMBIE:
                        found.append(p)
            except (ProcessLookupError, psutil.Error, OSError):
                continue
        return found

    def _group_alive(self) -> bool:
        return bool(self._group_members())

    def _signal_group(self, sig: int) -> None:
        if self.proc.poll() is None:  # the leader is ours and alive, so the group id is ours
            try:
                os.killpg(self.pid, sig)
            except ProcessLookupError:
                pass
        else:
            for p in self._group_members():
                try:
                    p.send_signal(sig)
                except psutil.Error:
                    pass

    def __enter__(self) -> ChatClient:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    # ---- requests ------------------------------------------------------------------------------------------------
    def load(self, model: str, *, model_type: str | None = None, template: str | None = None,
             system: str | None = None, torch_dtype: str | None = None, timeout: float = LOAD_TIMEOUT_S
             ) -> dict[str, Any]:
        ev = self._request({"op": "load", "model": model, "model_type": model_type, "template": template,
                            "system": system, "torch_dtype": torch_dtype}, ("loaded",), timeout)
        self.base = ev
        return ev

    def add_adapter(self, name: str, path: str | Path, timeout: float = 120) -> dict[str, Any]:
        path = str(Path(path).expanduser().absolute())
        ev = self._request({"op": "adapter", "name": name, "path": path}, ("adapter",), timeout)
        self.adapters[name] = ev["path"]
        if getattr(self, "run_id", None):  # the registry knows what this worker holds (no delete of a loaded one)
            runs.update(self.run_id, lambda r: r.meta.__setitem__("loaded", sorted({*r.meta.get("loaded", []),
                                                                                    ev["path"]})))
        return ev

    def switch(self, target: str | Path) -> float:
        """Make `target` (BASE, an adapter name, or a checkpoint folder to attach) the default for chat().
        Returns the seconds it took (0 when the adapter was already attached)."""
        t0 = time.perf_counter()
        target = str(target)
        if target != BASE and target not in self.adapters:
            if not Path(target).expanduser().exists():
                raise ChatClientError(f"unknown target {target!r}: not base, a loaded adapter or a folder")
            path = str(Path(target).expanduser().absolute())
            known = [n for n, p in self.adapters.items() if p == path]
            target = known[0] if known else self.add_adapter(adapter_name_for(path, self.adapters), path)["name"]
        self.target = target
        return time.perf_counter() - t0

    def chat(self, prompt: str | None = None, *, messages: list[dict[str, str]] | None = None,
             target: str | None = None, conv: str | None = None, system: str | None = ...,  # type: ignore[assignment]
             temperature: float | None = None, top_p: float | None = None, top_k: int | None = None,
             max_new_tokens: int | None = None, repetition_penalty: float | None = None,
             timeout: float | None = 300) -> ChatStream:
        """Start one answer; iterate the result for text pieces. `prompt` continues the conversation `conv`
        (history kept by the worker); `messages` is a whole stateless conversation. `system=...` (default) keeps
        the checkpoint's/base's system prompt, None means the template's default, a string replaces it."""
        if self._current is not None and self._current.done is None:
            raise ChatClientError("an answer is still streaming: finish or cancel it first")
        req: dict[str, Any] = {"op": "chat", "id": self._new_id(), "target": target or self.target}
        if prompt is not None:
            req["prompt"] = prompt
        if messages is not None:
            req["messages"] = messages
        if conv or self.conv:
            req["conv"] = conv or self.conv
        if system is not ...:
            req["system"] = system
        for key, value in (("temperature", temperature), ("top_p", top_p), ("top_k", top_k),
                           ("max_new_tokens", max_new_tokens), ("repetition_penalty", repetition_penalty)):
            if value is not None:
                req[key] = value
        stream = ChatStream(self, req["id"], timeout)
        self._send(req)
        self._current = stream
        return stream

    def ask(self, prompt: str, **kwargs: Any) -> str:
        """One whole answer (non-streaming convenience)."""
        return self.chat(prompt, **kwargs).text()

    def cancel(self) -> None:
        """Stop the answer being streamed (its stream then ends with finish_reason 'cancelled')."""
        if self._current is not None:
            self._current.cancel()

    def clear(self, conv: str | None = None) -> None:
        req: dict[str, Any] = {"op": "clear"}
        if conv is not None:
            req["conv"] = conv
        self._request(req, ("cleared",), 30)

    def stats(self) -> dict[str, Any]:
        return self._request({"op": "stats"}, ("stats",), 30)

    # ---- plumbing ------------------------------------------------------------------------------------------------
    def _new_id(self) -> str:
        self._next_id += 1
        return f"c{self._next_id}"

    def _send(self, msg: dict[str, Any]) -> None:
        if self._dead_reason or self.proc.poll() is not None:
            raise ChatClientError(self._death())
        try:
            with self._write_lock:
                self.proc.stdin.write(encode(msg))
                self.proc.stdin.flush()
        except (BrokenPipeError, OSError, ValueError):
            raise ChatClientError(self._death()) from None

    def _request(self, msg: dict[str, Any], wanted: tuple[str, ...], timeout: float) -> dict[str, Any]:
        if self._current is not None and self._current.done is None:
            raise ChatClientError("an answer is still streaming: finish or cancel it first")
        msg["id"] = self._new_id()
        self._send(msg)
        return self._wait(msg["id"], wanted, timeout)

    def _wait(self, req_id: str | None, wanted: tuple[str, ...], timeout: float | None) -> dict[str, Any]:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                raise ChatClientError(f"the chat worker did not answer within {timeout:.0f} s (log: {self.log_path})")
            try:
                ev = self._events.get(timeout=left)
            except queue.Empty:
                continue
            if ev is None:
                self._events.put(None)  # keep the end marker for later waits
                raise ChatClientError(self._death())
            if ev["event"] == "error" and ev.get("id") in (req_id, None):
                raise ChatClientError(ev["message"])
            if ev.get("id") == req_id and ev["event"] in wanted:
                return ev
            # anything else is stale (e.g. tokens of an abandoned answer): drop it

    def _read(self) -> None:
        for line in self.proc.stdout:
            try:
                self._events.put(decode_event(line))
            except ProtocolError as e:
                self._dead_reason = f"chat worker protocol error: {e}"
                break
        self._events.put(None)

    def _death(self) -> str:
        if self._dead_reason:
            return self._dead_reason
        code = self.proc.poll()
        tail = _last_line(self.log_path)
        state = f"exited with code {code}" if code is not None else "closed its output"
        return f"the chat worker {state}" + (f": {tail}" if tail else "") + f" (log: {self.log_path})"


def _last_line(path: Path) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(max(0, f.seek(0, 2) - 4096))
            lines = [ln.strip() for ln in f.read().decode("utf-8", "replace").splitlines() if ln.strip()]
        return lines[-1][:200] if lines else ""
    except OSError:
        return ""
