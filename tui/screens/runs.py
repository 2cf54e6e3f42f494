"""The run switcher: every run newest first (registry runs by their start, run folders on disk by the time in their
name), deploy/merge jobs behind `j`, with status, step, last loss; the run shown is marked ▶ and the cursor starts
on it. Typing filters the list (or `/`); Home/End jump. The list follows the registry and the files while it is
open (a run started from the CLI appears). Space picks runs (✓); `c` compares the picked runs
(tui/screens/compare.py)."""
from __future__ import annotations

import os
import re
import time
from datetime import datetime

from textual import events, on, work
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import DataTable, Input, Static

from engine.command import TRAINING_KINDS
from engine.textsafe import printable
from tui.model import RunSource, discover, fmt_num, quick_summary

TITLE = ("Runs, newest first — Enter opens · type to filter · Space picks · c compares the picked · J shows jobs · "
         "Esc closes")
REFRESH_S = 2.0  # the list is read again this often while open (rows whose files did not change cost a stat)
FOLDER_TIME = re.compile(r"v\d+-(\d{8}-\d{6})$")


def is_job(s: RunSource) -> bool:
    return s.record is not None and s.record.kind not in TRAINING_KINDS


def started(s: RunSource) -> float:
    """When a run started: its record's start, a run folder's vN-YYYYMMDD-HHMMSS, else the file's change time."""
    if s.record:
        return s.record.started_at
    path = s.run_dir or s.console_log
    m = FOLDER_TIME.search(path.name) if path else None
    if m:
        try:
            return datetime.strptime(m.group(1), "%Y%m%d-%H%M%S").timestamp()
        except ValueError:
            pass
    try:
        return path.stat().st_mtime
    except (OSError, AttributeError):
        return 0.0


def ordered(sources: list[RunSource], jobs: bool) -> list[RunSource]:
    """Every run newest first, jobs only when asked for."""
    return sorted((s for s in sources if jobs or not is_job(s)), key=started, reverse=True)


def _stamp(s: RunSource) -> tuple:
    """What a row depends on: the record's status and the size and time of the files its summary reads."""
    def stat(p):
        try:
            st = os.stat(p)
            return st.st_size, st.st_mtime_ns
        except (OSError, TypeError):
            return None
    return (s.record.status if s.record else None, s.record.label if s.record else None, stat(s.console_log),
            stat(s.run_dir / "logging.jsonl") if s.run_dir else None)


class RunsTable(DataTable):
    """The list: Home/End move the cursor to the first/last run (DataTable's own only scroll)."""

    BINDINGS = [Binding("home", "jump(0)", "First", show=False), Binding("end", "jump(-1)", "Last", show=False)]

    def action_jump(self, row: int) -> None:
        if self.row_count:
            self.move_cursor(row=row if row >= 0 else self.row_count - 1)


