"""The run switcher: training runs, newest first (deploy/merge jobs behind `j`), then run folders on disk, with
status, step, last loss; the run shown is marked ▶. Space picks runs (✓); `c` compares the picked runs
(tui/screens/compare.py)."""
from __future__ import annotations

import time

from textual import work
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import DataTable, Static

from engine.command import TRAINING_KINDS
from engine.textsafe import printable
from tui.model import RunSource, discover, fmt_num, quick_summary

TITLE = "Runs — Enter opens one · Space picks · c compares the picked · j shows jobs · Esc closes"


def is_job(s: RunSource) -> bool:
    return s.record is not None and s.record.kind not in TRAINING_KINDS


def ordered(sources: list[RunSource], jobs: bool) -> list[RunSource]:
    """Registry runs newest first (jobs only when asked for), then the run folders found on disk."""
    recorded = sorted((s for s in sources if s.record and (jobs or not is_job(s))),
                      key=lambda s: s.record.started_at, reverse=True)
    return recorded + [s for s in sources if s.record is None]


class RunsScreen(ModalScreen[RunSource | None]):
    BINDINGS = [Binding("escape,q", "dismiss(None)", "Close"), Binding("enter", "open", "Open"),
                Binding("space", "pick", "Pick"), Binding("c", "compare", "Compare picked"),
                Binding("j", "toggle_jobs", "Show jobs")]

    def __init__(self, output_dir=None, current: str | None = None) -> None:
        super().__init__()
        self.output_dir, self.current = output_dir, current
        self.sources: list[RunSource] = []  # as listed
        self.picked: set[str] = set()  # keys
        self.show_jobs = False
        self._all: list[RunSource] = []
        self._rows: dict[str, tuple] = {}

    def compose(self):
        with Vertical(id="runs-box"):
            yield Static(TITLE, id="runs-title")
            table = DataTable(id="runs-table", cursor_type="row", zebra_stripes=True)
            table.add_columns(" ", "run", "status", "step", "loss", "kind", "started", "where")
            yield table

    def on_mount(self) -> None:
        self.query_one(DataTable).loading = True
        self._load()

    @work(thread=True, exclusive=True)
    def _load(self) -> None:
        sources = discover(self.output_dir)
        rows = {}
        for s in sources:
            summary = quick_summary(s)
            step = "-" if summary.step is None else f"{summary.step}/{summary.max_steps or '?'}"
            started = time.strftime("%Y-%m-%d %H:%M", time.localtime(s.record.started_at)) if s.record else "-"
            where = str(s.run_dir or s.console_log or "-")
            rows[s.key] = (printable(s.name, newlines=False), s.status, step, fmt_num(summary.last_loss), s.kind,
                           started, printable(where, newlines=False))
        self.app.call_from_thread(self._fill, sources, rows)

    def _mark(self, s: RunSource) -> str:
        return ("▶" if s.key == self.current else " ") + ("✓" if s.key in self.picked else " ")

    def _fill(self, sources: list[RunSource], rows: dict[str, tuple]) -> None:
        self._all, self._rows = sources, rows
        self._relist()

    def _relist(self) -> None:
        table = self.query_one(DataTable)
        table.loading = False
        keep = self.sources[table.cursor_row].key if self.sources and table.cursor_row is not None else self.current
        table.clear()
        self.sources = ordered(self._all, self.show_jobs)
        for i, src in enumerate(self.sources):
            table.add_row(self._mark(src), *self._rows[src.key], key=src.key)
            if src.key == keep:
                table.move_cursor(row=i)
        if not self._all:
            self.query_one("#runs-title", Static).update("No runs yet — `n` starts one, `swiftdeck demo` a demo")
        table.focus()

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        self.action_open()

    def _under_cursor(self) -> RunSource | None:
        table = self.query_one(DataTable)
        if self.sources and table.cursor_row is not None and table.cursor_row < len(self.sources):
            return self.sources[table.cursor_row]
        return None

    def action_open(self) -> None:
        if (src := self._under_cursor()) is not None:
            self.dismiss(src)

    def action_pick(self) -> None:
        src = self._under_cursor()
        if src is None:
            return
        self.picked ^= {src.key}
        table = self.query_one(DataTable)
        table.update_cell(src.key, table.ordered_columns[0].key, self._mark(src))

    def action_toggle_jobs(self) -> None:
        self.show_jobs = not self.show_jobs
        if self._rows:
            self._relist()

    def action_compare(self) -> None:
        from tui.screens.compare import CompareScreen

        chosen = [s for s in self._all if s.key in self.picked]
        if len(chosen) < 2:
            self.notify("pick two or more runs with Space, then press c", severity="warning")
            return
        self.app.push_screen(CompareScreen(chosen))
