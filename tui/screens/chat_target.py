"""Pick what the chat talks to (ctrl+o in the chat pane): the base model or any checkpoint in the browser.
Dismisses with the checkpoint (engine.checkpoints.CheckpointInfo), BASE for the base model, or None."""
from __future__ import annotations

from rich.text import Text
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import OptionList, Static
from textual.widgets.option_list import Option

BASE = "base"


class ChatTargetScreen(ModalScreen):
    BINDINGS = [Binding("escape", "dismiss(None)", "Cancel")]

    def __init__(self, title: str, base_label: str | None, folders: list, current: str | None = None) -> None:
        super().__init__()
        self.title_text, self.base_label, self.folders, self.current = title, base_label, folders, current
        self.choices: list = []

    def compose(self):
        options = []
        if self.base_label:
            self.choices.append(BASE)
            options.append(Option(Text.assemble(("base model ", "dim"), (self.base_label, "bold"))))
        for folder in self.folders:
            for c in folder.checkpoints:
                self.choices.append(c)
                kind = "LoRA" if c.kind == "lora" else f"{c.kind}: full model"
                options.append(Option(Text.assemble((c.name, "bold"), f"  {kind}", (f"  {folder.name}", "dim"))))
        with Vertical(id="chat-target-box"):
            yield Static(self.title_text, id="dialog-title")
            if options:
                yield OptionList(*options, id="chat-target-list")
            else:
                yield Static("no base model or checkpoint known yet", id="dialog-body")

    def on_mount(self) -> None:
        if self.query(OptionList):
            lst = self.query_one(OptionList)
            keys = [c if c == BASE else str(c.path) for c in self.choices]
            lst.highlighted = keys.index(self.current) if self.current in keys else 0
            lst.focus()

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(self.choices[event.option_index])
