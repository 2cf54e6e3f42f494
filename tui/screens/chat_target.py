"""Pick what the chat talks to (ctrl+o in the chat pane): the base model, any checkpoint in the browser, or the
LoRA checkpoint the run started from (`--adapters`, e.g. the SFT adapter of a DPO run: engine.lineage). Dismisses
with the checkpoint (engine.checkpoints.CheckpointInfo), BASE for the base model, or None."""
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
        for c in self._started_from():
            self.choices.append(c)
            options.append(Option(Text.assemble((c.name, "bold"), "  LoRA", ("  started from: ", "dim"),
                                                (str(c.path.parent), "dim"))))
        with Vertical(id="chat-target-box"):
            yield Static(self.title_text, id="dialog-title")
            if options:
                yield OptionList(*options, id="chat-target-list")
            else:
                yield Static("no base model or checkpoint known yet", id="dialog-body")

    def _started_from(self) -> list:
        from engine.lineage import started_from

        shown = {str(c.path) for folder in self.folders for c in folder.checkpoints}
        out = []
        for folder in self.folders:
            out += [c for c in started_from(folder.path) if str(c.path) not in shown]
            shown |= {str(c.path) for c in out}
        return out

    def on_mount(self) -> None:
        if self.query(OptionList):
            lst = self.query_one(OptionList)
            keys = [c if c == BASE else str(c.path) for c in self.choices]
            lst.highlighted = keys.index(self.current) if self.current in keys else 0
            lst.focus()

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(self.choices[event.option_index])
