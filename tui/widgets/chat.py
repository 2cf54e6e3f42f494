"""Chat pane: the slot and its selection plumbing. It shows what a chat would talk to — the checkpoint picked in
the Checkpoints pane (Enter), else the run's base model. The chat engine itself arrives with issue 4."""
from __future__ import annotations

from rich.text import Text
from textual.containers import Vertical
from textual.widgets import Input, Static

from tui.widgets.style import theme_color


class ChatPane(Vertical):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.border_title = "Chat"
        self.checkpoint = None  # engine.checkpoints.CheckpointInfo picked for chat
        self.base_model: str | None = None

    def compose(self):
        yield Static("", id="chat-target")
        yield Input(placeholder="chat arrives with issue 4 (the chat engine)", id="chat-input", disabled=True)

    def on_mount(self) -> None:
        self._show()

    @property
    def target(self) -> str | None:
        """The path a chat session would load: the chosen adapter/checkpoint, else the base model."""
        return str(self.checkpoint.path) if self.checkpoint is not None else self.base_model

    def choose(self, checkpoint) -> None:
        self.checkpoint = checkpoint
        self._show()

    def set_base_model(self, model: str | None) -> None:
        if model != self.base_model:
            self.base_model = model
            self._show()

    def reset(self) -> None:
        self.checkpoint, self.base_model = None, None
        self._show()

    def _show(self) -> None:
        muted, acc = theme_color(self.app, "foreground-muted"), theme_color(self.app, "accent")
        text = Text(no_wrap=True, overflow="ellipsis")
        c = self.checkpoint
        if c is not None:
            text.append("adapter ", muted)
            text.append(c.name, f"bold {acc}")
            if c.lora_rank is not None:
                text.append(f" (LoRA r={c.lora_rank})", muted)
            text.append(f"\n{c.path}", muted)
            text.append("\non base ", muted)
            text.append(c.base_model or self.base_model or "?")
        elif self.base_model:
            text.append("base model ", muted)
            text.append(self.base_model, "bold")
            text.append("\nno checkpoint picked: Enter on one in Checkpoints", muted)
        else:
            text.append("nothing to chat with yet: pick a checkpoint (Enter in Checkpoints)", muted)
        self.query_one("#chat-target", Static).update(text)