class RunsScreen(ModalScreen[RunSource | None]):
    OWNS_KEYS = True  # the dashboard's letters do not act under it
    BINDINGS = [Binding("escape,q", "dismiss(None)", "Close"), Binding("enter", "open", "Open"),
                Binding("space", "pick", "Pick"), Binding("c", "compare", "Compare picked"),
                Binding("J", "toggle_jobs", "Show jobs"), Binding("slash", "filter", "Filter"),
                *RunsTable.BINDINGS]

    def __init__(self, output_dir=None, current: str | None = None, refresh_s: float = REFRESH_S) -> None:
        super().__init__()
        self.output_dir, self.current = output_dir, current
        self.refresh_s = refresh_s
        self.sources: list[RunSource] = []  # as listed
        self.picked: set[str] = set()  # keys
        self.show_jobs = False
        self.filter = ""
        self._all: list[RunSource] = []
        self._rows: dict[str, tuple] = {}
        self._stamps: dict[str, tuple] = {}  # key -> _stamp when its row was made (read on the worker only)
        self._cells: dict[str, tuple] = {}
        self._reading = False

    def compose(self):
        with Vertical(id="runs-box"):
            yield Static(TITLE, id="runs-title")
            yield Input(placeholder="filter: part of a name, kind, status or folder (Esc clears)", id="runs-filter",
                        select_on_focus=False)
            table = RunsTable(id="runs-table", cursor_type="row", zebra_stripes=True)
            table.add_columns(" ", "run", "status", "step", "loss", "kind", "started", "where")
            yield table

    def on_mount(self) -> None:
        self.query_one("#runs-filter", Input).display = False
        self.query_one(DataTable).loading = True
        self.query_one(DataTable).focus()
        self._load()
        self.set_interval(self.refresh_s, self._reload)

    def _reload(self) -> None:
        if not self._reading:  # a slow read is not doubled
            self._load()

    @work(thread=True)
    def _load(self) -> None:
        self._reading = True
        try:
            self._read()
        finally:
            self._reading = False

    def _read(self) -> None:
        sources = discover(self.output_dir)
        rows = {}
        for s in sources:
            stamp = _stamp(s)
            if self._stamps.get(s.key) == stamp and s.key in self._cells:
                rows[s.key] = self._cells[s.key]
                continue
            summary = quick_summary(s)
            step = "-" if summary.step is None else f"{summary.step}/{summary.max_steps or '?'}"
            when = time.strftime("%Y-%m-%d %H:%M", time.localtime(started(s))) if s.record or s.run_dir else "-"
            where = str(s.run_dir or s.console_log or "-")
            rows[s.key] = (printable(s.name, newlines=False), s.status, step, fmt_num(summary.last_loss), s.kind,
                           when, printable(where, newlines=False))
            self._stamps[s.key] = stamp
        self._cells = rows
        self.app.call_from_thread(self._fill, sources, rows)

    def _mark(self, s: RunSource) -> str:
        return ("▶" if s.key == self.current else " ") + ("✓" if s.key in self.picked else " ")

    def _fill(self, sources: list[RunSource], rows: dict[str, tuple]) -> None:
        if not self.is_attached:
            return
        same_runs = [s.key for s in sources] == [s.key for s in self._all] and set(rows) == set(self._rows)
        first = not self._rows and not self._all
        old, self._all, self._rows = self._rows, sources, rows
        if first or not same_runs:
            self._relist()
        elif rows != old:  # the same runs, moved on: their cells change in place (no redraw of the list)
            if self.filter and any(self._shown(s) != (s in self.sources) for s in sources):
                self._relist()
                return
            table = self.query_one(DataTable)
            columns = table.ordered_columns[1:]
            for s in self.sources:
                for column, before, after in zip(columns, old[s.key], rows[s.key]):
                    if before != after:
                        table.update_cell(s.key, column.key, after)

    def _shown(self, src: RunSource) -> bool:
        if not self.filter:
            return True
        hay = " ".join([*self._rows[src.key][:2], self._rows[src.key][4], self._rows[src.key][6]]).lower()
        return all(word in hay for word in self.filter.lower().split())

    def _relist(self) -> None:
        table = self.query_one(DataTable)
        table.loading = False
        keep = self.sources[table.cursor_row].key if self.sources and table.cursor_row is not None \
            and table.cursor_row < len(self.sources) else self.current
        table.clear()
        self.sources = [s for s in ordered(self._all, self.show_jobs) if self._shown(s)]
        for i, src in enumerate(self.sources):
            table.add_row(self._mark(src), *self._rows[src.key], key=src.key)
            if src.key == keep:
                table.move_cursor(row=i)
        title = self.query_one("#runs-title", Static)
        if not self._all:
            title.update("No runs yet — `n` starts one, `swiftdeck demo` a demo")
        elif self.filter and not self.sources:
            title.update(f"No run matches “{self.filter}” — Esc clears the filter")
        else:
            title.update(TITLE)
        box = self.query_one("#runs-filter", Input)
        if not (box.display and box.has_focus):
            table.focus()

    # ------------------------------------------------------------ filter

    def on_key(self, event: events.Key) -> None:
        """A printable key that is not one of the switcher's own starts the filter with it."""
        box = self.query_one("#runs-filter", Input)
        if box.has_focus or not event.is_printable or not event.character or event.character in " /":
            return
        if any(event.key in b.key.split(",") for b in self.BINDINGS if isinstance(b, Binding)):
            return
        event.stop()
        event.prevent_default()
        self.action_filter(event.character)

    def action_filter(self, text: str = "") -> None:
        box = self.query_one("#runs-filter", Input)
        box.display = True
        box.value += text
        box.cursor_position = len(box.value)
        box.focus()

    @on(Input.Changed, "#runs-filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        self.filter = event.value.strip()
        if self._rows:
            self._relist()

    @on(Input.Submitted, "#runs-filter")
    def _filter_done(self) -> None:
        self.query_one(DataTable).focus()
        if len(self.sources) == 1:
            self.action_open()

    async def action_dismiss(self, result=None) -> None:
        box = self.query_one("#runs-filter", Input)
        if box.display:  # Esc first clears and closes the filter
            box.value, box.display = "", False
            self.filter = ""
            self._relist()
            self.query_one(DataTable).focus()
            return
        self.dismiss(result)

    # ------------------------------------------------------------ moving, opening, picking

    def action_jump(self, row: int) -> None:
        table = self.query_one(RunsTable)
        table.action_jump(row)
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
