"""The run switcher: every run newest first (registry runs by their start, run folders on disk by the time in their
name), deploy/merge jobs behind `j`, with status, step, last loss; the run shown is marked ▶ and the cursor starts
on it. Typing filters the list (or `/`); Home/End jump. The list follows the registry and the files while it is
open (a run started from the CLI appears). Space picks runs (✓); `c` compares the picked runs
(tui/screens/compare.py)."""
from __future__ import annotations

import os
import re
import threading
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
SLOW_READ_S = 0.15  # a first read that takes longer shows the last list meanwhile (or the loading indicator)
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


def _stamp(s: RunSource) -> tuple:
    """What a row depends on: the record's status, name and places, and the size and time of the files its summary
    reads."""
    def stat(p):
        try:
            st = os.stat(p)
            return st.st_size, st.st_mtime_ns
        except (OSError, TypeError):
            return None
    rec = s.record
    return (rec.status if rec else None, rec.label if rec else None, str(s.run_dir), str(s.console_log),
            stat(s.console_log), stat(s.run_dir / "logging.jsonl") if s.run_dir else None)


def _cells(s: RunSource) -> tuple:
    """A run's row after the mark: run, status, step, loss, kind, started, where (reads its files' tails)."""
    summary = quick_summary(s)
    step = "-" if summary.step is None else f"{summary.step}/{summary.max_steps or '?'}"
    when = time.strftime("%Y-%m-%d %H:%M", time.localtime(started(s))) if s.record or s.run_dir else "-"
    where = str(s.run_dir or s.console_log or "-")
    return (printable(s.name, newlines=False), s.status, step, fmt_num(summary.last_loss), s.kind, when,
            printable(where, newlines=False))


class RunListing:
    """The switcher's list as last read, kept by the app between opens: the runs, newest first, and their rows'
    cells, each cell tuple with the stamp of what it was made from, so that a read costs a stat for a run whose
    files did not change. Every open reads again (a run started or ended since shows as it is now); only a read
    slower than SLOW_READ_S shows this list meanwhile."""

    def __init__(self, output_dir=None) -> None:
        self.output_dir = output_dir
        self.last: tuple[list[RunSource], dict[str, tuple]] | None = None  # (runs, key -> cells); None: never read
        self._stamps: dict[str, tuple] = {}  # key -> _stamp when its cells were made
        self._lock = threading.Lock()  # one read at a time

    def read(self) -> tuple[list[RunSource], dict[str, tuple]]:
        """The registry and the output dir read again (on a worker thread, never the UI's)."""
        with self._lock:
            sources = sorted(discover(self.output_dir), key=started, reverse=True)  # newest first
            cells = self.last[1] if self.last else {}
            rows, stamps = {}, {}
            for s in sources:
                stamps[s.key] = stamp = _stamp(s)
                same = self._stamps.get(s.key) == stamp and s.key in cells
                rows[s.key] = cells[s.key] if same else _cells(s)
            self._stamps, self.last = stamps, (sources, rows)  # one assignment: the UI never sees half of it
            return sources, rows


class RunsTable(DataTable):
    """The list: Home/End move the cursor to the first/last run (DataTable's own only scroll)."""

    BINDINGS = [Binding("home", "jump(0)", "First", show=False), Binding("end", "jump(-1)", "Last", show=False)]

    def action_jump(self, row: int) -> None:
        if self.row_count:
            self.move_cursor(row=row if row >= 0 else self.row_count - 1)

    def watch_show_vertical_scrollbar(self, shown: bool) -> None:
        """Textual moves the scrollbar's thumb only on a scroll: a scroll to the cursor made before the scrollbar
        showed (settle) would leave the thumb at the top."""
        if shown:
            self.vertical_scrollbar.position = self.scroll_y

    def settle(self) -> None:
        """Measures the rows just added now rather than at the table's next idle, DataTable's own way: the frame
        that shows them has their column widths and the cursor already scrolled to its row, so the list is drawn
        once instead of three times (narrow, wide, scrolled). Textual 8's internals; without them the idle does it."""
        update = getattr(self, "_update_dimensions", None)
        if update is None or not getattr(self, "_require_update_dimensions", False):
            return
        self._require_update_dimensions = False
        new = self._new_rows.copy()
        self._new_rows.clear()
        update(new)


