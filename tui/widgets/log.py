"""Log pane: the console log as it grows (Line API; the LogStore is fed by the run's observer, one tail of the file
for the whole dashboard, and reads old lines back from the file on demand), follow mode, new-line counter while
scrolled up, text/level filter (`/`), jump to the first Traceback (`t`).

A distributed run (torchrun): the master rank's lines by default (ms-swift's own lines and those torch prefixes
with `[rank0]:`), another rank's `[rankN]:` lines on request (`>` or the filter bar), every line with "all ranks";
a line above the status says how each rank is doing (running, ended, died with torchrun's exit code or signal,
never started)."""
from __future__ import annotations

from array import array

from rich.cells import cell_len
from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual import on, work
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.geometry import Size
from textual.message import Message
from textual.scroll_view import ScrollView
from textual.strip import Strip
from textual.widget import Widget
from textual.widgets import Input, Select, Static
from textual.worker import get_current_worker

from tui.logstore import LEVELS, LogFilter, LogStore, level_of
from tui.ranklog import RankState, rank_states
from tui.widgets.style import BOLD, INK, ink, redraw_on_theme_change

MAX_WIDTH = 2000


def size_words(n: int) -> str:
    """A file size for the status line: "250 MB", "1.0 GB"."""
    return f"{n / 1e9:.1f} GB" if n >= 1e9 else f"{n / 1e6:.0f} MB"


