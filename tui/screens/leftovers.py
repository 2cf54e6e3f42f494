"""Leftover processes of swiftdeck's earlier runs (engine.ops.jobs, over engine.leftovers: registry pid + start time, so only our own):
shown on start when there are any, and with `L` / the palette. Lists each with its RAM, GPU memory and run; space
toggles a row, `y` stops the selected ones (SIGTERM, then SIGKILL), then the list is read again."""
from __future__ import annotations

from rich.text import Text
from textual import on, work
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, DataTable, Static

from engine.ops.jobs import find_leftovers, stop_leftovers
from tui.actions import fmt_bytes
from tui.widgets.style import theme_color
from tui.workers import at_work


class LeftoversScreen(ModalScreen[None]):
    BINDINGS = [
        Binding("escape,n,q", "close", "Keep them, close"),
        Binding("y", "stop", "Stop selected"),
        Binding("space", "toggle", "Select/unselect"),
    ]

    def __init__(self, items: list | None = None, sampler=None) -> None:
        super().__init__()
        self.items = items  # None: read them here
        self.sampler = sampler
        self.selected: set[int] = set()

    def compose(self):
        with Vertical(id="leftovers-box"):
            yield Static("Leftover processes of earlier swiftdeck runs", id="leftovers-title")
            table = DataTable(id="leftovers-table", cursor_type="row", zebra_stripes=True)
            table.add_columns("stop", "pid", "process", "RAM", "GPU memory", "run", "run status", "command")
            yield table
            yield Static("", id="leftovers-status")
            with Horizontal(id="leftovers-buttons"):
                yield Button("Stop selected (y)", id="stop", variant="error")
                yield Button("Keep them (esc)", id="close")

    def on_mount(self) -> None:
        if self.items is None:
            self._load("")
        else:
            self.call_after_refresh(self._fill, self.items, "")

    @work(thread=True, exclusive=True, group="leftovers")
    def _load(self, message: str) -> None:
        self.app.call_from_thread(self._fill, *self._read(message))

    def _read(self, message: str) -> tuple[list, str]:
        try:
            return find_leftovers(self.sampler), message
        except Exception as exc:  # a registry we cannot read: one line, no traceback
            return [], f"could not look for leftovers: {type(exc).__name__}: {exc}"

    def _fill(self, items: list, message: str) -> None:
        self.items = items
        self.selected = {f.pid for f in items}
        table = self.query_one(DataTable)
        table.clear()
        for f in items:
            gpu = fmt_bytes(f.gpu_mem) if f.gpu_mem is not None else "-"
            table.add_row("✔", str(f.pid), f.name, fmt_bytes(f.rss), gpu, f.run_id, f.run_status,
                          f.cmdline[:120], key=str(f.pid))
        title = (f"{len(items)} leftover process(es) of earlier swiftdeck runs — their runs have ended; only "
                 "processes swiftdeck started are listed" if items else "No leftover processes of swiftdeck runs")
        self.query_one("#leftovers-title", Static).update(title)
        self.query_one("#stop", Button).display = bool(items)
        self.query_one("#close", Button).label = "Keep them (esc)" if items else "Close (esc)"
        status = self.query_one("#leftovers-status", Static)
        hint = "space: select/unselect   y: stop the selected (SIGTERM, then SIGKILL after 5 s)" if items else ""
        status.update(Text("\n".join(x for x in (message, hint) if x), theme_color(self.app, "foreground-muted")))
        table.focus()

    def _redraw_marks(self) -> None:
        table = self.query_one(DataTable)
        for f in self.items or []:
            table.update_cell(str(f.pid), table.ordered_columns[0].key, "✔" if f.pid in self.selected else "")

    def action_toggle(self) -> None:
        table = self.query_one(DataTable)
        if not self.items or table.cursor_row is None or table.cursor_row >= len(self.items):
            return
        pid = self.items[table.cursor_row].pid
        self.selected.symmetric_difference_update({pid})
        self._redraw_marks()

    @on(DataTable.RowSelected)
    def _row_selected(self, event: DataTable.RowSelected) -> None:
        self.action_toggle()

    def action_close(self) -> None:
        self.dismiss(None)

    @on(Button.Pressed)
    def _button(self, event: Button.Pressed) -> None:
        if event.button.id == "stop":
            self.action_stop()
        else:
            self.dismiss(None)

    def action_stop(self) -> None:
        chosen = [f for f in self.items or [] if f.pid in self.selected]
        stopping = at_work(self, "leftovers-stop")
        if stopping or not chosen:
            self.notify("already stopping" if stopping else "nothing selected", severity="warning")
            return
        self.query_one("#leftovers-status", Static).update(f"stopping {len(chosen)} process(es) …")
        self._stop(chosen)

    @work(thread=True, group="leftovers-stop")
    def _stop(self, chosen: list) -> None:
        try:
            left = stop_leftovers(chosen)
            message = (f"stopped {len(chosen)} process(es)" if not left
                       else f"{len(left)} process(es) still alive after SIGKILL: {' '.join(map(str, left))}")
        except Exception as exc:
            message = f"stopping failed: {type(exc).__name__}: {exc}"
        self.app.call_from_thread(self._fill, *self._read(message))  # read the list again: what is left now
