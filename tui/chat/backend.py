"""Where answers come from: the chat worker (one process per base model, adapters switched without reloading), or a
running `swift deploy` (OpenAI-compatible API). Both stream text pieces and can be cancelled from another thread.

The pane owns the conversation and sends it whole (`messages`) on every turn, so both backends behave the same and
each side of an A/B comparison keeps its own history. Calls here block: use them from thread workers, one at a time
per backend (`lock`).
"""
from __future__ import annotations

import os
import threading
import time
from typing import Callable, Iterator

from engine.chat_client import BASE, ChatClient
from engine.errors import SwiftdeckError
from tui.chat.settings import ChatSettings
from tui.chat.target import ChatTarget


class BackendError(SwiftdeckError):
    """One line for the user."""


class Reply:
    """One answer being streamed. `cancel()` may come from any thread; `info` holds the answer's stats after the
    stream ends (finish_reason, usage, ttft_s, tokens_per_s, elapsed_s)."""

    def __init__(self) -> None:
        self._cancelled = threading.Event()
        self._hook: Callable[[], None] | None = None
        self.info: dict = {}

    @property
    def cancelled(self) -> bool:
        return self._cancelled.is_set()

    def cancel(self) -> None:
        self._cancelled.set()
        hook = self._hook
        if hook is not None:
            hook()


class WorkerBackend:
    """The chat worker: started on first use, one per base model, reused for every adapter of that base."""

    kind = "worker"

    def __init__(self) -> None:
        self.client: ChatClient | None = None
        self.key: tuple | None = None
        self.loaded: dict = {}  # the worker's `loaded` event (device, dtype, load_s)
        self.lock = threading.RLock()

    def needs_load(self, target: ChatTarget) -> bool:
        return self.client is None or not self.client.alive or self.key != target.base_key

    def ensure(self, target: ChatTarget) -> str:
        """Start (or reuse) the worker for the target's base and attach its adapter; the worker's target name."""
        if self.needs_load(target):
            self.close()
            client = ChatClient.spawn()
            try:
                self.loaded = client.load(**target.base)
            except BaseException:
                client.close()
                raise
            self.client, self.key = client, target.base_key
        if target.adapter is None:
            return BASE
        self.client.switch(target.adapter)  # attaches it on first use: no base reload
        return self.client.target

    def stream(self, target: ChatTarget, messages: list[dict], settings: ChatSettings, reply: Reply
               ) -> Iterator[str]:
        name = self.ensure(target)
        kw = {"temperature": settings.temperature, "top_p": settings.top_p,
              "max_new_tokens": settings.max_new_tokens}
        if settings.system is not None:
            kw["system"] = settings.system
        answer = self.client.chat(messages=messages, target=name, **kw)
        reply._hook = answer.cancel
        if reply.cancelled:
            answer.cancel()
        yield from answer
        reply.info = dict(answer.done or {})

    def describe(self) -> str:
        if self.client is None or not self.client.alive:
            return "worker not started (starts on the first message)"
        ev = self.loaded
        return (f"worker pid {self.client.pid} · {ev.get('device', '?')} {ev.get('dtype', '')} · "
                f"base loaded in {ev.get('load_s', 0):.1f} s").strip()

    def close(self) -> None:
        client, self.client, self.key = self.client, None, None
        if client is not None:
            client.close()


class DeployBackend:
    """A ready `swift deploy` run: its base is served as `models[0]`, adapters under their `--adapters` names."""

    kind = "deploy"

    def __init__(self, rec, url: str) -> None:
        from engine.swift_args import flag_values

        self.rec, self.url = rec, url
        self.lock = threading.RLock()
        self.models: list[str] = list(rec.meta.get("models") or [])
        self.adapters: dict[str, str] = {}  # checkpoint path -> served name
        for item in flag_values(rec.argv, "--adapters") or []:
            name, sep, path = item.partition("=")
            if sep:
                self.adapters[path] = name

    @classmethod
    def find_running(cls) -> DeployBackend | None:
        """The newest registry deploy that is running and answered /health."""
        from engine import runs

        for rec in runs.all_runs():
            if rec.kind == "deploy" and rec.active and rec.meta.get("ready") and rec.meta.get("url"):
                return cls(rec, rec.meta["url"])
        return None

    def model_for(self, target: ChatTarget) -> str:
        if target.adapter is not None:
            for path, name in self.adapters.items():
                if os.path.realpath(path) == os.path.realpath(target.adapter):
                    return name
            raise BackendError(f"this deploy does not serve {target.label} (serves {', '.join(self.models)}): "
                               f"deploy it (ctrl+r) or use the worker (ctrl+f)")
        if not self.models:
            raise BackendError("this deploy named no served model in its log")
        return self.models[0]

    def stream(self, target: ChatTarget, messages: list[dict], settings: ChatSettings, reply: Reply
               ) -> Iterator[str]:
        from engine import deploy

        model = self.model_for(target)
        if settings.system is not None:
            messages = [{"role": "system", "content": settings.system}, *messages]
        t0 = time.perf_counter()
        first = None
        parts: list[str] = []
        pieces = deploy.stream_chat(self.url, model, messages, temperature=settings.temperature,
                                    top_p=settings.top_p, max_tokens=settings.max_new_tokens)
        reason = "stop"
        try:
            for piece in pieces:
                if reply.cancelled:
                    reason = "cancelled"
                    break
                first = first if first is not None else time.perf_counter() - t0
                parts.append(piece)
                yield piece
        except deploy.DeployError as exc:
            raise BackendError(f"deploy {self.url}: {exc}") from None
        except OSError as exc:
            raise BackendError(f"deploy {self.url} did not answer: {exc}") from None
        finally:
            pieces.close()  # closes the connection: the server stops generating
        elapsed = time.perf_counter() - t0
        reply.info = {"finish_reason": reason, "ttft_s": first, "elapsed_s": elapsed, "text": "".join(parts),
                      "backend": "deploy"}

    def describe(self) -> str:
        return f"deploy {self.url} (run {self.rec.id})"

    def close(self) -> None:
        """Nothing to close: the deploy is a managed job that outlives the dashboard (stop it with ctrl+r)."""


def deploy_request(target: ChatTarget) -> dict:
    """The engine.ops.jobs.deploy arguments that serve the target on 127.0.0.1: the adapter under its checkpoint
    name, or the base/merged model."""
    if target.adapter is not None:
        return {"adapters": {target.label: target.adapter}, "label": f"deploy {target.label}"}
    b = target.base
    extra = [x for key in ("model_type", "template", "torch_dtype") if b.get(key) for x in (f"--{key}", b[key])]
    return {"adapters": {}, "model": b["model"], "extra": extra, "label": f"deploy {target.label}"}
