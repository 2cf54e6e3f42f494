"""The chat input: Up/Down walk through the messages sent before (in this dashboard), as in a shell; what was being
typed comes back after the newest."""
from __future__ import annotations

from textual.binding import Binding
from textual.widgets import Input


class ChatInput(Input):
    BINDINGS = [
        Binding("up", "history(-1)", "Earlier message (chat input)", show=False),
        Binding("down", "history(1)", "Later message (chat input)", show=False),
    ]

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.sent: list[str] = []
        self._at: int | None = None  # the index of the message shown; None: the draft
        self._draft = ""

    def remember(self, prompt: str) -> None:
        """A message was sent: the newest in the history (a repeat of the last is kept once)."""
        if not self.sent or self.sent[-1] != prompt:
            self.sent.append(prompt)
        self._at = None

    def action_history(self, step: int) -> None:
        if self._at is None:
            if step > 0 or not self.sent:
                return
            self._draft, self._at = self.value, len(self.sent)
        at = self._at + step
        if at < 0:
            return
        if at >= len(self.sent):
            self._at, self.value = None, self._draft
        else:
            self._at, self.value = at, self.sent[at]
        self.cursor_position = len(self.value)
