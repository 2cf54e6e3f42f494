"""A yes/no question with details (which args change, what gets deleted). Dismisses with True or False."""
from __future__ import annotations

from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Static


class ConfirmScreen(ModalScreen[bool]):
    OWNS_KEYS = True  # y / n / Esc only: the dashboard's keys are off while it asks (SwiftdeckApp.check_action)
    BINDINGS = [Binding("y", "answer(True)", "Yes"), Binding("n,escape", "answer(False)", "No")]

    def __init__(self, title: str, details: str, yes: str = "Yes") -> None:
        super().__init__()
        self.title_text, self.details, self.yes = title, details, yes

    def compose(self):
        with Vertical(id="dialog"):
            yield Static(self.title_text, id="dialog-title")
            yield Static(self.details, id="dialog-body", markup=False)
            with Horizontal(id="dialog-buttons"):
                yield Button(f"{self.yes} (y)", variant="warning", id="yes")
                yield Button("Cancel (n)", id="no")

    def on_mount(self) -> None:
        self.query_one("#no", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)


def leave(screen, changed: bool, details: str) -> None:
    """Dismiss a form or dialog (with None); when it has changes, ask "Discard changes?" first."""
    if not changed:
        screen.dismiss(None)
        return

    def answered(discard: bool | None) -> None:
        if discard:
            screen.dismiss(None)

    screen.app.push_screen(ConfirmScreen("Discard changes?", details, yes="Discard"), answered)
