"""The run switcher: every known run (registry runs, then run folders on disk) with status, step, last loss."""
from __future__ import annotations

import time

from textual import work
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import DataTable, Static

from tui.model import RunSource, discover, fmt_num, quick_summary


class RunsScreen(ModalScreen[RunSource | None]):
    BINDINGS = [Binding("escape,q", "dismiss(None)", "Close"), Binding("enter", "open", "Open")]

    def __init__(self, output_dir=None, current: str | None = None) -> None:
        super().__init__()
        self.output_dir, self.current = output_dir, current
        self.sources: list[RunSource] = []

    def compose(self):
        with Vertical(id="runs-box"):
            yield Static("Runs — Enter opens one, Esc closes", id="runs-title")
            table = DataTable(id="runs-table", cursor_type="row", zebra_stripes=True)
            table.add_columns("run", "status", "step", "loss", "kind", "started", "where")
            yield table

    def on_mount(self) -> None:
        self.query_one(DataTable).loading = True
        self._load()

    @work(thread=True, exclusive=True)
    def _load(self) -> None:
        sources = discover(self.output_dir)
        rows = []
        for s in sources:
            summary = quick_summary(s)
            step = "-" if summary.step is None else f"{summary.step}/{summary.max_steps or '?'}"
            started = time.strftime("%Y-%m-%d %H:%M", time.localtime(s.record.started_at)) if s.record else "-"
            where = str(s.run_dir or s.console_log or "-")
            rows.append((s.name, s.status, step, fmt_num(summary.last_loss), s.kind, started, where))
        self.app.call_from_thread(self._fill, sources, rows)

    def _fill(self, sources: list[RunSource], rows: list[tuple]) -> None:
        self.sources = sources
        table = self.query_one(DataTable)
        table.loading = False
        for i, (src, row) in enumerate(zip(sources, rows)):
            table.add_row(*row, key=str(i))
            if src.key == self.current:
                table.move_cursor(row=i)
        if not sources:
            self.query_one("#runs-title", Static).update("No runs yet — `n` starts one, `swiftdeck demo` a demo")
        table.focus()

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        self.dismiss(self.sources[int(event.row_key.value)])

    def action_open(self) -> None:
        table = self.query_one(DataTable)
        if self.sources and table.cursor_row is not None:
            self.dismiss(self.sources[table.cursor_row])
