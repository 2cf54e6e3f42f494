"""A chat turn's data, shared by the pane that shows it and the session that answers it: its legs (one answer each)
and the Feed its progress goes to."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from tui.chat.target import ChatTarget


@dataclass
class Leg:
    """One answer of a turn: single chat ('main'), or side 'A'/'B' of an A/B comparison."""

    side: str
    target: ChatTarget
    messages: list[dict]  # what is sent: the side's history + the new user message
    widget: Any = None  # where the answer is shown (the pane's message widget; opaque here)
    vs: str | None = None
    text: str = ""
    info: dict = field(default_factory=dict)


class Feed(Protocol):
    """Where a turn's progress goes, called from the thread that runs it."""

    def worker(self, loading: str | None, status: str) -> None:
        """The chat worker is loading the base `loading`, or (None) is ready; `status` describes it."""

    def note(self, leg: Leg, text: str) -> None: ...

    def piece(self, leg: Leg, text: str) -> None: ...

    def finished(self, leg: Leg, error: str | None) -> None:
        """The leg's answer ended (`leg.info` holds its stats), or failed with the one-line `error`."""

    def warning(self, text: str) -> None: ...
