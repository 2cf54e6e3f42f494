"""Chat settings (ctrl+t in the chat pane): temperature, top_p, max new tokens, system prompt, history on/off.
Dismisses with a new ChatSettings, or None when cancelled; bad input is refused with one line."""
from __future__ import annotations

from textual.binding import Binding
from textual.containers import Grid, Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Static, Switch

from tui.chat.settings import ChatSettings


class ChatSettingsScreen(ModalScreen[ChatSettings | None]):
    BINDINGS = [Binding("escape", "cancel", "Cancel"), Binding("ctrl+s", "save", "Save")]

    def __init__(self, settings: ChatSettings) -> None:
        super().__init__()
        self.settings = settings

    def compose(self):
        s = self.settings
        with Vertical(id="chat-settings"):
            yield Static("Chat settings (Enter or ctrl+s saves, Esc cancels)", id="dialog-title")
            with Grid(id="chat-settings-grid"):
                yield Label("temperature")
                yield Input(f"{s.temperature:g}", id="set-temperature", placeholder="0 = greedy, as swift infer")
                yield Label("top_p")
                yield Input("" if s.top_p is None else f"{s.top_p:g}", id="set-top-p",
                            placeholder="empty: the model's generation_config")
                yield Label("max new tokens")
                yield Input(str(s.max_new_tokens), id="set-max-tokens")
                yield Label("system prompt")
                yield Input(s.system or "", id="set-system", placeholder="empty: the checkpoint's own (args.json)")
                yield Label("send history")
                yield Switch(s.history, id="set-history")
            yield Static("", id="chat-settings-error")
            with Horizontal(id="dialog-buttons"):
                yield Button("Save", variant="primary", id="save")
                yield Button("Cancel", id="cancel")

    def on_mount(self) -> None:
        self.query_one("#set-temperature", Input).focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.action_save()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "save":
            self.action_save()
        else:
            self.dismiss(None)

    def action_save(self) -> None:
        value = lambda wid: self.query_one(f"#{wid}", Input).value  # noqa: E731
        try:
            settings = ChatSettings.parse(value("set-temperature"), value("set-top-p"), value("set-max-tokens"),
                                          value("set-system"), self.query_one("#set-history", Switch).value)
        except ValueError as exc:
            self.query_one("#chat-settings-error", Static).update(str(exc))
            return
        self.dismiss(settings)

    def action_cancel(self) -> None:
        self.dismiss(None)
