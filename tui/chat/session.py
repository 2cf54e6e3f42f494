"""The dashboard's chat session: the chat worker process (one per base model, started on the first message that
needs it, closed with the dashboard) and the ready `swift deploy` the chat may go through instead. The app owns one
and calls it from its thread workers; the chat pane only shows what it reports (through a Feed). Calls here block.
"""
from __future__ import annotations

import threading
from pathlib import Path
from typing import Callable

from engine.chat_client import ChatClientError
from tui.chat import transcript
from tui.chat.backend import BackendError, DeployBackend, Reply, WorkerBackend
from tui.chat.settings import ChatSettings
from tui.chat.target import ChatTarget
from tui.chat.turn import Feed, Leg


class ChatSession:
    def __init__(self) -> None:
        self.worker = WorkerBackend()
        self.deploy: DeployBackend | None = None  # a ready deploy
        self._cancel = threading.Event()
        self._reply: Reply | None = None
        self._paths: dict[tuple, Path] = {}

    # ------------------------------------------------------------ what answers

    def set_deploy(self, rec, url: str | None) -> DeployBackend | None:
        self.deploy = DeployBackend(rec, url) if rec is not None and url else None
        return self.deploy

    def backend(self, via_deploy: bool):
        return self.deploy if via_deploy and self.deploy is not None else self.worker

    def _ready(self, target: ChatTarget, loading: Callable[[str | None, str], None]) -> None:
        """Start (or reuse) the worker for the target's base; `loading` hears of a base load (call under the lock)."""
        if self.worker.needs_load(target):
            loading(str(target.base.get("model")), self.worker.describe())
            try:
                self.worker.ensure(target)
            finally:
                loading(None, self.worker.describe())

    def attach(self, target: ChatTarget) -> None:
        """Attach an adapter to the loaded base now (a few ms), not on the next message; no base load here."""
        with self.worker.lock:
            if not self.worker.needs_load(target):
                self.worker.ensure(target)

    def identity(self, target: ChatTarget, loading: Callable[[str | None, str], None]):
        """The identity check (engine.identity) of an adapter, base vs adapter, on this session's worker."""
        from engine.identity import check_identity

        with self.worker.lock:
            self._ready(target, loading)
            return check_identity(Path(target.adapter), client=self.worker.client)

    # ------------------------------------------------------------ a turn

    def begin(self) -> None:
        """A new turn is accepted (on the UI thread, before its worker starts): an earlier Esc does not count."""
        self._cancel = threading.Event()

    def cancel(self) -> None:
        """Esc: the answer streaming now stops, the legs still to come are not asked."""
        self._cancel.set()
        reply = self._reply
        if reply is not None:
            reply.cancel()

    def turn(self, legs: list[Leg], prompt: str, settings: ChatSettings, via_deploy: bool, record, feed: Feed
             ) -> None:
        """Answer every leg, one after the other, saving each message to its transcript (`record`: the run shown)."""
        backend, cancel = self.backend(via_deploy), self._cancel
        with backend.lock:
            for leg in legs:
                self._answer(leg, prompt, backend, settings, record, feed, cancel)
        self._reply = None

    def _answer(self, leg: Leg, prompt: str, backend, settings: ChatSettings, record, feed: Feed,
                cancel: threading.Event) -> None:
        extra = {"side": leg.side, "vs": leg.vs} if leg.vs else {}
        self._save(leg.target, record, {"role": "user", "target": leg.target.label, "content": prompt, **extra}, feed)
        error = None
        if cancel.is_set():
            leg.info = {"finish_reason": "cancelled"}
        else:
            reply = self._reply = Reply()
            try:
                if backend is self.worker and self.worker.needs_load(leg.target):
                    feed.note(leg, "loading the base model (once per base) …")
                    self._ready(leg.target, feed.worker)
                if cancel.is_set():
                    reply.cancel()
                for piece in backend.stream(leg.target, leg.messages, settings, reply):
                    leg.text += piece
                    feed.piece(leg, piece)
                leg.info = {k: v for k, v in reply.info.items() if k not in ("event", "id", "text", "conv", "target")}
            except (ChatClientError, BackendError) as exc:
                error = str(exc)
            except Exception as exc:  # an unexpected failure: one line in the message, never a traceback
                error = f"{type(exc).__name__}: {exc}"
            if error:
                leg.info = {"finish_reason": "error", "error": error}
        feed.finished(leg, error)
        self._save(leg.target, record, {"role": "assistant", "target": leg.target.label, "content": leg.text,
                                        **leg.info, "settings": settings.to_json(), "backend": backend.kind, **extra},
                   feed)

    def _save(self, target: ChatTarget, record, line: dict, feed: Feed) -> None:
        key = (target.name, record.id if record is not None else None)
        try:
            if key not in self._paths:
                self._paths[key] = transcript.path_for(target, record)
            transcript.append(self._paths[key], line)
        except OSError as exc:
            feed.warning(f"transcript not saved: {exc}")

    def close(self) -> None:
        """The worker is ours and ends with the dashboard; a deploy is a managed job and outlives it."""
        self.cancel()
        self.worker.close()
