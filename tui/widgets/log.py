"""Log pane: the console log as it grows (Line API; the LogStore is fed by the run's observer, one tail of the file
for the whole dashboard, and reads old lines back from the file on demand), follow mode, new-line counter while
scrolled up, text/level filter (`/`), jump to the first Traceback (`t`)."""
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
from textual.widgets import Input, Select, Static
from textual.worker import get_current_worker

from tui.logstore import LEVELS, LogFilter, LogStore, level_of
from tui.widgets.style import BOLD, INK, ink, redraw_on_theme_change

MAX_WIDTH = 2000


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

    # ------------------------------------------------------------ data

    def set_store(self, store: LogStore | None) -> None:
        self.store, self.view, self.follow, self.unseen, self._width = store, None, True, 0, 0
        self._styles = {}
        self.sync(0)

    @property
    def total(self) -> int:
        if self.store is None:
            return 0
        return len(self.view) if self.view is not None else self.store.count

    def line_number(self, row: int) -> int:
        return self.view[row] if self.view is not None else row

    def sync(self, added: int) -> None:
        """New lines arrived (one repaint per poll, however many lines)."""
        total = self.total
        if self.store is not None and added:
            for i in range(max(0, total - min(added, 200)), total):
                self._width = max(self._width, cell_len(self.store.line(self.line_number(i))))
        self.virtual_size = Size(min(MAX_WIDTH, self._width + 1), total)
        if self.follow:
            self._stick()
        elif added > 0:
            self.unseen += added
        self.refresh()

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
        row = scroll_y + y
        width = self.scrollable_content_region.width
        if self.store is None or row >= self.total:
            return Strip.blank(width, self.rich_style)
        text = self.store.line(self.line_number(row))
        level = "metrics" if text.startswith("{'") else level_of(text)
        strip = Strip([Segment(text, self._style(level))])
        return strip.crop_extend(scroll_x, scroll_x + width, self.rich_style)


class LogPane(Vertical):
    BINDINGS = [  # "/" (filter) and "t" (traceback) are app-wide keys
        Binding("f", "toggle_follow", "Follow"),
        Binding("escape", "close_filter", "Close filter", show=False),
    ]
    COMPONENT_CLASSES = INK

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.border_title = "Log"
        self.filter = LogFilter()
        self.store: LogStore | None = None

    def compose(self):
        yield LogView(id="log-view")
        with Horizontal(id="log-filter-bar"):
            yield Input(placeholder="filter text (Enter: apply, Esc: close)", id="log-filter-text")
            yield Select([(name.capitalize() if name == "all" else f"{name}s+" if name == "warning" else "errors",
                           name) for name in LEVELS], value="all", allow_blank=False, id="log-filter-level")
        yield Static("", id="log-status")

    def on_mount(self) -> None:
        self.query_one("#log-filter-bar").display = False
        redraw_on_theme_change(self, self._status)
        self._status()

    @property
    def view(self) -> LogView:
        return self.query_one(LogView)

    def set_store(self, store: LogStore | None) -> None:
        self.store = store
        self.view.set_store(store)
        if self.filter.active:
            self._rescan()
        self._status()

    def lines_added(self, n: int) -> None:
        """Called once per poll with the number of complete lines that arrived (-1: the log started over)."""
        view, store = self.view, self.store
        if store is None:
            return
        if n < 0:
            self.set_store(store)
            return
        if self.filter.active and view.view is not None:
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
        self.query_one("#log-filter-bar").display = False
        self.view.focus()

    @on(Input.Submitted, "#log-filter-text")
    def _text_submitted(self, event: Input.Submitted) -> None:
        self.set_filter(LogFilter(event.value.strip(), self.filter.level))
        self.action_close_filter()

    @on(Select.Changed, "#log-filter-level")
    def _level_changed(self, event: Select.Changed) -> None:
        if event.value != self.filter.level and isinstance(event.value, str):
            self.set_filter(LogFilter(self.filter.text, event.value))

    def set_filter(self, flt: LogFilter) -> None:
        self.filter = flt
        if not flt.active:
            self.view.set_view(None)
            self._status()
            return
        self._rescan()

    def _rescan(self) -> None:
        self.view.set_view(array("I"))
        self._status("filtering …")
        self._scan(self.store, self.filter)

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
        self.view.set_view(found)
        self._status()

    # ------------------------------------------------------------ other actions

    def action_traceback(self) -> None:
        store = self.store
        if store is None or store.first_traceback is None:
            self.notify("No Traceback in this run's console log", severity="information")
            return
        if self.filter.active:
            self.set_filter(LogFilter())
            self.query_one("#log-filter-level", Select).value = "all"
        self.view.scroll_to_line(store.first_traceback)
        self.view.focus()
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
        text.append(f"  {shown}", muted)
        if self.filter.active:
            text.append(f"  filter: {self.filter.describe()}", ink(self, "accent"))
        if note:
            text.append(f"  {note}", muted)
        text.append("  / filter  t traceback  f follow", muted)
        self.query_one("#log-status", Static).update(text, layout=False)