class LogView(ScrollView, can_focus=True):
    """Shows `store` lines (or only those in `view`, when filtered). Renders only the visible lines."""

    BINDINGS = [
        Binding("end,G", "follow", "Follow the end", show=False),
        Binding("home,g", "top", "Top of the log", show=False),
    ]
    COMPONENT_CLASSES = INK

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.store: LogStore | None = None
        self.view: array | None = None  # line numbers shown while filtered
        self.follow = True
        self.unseen = 0  # lines that arrived while not following
        self._width = 0
        self._styles: dict[str, Style] = {}
        self.wrap = False  # long lines continue on the next rows (no horizontal scroll)
        self._rows: tuple | None = None  # (key, [(row, first cell)] per screen row) while wrapping
        self._known = 0  # set_store: lines of a swapped-in index that the next sync must not count as new

    # ------------------------------------------------------------ data

    def set_store(self, store: LogStore | None, first: int | None = None) -> None:
        """Show `store` from its end. `first`: the store just swapped its whole index in for the tail shown so far,
        whose first line is line `first` of the index: a view scrolled up in the tail keeps its place."""
        changed = store is not self.store
        keep = None if changed or first is None or self.follow or self.view is not None else \
            int(self.scroll_y) + first
        self.store, self.view, self.follow, self.unseen, self._width = store, None, True, 0, 0
        self._styles = {}
        if changed:  # another run's log starts at its left edge
            self.scroll_to(x=0, animate=False, immediate=True)
        self._measure(200)
        if keep is not None:
            self.follow, self._known = False, self.total  # the lines of the whole index are not new lines
            self.sync(0)
            self.scroll_to(y=keep, animate=False, immediate=True)
        else:
            self.sync(0)

    @property
    def total(self) -> int:
        if self.store is None:
            return 0
        return len(self.view) if self.view is not None else self.store.count

    def line_number(self, row: int) -> int:
        return self.view[row] if self.view is not None else row

    def _measure(self, last: int) -> None:
        """Widen the horizontal scroll to the longest of the `last` lines."""
        total = self.total
        if self.store is not None and last:
            for i in range(max(0, total - min(last, 200)), total):
                self._width = max(self._width, cell_len(self.store.line(self.line_number(i))))

    def sync(self, added: int) -> None:
        """New lines arrived (one repaint per poll, however many lines)."""
        self._measure(added)
        total = self.total
        self._rows = None
        self._set_virtual_size(Size(1 if self.wrap else min(MAX_WIDTH, self._width + 1), total))
        if self.follow:
            self._stick()
        elif added > 0:
            known, self._known = self._known, 0  # lines that were there already when the view took the index
            self.unseen += max(0, min(added, total - known))
        self.refresh()

    def _set_virtual_size(self, size: Size) -> None:
        """A longer log while the vertical scrollbar shows already and the width stays: only the scrollbar changes,
        so no relayout of the screen (Widget.virtual_size relayouts on each change: ~20 ms, a second frame per poll
        as the scroll to the end follows it)."""
        old, height = self.virtual_size, self.scrollable_content_region.height
        if size == old:
            return
        if height and size.width == old.width and old.height > height and size.height > height:
            self.set_reactive(Widget.virtual_size, size)
            self._scroll_update(size)  # the scrollbars' window (what Widget._size_updated does on a layout)
        else:
            self.virtual_size = size

    def _stick(self, retries: int = 10) -> None:
        """Scroll to the end; before the first layout the size is unknown, so try again after a refresh."""
        if not self.follow:
            return
        self.scroll_to(y=self.max_scroll_y, animate=False, immediate=True)
        height = self.scrollable_content_region.height
        if retries and (height == 0 or self.scroll_y < self.total - height):
            self.call_after_refresh(self._stick, retries - 1)

    def on_resize(self) -> None:
        self._stick()

    def set_view(self, view: array | None) -> None:
        self.view = view
        self.follow, self.unseen = True, 0
        self.sync(0)

    def scroll_to_line(self, index: int) -> None:
        """Show file line `index` at the top and stop following."""
        self.follow = False
        self.scroll_to(y=index, animate=False, immediate=True)
        self.refresh()

    # ------------------------------------------------------------ follow mode

    def watch_scroll_y(self, old: float, new: float) -> None:
        super().watch_scroll_y(old, new)
        at_end = new >= self.max_scroll_y
        if at_end and not self.follow:
            self.follow, self.unseen = True, 0
            self.post_message(LogView.FollowChanged())
        elif not at_end and self.follow and new < old:  # the user scrolled up
            self.follow = False
            self.post_message(LogView.FollowChanged())

    class FollowChanged(Message):
        """Follow mode was switched on or off by scrolling."""

    def action_follow(self) -> None:
        self.follow, self.unseen = True, 0
        self.scroll_end(animate=False, immediate=True)
        self.post_message(LogView.FollowChanged())

    def action_toggle_wrap(self) -> None:
        """Wrap long lines onto the next rows, or back to one row per line with a horizontal scroll."""
        self.wrap = not self.wrap
        if self.wrap:
            self.scroll_to(x=0, animate=False, immediate=True)
        self.sync(0)
        self.post_message(LogView.FollowChanged())  # the pane's status line says which

    def action_top(self) -> None:
        self.follow = False
        self.scroll_home(animate=False, immediate=True)
        self.post_message(LogView.FollowChanged())

    # ------------------------------------------------------------ drawing

    def on_mount(self) -> None:
        redraw_on_theme_change(self, self._restyle)

    def _restyle(self) -> None:
        self._styles = {}
        self.refresh()

    def _style(self, level: str) -> Style:
        if not self._styles:
            self._styles = {"error": ink(self, "error", bold=True), "warning": ink(self, "warning"),
                            "info": ink(self, "text"), "metrics": ink(self, "accent")}
        return self._styles[level]

    def render_line(self, y: int) -> Strip:
        scroll_x, scroll_y = self.scroll_offset
        width = self.scrollable_content_region.width
        if self.wrap:
            rows = self._wrapped_rows(scroll_y, width, self.scrollable_content_region.height)
            if self.store is None or y >= len(rows):
                return Strip.blank(width, self.rich_style)
            row, scroll_x = rows[y]
        else:
            row = scroll_y + y
        if self.store is None or row >= self.total:
            return Strip.blank(width, self.rich_style)
        text = self.store.line(self.line_number(row))
        level = "metrics" if text.startswith("{'") else level_of(text)
        strip = Strip([Segment(text, self._style(level))])
        return strip.crop_extend(scroll_x, scroll_x + width, self.rich_style)

    def _wrapped_rows(self, top: int, width: int, height: int) -> list[tuple[int, int]]:
        """While wrapping: (row of the view, first cell) of each screen row. From the row at the scroll position
        down; when following, from the last line up, so that the end of the log is on screen."""
        key = (top, width, height, self.total, self.follow)
        if self._rows is not None and self._rows[0] == key:
            return self._rows[1]
        out: list[tuple[int, int]] = []
        width = max(1, width)

        def pieces(row: int) -> list[tuple[int, int]]:
            cells = cell_len(self.store.line(self.line_number(row)))
            return [(row, start) for start in range(0, max(cells, 1), width)]

        if self.store is not None and self.follow:
            row = self.total - 1
            while row >= 0 and len(out) < height:
                out[:0] = pieces(row)
                row -= 1
            out = out[-height:]
        elif self.store is not None:
            row = top
            while row < self.total and len(out) < height:
                out += pieces(row)
                row += 1
            out = out[:height]
        self._rows = (key, out)
        return out