class RunsScreen(ModalScreen[RunSource | None]):
    OWNS_KEYS = True  # the dashboard's letters do not act under it
    AUTO_FOCUS = "#runs-table"  # focused as the screen starts: the table is drawn once, focused
    DEFAULT_CSS = """
    #runs-table { scrollbar-gutter: stable; }  /* the scrollbar's arrival does not narrow the table: no redraw */
    """
    BINDINGS = [Binding("escape,q", "dismiss(None)", "Close"), Binding("enter", "open", "Open"),
                Binding("space", "pick", "Pick"), Binding("c", "compare", "Compare picked"),
                Binding("J", "toggle_jobs", "Show jobs"), Binding("slash", "filter", "Filter"),
                *RunsTable.BINDINGS]

    def __init__(self, output_dir=None, current: str | None = None, refresh_s: float = REFRESH_S,
                 listing: RunListing | None = None) -> None:
        super().__init__()
        self.listing = listing if listing is not None else RunListing(output_dir)
        self.output_dir, self.current = self.listing.output_dir, current
        self.refresh_s = refresh_s
        self.sources: list[RunSource] = []  # as listed
        self.picked: set[str] = set()  # keys
        self.show_jobs = False
        self.filter = ""
        self._all: list[RunSource] = []
        self._rows: dict[str, tuple] = {}
        self._reading = False
        self._title = TITLE

    def compose(self):
        with Vertical(id="runs-box"):
            yield Static(TITLE, id="runs-title")
            box = Input(placeholder="filter: part of a name, kind, status or folder (Esc clears)", id="runs-filter",
                        select_on_focus=False)
            box.display = False  # until a letter is typed or `/`
            yield box
            table = RunsTable(id="runs-table", cursor_type="row", zebra_stripes=True)
            table.add_columns(" ", "run", "status", "step", "loss", "kind", "started", "where")
            yield table

    def on_mount(self) -> None:
        self._load()
        self.set_timer(SLOW_READ_S, self._still_reading)
        self.set_interval(self.refresh_s, self._reload)

    def _still_reading(self) -> None:
        """The first read is slow: the list as the last open left it meanwhile (the read brings it up to date),
        else the loading indicator."""
        if self._all or self._rows:
            return
        if self.listing.last is not None:
            self._fill(*self.listing.last)
        else:
            self.query_one(DataTable).loading = True

    def _reload(self) -> None:
        if not self._reading:  # a slow read is not doubled
            self._load()

    @work(thread=True)
    def _load(self) -> None:
        self._reading = True
        try:
            sources, rows = self.listing.read()
            self.app.call_from_thread(self._fill, sources, rows)
        finally:
            self._reading = False

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
        self.sources = [s for s in self._all if (self.show_jobs or not is_job(s)) and self._shown(s)]
        for src in self.sources:
            table.add_row(self._mark(src), *self._rows[src.key], key=src.key)
        table.settle()
        at = next((i for i, src in enumerate(self.sources) if src.key == keep), None)
        if at is not None:
            table.move_cursor(row=at)  # scrolled to it now: the first frame shows it
            table.call_after_refresh(table.move_cursor)  # and still in view once the scrollbars are placed
        if not self._all:
            title = "No runs yet — `n` starts one, `swiftdeck demo` a demo"
        elif self.filter and not self.sources:
            title = f"No run matches “{self.filter}” — Esc clears the filter"
        else:
            title = TITLE
        if title != self._title:
            self._title = title
            self.query_one("#runs-title", Static).update(title)
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
