"""`?`: every key of the dashboard, read from the bindings themselves (so the list is never out of date)."""
from __future__ import annotations

from rich.table import Table
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static


def key_names(b: Binding) -> str:
    """A binding's keys as typed: "[", "/", "?"."""
    return ", ".join(k.strip().replace("left_square_bracket", "[").replace("right_square_bracket", "]")
                     .replace("slash", "/").replace("question_mark", "?") for k in b.key.split(","))


# Textual's own focus keys (every screen has them): listed so that a narrow screen's way out of an input is found
FOCUS_BINDINGS = [
    Binding("tab", "app.focus_next", "Next pane or field (leaves an input)"),
    Binding("shift+tab", "app.focus_previous", "Previous pane or field"),
]


def key_rows(sections: list[tuple[str, list]]) -> list[tuple[str, str, str]]:
    rows = []
    for section, bindings in sections:
        for b in bindings:
            if not isinstance(b, Binding) or not b.description:
                continue
            rows.append((section, key_names(b), b.description))
    return rows


class HelpScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,q,question_mark", "dismiss", "Close")]

    def __init__(self, sections: list[tuple[str, list]]) -> None:
        super().__init__()
        self.sections = [("focus", FOCUS_BINDINGS), *sections]

    def compose(self):
        table = Table(box=None, expand=True, pad_edge=False)
        table.add_column("where", style="dim", no_wrap=True)
        table.add_column("key", style="bold", no_wrap=True)
        table.add_column("does")
        for section, keys, desc in key_rows(self.sections):
            table.add_row(section, keys, desc)
        with VerticalScroll(id="help-box"):
            yield Static("swiftdeck keys — Esc to close. Mouse works too: click a pane, scroll, click tree rows.",
                         id="help-title")
            yield Static(table, id="help-table")
            yield Static("Ctrl+P opens the command palette (every action, and theme switching). The TUI is only a "
                         "client: quitting it, or a dropped SSH session, never stops a run.", id="help-foot")