class LogPane(Vertical):
    BINDINGS = [  # "/" (filter) and "t" (traceback) are app-wide keys
        Binding("f", "toggle_follow", "Follow"),
        Binding("W", "toggle_wrap", "Wrap long lines", show=False),
        Binding("escape", "close_filter", "Close filter", show=False),
        Binding("greater_than_sign", "next_rank", "Next rank's lines", show=False),
    ]
    RANK_ALL = "all"  # the rank drop-down's value for every line
    COMPONENT_CLASSES = INK

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.border_title = "Log"
        self.filter = LogFilter()
        self._status_shown: Text | None = None  # the status line drawn last
        self.store: LogStore | None = None
        self.ranks: list[RankState] = []
        self._run_id: str | None = None
        self._scanning = False  # a filter's scan of the file is under way (its result takes in what arrives meanwhile)

    def compose(self):
        # the filter bar sits on top: its drop-downs open over the log, not over the footer below the pane
        with Horizontal(id="log-filter-bar"):
            # compact (one row): the bar and a drop-down below it fit a 5-row log pane at 80×24
            yield Input(placeholder="filter text (Enter or Esc: apply and close)", id="log-filter-text", compact=True)
            yield Select([(name.capitalize() if name == "all" else f"{name}s+" if name == "warning" else "errors",
                           name) for name in LEVELS], value="all", allow_blank=False, id="log-filter-level",
                         compact=True)
            yield Select([("All ranks", self.RANK_ALL)], value=self.RANK_ALL, allow_blank=False, id="log-filter-rank",
                         compact=True)
        yield LogView(id="log-view")
        yield Static("", id="log-ranks")
        yield Static("", id="log-status")

    def on_mount(self) -> None:
        self.query_one("#log-filter-bar").display = False
        self.query_one("#log-filter-rank").display = False
        self.query_one("#log-ranks").display = False
        redraw_on_theme_change(self, self._status)
        self._status()

    @property
    def view(self) -> LogView:
        return self.query_one(LogView)

    def set_store(self, store: LogStore | None) -> None:
        if store is not self.store:
            self.ranks, self._run_id = [], None  # the next show_run() says whose ranks these are
            self.query_one("#log-ranks").display = False
        self.store = store
        self.view.set_store(store, store.take_index() if store is not None else None)
        if self.filter.active:
            self._rescan()
        self._status()

    def lines_added(self, n: int) -> None:
        """Called once per poll with the number of complete lines that arrived (-1: the log started over)."""
        view, store = self.view, self.store
        if store is None:
            return
        if n < 0 or store.index_ready:  # started over, or the whole index takes the tail's place
            self.set_store(store)
            return
        if store.tail_shown or self._scanning:  # the tail is filtered whole; a scan picks up what arrives meanwhile
            view.sync(0 if view.view is not None else n)
        elif self.filter.active and view.view is not None:
            first = store.complete - n
            added = array("I", (i for i in range(first, store.complete) if self.filter.matches(store.line(i))))
            view.view.extend(added)
            view.sync(len(added))
        else:
            view.sync(n)
        self._status()

    # ------------------------------------------------------------ filter

    def action_filter(self) -> None:
        bar = self.query_one("#log-filter-bar")
        bar.display = True
        self.query_one("#log-filter-text", Input).focus()

    def action_close_filter(self) -> None:
        """Close the bar; the text typed (or cleared) is the filter from now on, as with Enter."""
        bar = self.query_one("#log-filter-bar")
        if bar.display:
            text = self.query_one("#log-filter-text", Input).value.strip()
            if text != self.filter.text:
                self.set_filter(LogFilter(text, self.filter.level, self.filter.rank))
        bar.display = False
        self.view.focus()

    @on(Input.Submitted, "#log-filter-text")
    def _text_submitted(self, event: Input.Submitted) -> None:
        self.set_filter(LogFilter(event.value.strip(), self.filter.level, self.filter.rank))
        self.action_close_filter()

    @on(Select.Changed, "#log-filter-level")
    def _level_changed(self, event: Select.Changed) -> None:
        if event.value != self.filter.level and isinstance(event.value, str):
            self.set_filter(LogFilter(self.filter.text, event.value, self.filter.rank))

    @on(Select.Changed, "#log-filter-rank")
    def _rank_changed(self, event: Select.Changed) -> None:
        rank = None if event.value == self.RANK_ALL or not isinstance(event.value, str) else int(event.value)
        if rank != self.filter.rank:
            self.set_filter(LogFilter(self.filter.text, self.filter.level, rank))
            self._show_ranks()

    # ------------------------------------------------------------ ranks of a distributed run

    def show_run(self, record) -> None:
        """Called once per poll with the run shown: for a distributed run, how its ranks are doing; the first time
        for a run, its log shows the master rank's lines."""
        try:
            states = rank_states(record, self.store)
        except Exception:  # a rank vanished mid-read: next poll
            return
        run_id = getattr(record, "id", None)
        first = run_id != self._run_id
        self._run_id = run_id
        if states != self.ranks or first:
            numbers = [s.rank for s in states]
            if [s.rank for s in self.ranks] != numbers or first:
                select = self.query_one("#log-filter-rank", Select)
                with select.prevent(Select.Changed):
                    select.set_options([("All ranks", self.RANK_ALL)] + [
                        (f"Rank {n} (master)" if n == 0 else f"Rank {n}", str(n)) for n in numbers])
                select.display = bool(states)
            self.ranks = states
        if first:
            master = 0 if any(s.rank == 0 for s in states) else None
            if master != self.filter.rank:
                self.set_filter(LogFilter(self.filter.text, self.filter.level, master))
        self._show_ranks()

    def show_rank(self, rank: int | None) -> None:
        """Show one rank's lines (0: the master's), or every line (None)."""
        self.set_filter(LogFilter(self.filter.text, self.filter.level, rank))
        self._show_ranks()

    def action_next_rank(self) -> None:
        if not self.ranks:
            self.notify("Not a distributed run: every line is this process's", severity="information")
            return
        order = [s.rank for s in self.ranks] + [None]
        current = self.filter.rank if self.filter.rank in order else None
        self.show_rank(order[(order.index(current) + 1) % len(order)])

    def _show_ranks(self) -> None:
        bar = self.query_one("#log-ranks", Static)
        select = self.query_one("#log-filter-rank", Select)
        want = self.RANK_ALL if self.filter.rank is None else str(self.filter.rank)
        if select.value != want and want in select._legal_values:
            with select.prevent(Select.Changed):
                select.value = want
        bar.display = bool(self.ranks)
        if not self.ranks:
            return
        marks = {"running": ("●", "success"), "ended": ("■", "muted"), "died": ("✖", "error"),
                 "starting": ("…", "warning"), "never started": ("✖", "error")}
        text = Text("ranks:", ink(self, "muted"), no_wrap=True, overflow="ellipsis")
        for s in self.ranks:
            mark, role = marks[s.state]
            text.append(f"  {s.rank} ", BOLD)
            text.append(f"{mark} {s.state}", ink(self, role))
            if s.detail and s.state != "running":
                text.append(f": {s.detail}", ink(self, role))
            if s.errors:
                text.append(f", {s.errors} error line{'s' if s.errors != 1 else ''}", ink(self, "error"))
        shown = "all ranks" if self.filter.rank is None else \
            "rank 0 (master)" if self.filter.rank == 0 else f"rank {self.filter.rank}"
        text.append(f"   showing {shown}  > next rank", ink(self, "muted"))
        if (text.plain, self.ranks) != getattr(self, "_ranks_shown", None):  # once a poll: repaint on a change only
            self._ranks_shown = (text.plain, self.ranks)
            bar.update(text)

    def set_filter(self, flt: LogFilter) -> None:
        self.filter = flt
        if not flt.active:
            self._scanning = False
            self.view.set_view(None)
            self._status()
            return
        self._rescan()

    def _rescan(self) -> None:
        store = self.store
        if store is not None and store.tail_shown:  # the end of a long log, while the rest is read: filtered here
            self._scanning = False
            self.view.set_view(array("I", (i for i in range(store.count) if self.filter.matches(store.line(i)))))
            self._status()
            return
        self._scanning = True
        self.view.set_view(array("I"))
        self._status("filtering …")
        self._scan(store, self.filter)

    class Scanned(Message):
        """From the filter's thread: the lines of `store` before `upto` that `flt` matches."""

        def __init__(self, store: LogStore, flt: LogFilter, found: array, upto: int) -> None:
            super().__init__()
            self.store, self.flt, self.found, self.upto = store, flt, found, upto

    @work(thread=True, exclusive=True, group="log-filter")
    def _scan(self, store: LogStore, flt: LogFilter) -> None:
        upto = store.complete
        worker = get_current_worker()

        def progress(done: float) -> bool:  # "filtering … 40 %" while a big log is read; stop when cancelled
            if worker.is_cancelled:
                return False
            try:
                self.app.call_from_thread(self._status, f"filtering … {done:.0%}")
            except RuntimeError:  # the app is closing
                return False
            return True

        found = store.scan(flt, upto, progress)
        # lines that arrived during the scan are picked up by lines_added after this
        if not get_current_worker().is_cancelled:  # cancelled: another filter's scan has started
            self.post_message(self.Scanned(store, flt, found, upto))

    def on_log_pane_scanned(self, m: Scanned) -> None:
        store, flt, found = m.store, m.flt, m.found
        if store is not self.store or flt != self.filter:
            return  # another run or another filter since: its own scan is on its way
        found.extend(i for i in range(m.upto, store.complete) if flt.matches(store.line(i)))
        self._scanning = False
        self.view.set_view(found)
        self._status()

    # ------------------------------------------------------------ other actions

    def action_traceback(self) -> None:
        store = self.store
        if store is not None and store.tail_shown:
            self.notify(f"still reading the log ({self._read_pct()} %) — try again in a moment",
                        severity="information")
            return
        if store is None or store.first_traceback is None:
            self.notify("No Traceback in this run's console log", severity="information")
            return
        if self.filter.active:
            self.set_filter(LogFilter())
            self.query_one("#log-filter-level", Select).value = "all"
            self.query_one("#log-filter-text", Input).value = ""
            self._show_ranks()
        self.view.scroll_to_line(store.first_traceback)
        self.view.focus()
        self._status()

    def action_toggle_wrap(self) -> None:
        """Long lines on several rows, or one row each with a horizontal scroll (the log wrap key)."""
        self.view.action_toggle_wrap()
        self._status()

    def action_toggle_follow(self) -> None:
        view = self.view
        if view.follow:
            view.follow = False
        else:
            view.action_follow()
        self._status()

    @on(LogView.FollowChanged)
    def _follow_changed(self) -> None:
        self._status()

    def show_reading(self) -> None:
        """A long log is being read while its end is shown: how far (tui.model.RunWatch.poll's progress)."""
        if self.store is not None and self.store.tail_shown:
            self._status()

    def _read_pct(self) -> int:
        done, total = self.store.reading()
        return min(99, int(100 * done / total)) if total else 0

    def _status(self, note: str = "") -> None:
        view, muted = self.view, ink(self, "muted")
        text = Text(no_wrap=True, overflow="ellipsis")
        if view.follow:
            text.append("● follow", ink(self, "success"))
        else:
            text.append("‖ paused", ink(self, "warning"))
            if view.unseen:
                text.append(f"  {view.unseen} new line{'s' if view.unseen != 1 else ''} ↓ (End)", BOLD)
        total = self.store.count if self.store else 0
        shown = f"{view.total:,}/{total:,} lines" if view.view is not None else f"{total:,} lines"
        tail = self.store is not None and self.store.tail_shown
        if tail:  # the end of a long log while the rest is read
            shown = (f"{view.total:,} of the last {total:,} lines" if view.view is not None
                     else f"showing the last {total:,} lines")
            text.append(f"  reading {size_words(self.store.reading()[1])}… {self._read_pct()} %", ink(self, "warning"))
        text.append(f"  {shown}", muted)
        if self.filter.active:
            text.append(f"  filter: {self.filter.describe()}", ink(self, "accent"))
            if tail:
                text.append(" (the whole log once read)", muted)
        if self.view.wrap:
            text.append("  wrapped", muted)
        note = note or ("filtering …" if self._scanning and self.filter.active else "")
        if note:
            text.append(f"  {note}", muted)
        text.append("  / filter  t traceback  f follow", muted)
        if text != self._status_shown:  # an identical line (a poll with only a tqdm update) draws nothing
            self._status_shown = text
            self.query_one("#log-status", Static).update(text, layout=False)
