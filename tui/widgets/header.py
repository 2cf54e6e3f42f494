"""The run header (name, status, step/max, epoch, elapsed, ETA, s/it, last loss) and the failure card's slot."""
from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

from engine.textsafe import printable
from tui.model import HeaderInfo, fmt_duration, fmt_num
from tui.widgets.style import BOLD, INK, fit, ink, redraw_on_theme_change

STATUS_STYLE = {"running": "success", "starting": "success", "stopping": "warning", "finished": "primary",
                "failed": "error", "lost": "warning", "stopped": "warning", "unknown": "secondary", "none": "secondary"}
STATUS_ICON = {"running": "●", "starting": "◌", "stopping": "◍", "finished": "✔", "failed": "✖", "lost": "?",
               "stopped": "■"}


class RunHeader(Static):
    """Two lines: which run and its status; where training is."""

    COMPONENT_CLASSES = INK

    def __init__(self, *, readonly: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.info = HeaderInfo()
        self.hint = "w: runs   ?: help" if readonly else "n: new run   w: runs   ?: help"  # no run shown

    def show(self, info: HeaderInfo) -> None:
        if info != self.info:
            self.info = info
            self.update(self.render_info(), layout=False)  # fixed height: no relayout per poll

    def on_mount(self) -> None:
        redraw_on_theme_change(self, lambda: self.update(self.render_info(), layout=False))
        self.update(self.render_info())

    def on_resize(self) -> None:
        self.update(self.render_info(), layout=False)  # the lines are fitted to the width

    def _width(self) -> int:
        """Cells for the text; before the first layout, no limit."""
        return self.content_size.width or 10 ** 6

    def render_info(self) -> Text:
        """Line 1: the run's name, cut with "…" where needed, then its status, always whole. Line 2: where
        training is; on a narrow screen the least needed parts (s/it, epoch, elapsed, ETA) are left out whole,
        step and loss stay."""
        i, width = self.info, self._width()
        status = ink(self, STATUS_STYLE.get(i.status, "secondary"))
        accent, dim = ink(self, "accent"), ink(self, "muted")
        state = Text(f"{STATUS_ICON.get(i.status, '·')} {i.status}", status + BOLD)
        # how it ended, in words ("stopped by you (SIGINT)", "failed (exit code 1)"): never a bare "exit -2"
        if i.ended:
            state.append(i.ended.removeprefix(i.status) if i.ended.startswith(i.status) else f" ({i.ended})", status)
        if i.kind and not (i.job and i.name.startswith(f"{i.kind}-")):  # a job's id says its kind already
            state.append(f"  {i.kind}", dim)
        brand = Text("swiftdeck ", accent + BOLD)
        name = Text(printable(i.name, newlines=False), BOLD)
        room = width - state.cell_len - 2
        if brand.cell_len + name.cell_len > room:
            brand = Text("")  # a narrow screen: the run's name before the product's
        name.truncate(max(1, room - brand.cell_len), overflow="ellipsis")
        line1 = Text.assemble(brand, name, "  ", state)
        if i.errors:  # error lines of a running run, as they come: first on the second line, cut to half the width
            err = ink(self, "error")
            alert = Text.assemble((f"⚠ {i.errors} error line{'s' if i.errors > 1 else ''}: ", err + BOLD),
                                  (printable(i.last_error, newlines=False), err), no_wrap=True)
            alert.truncate(max(40, min(width, self.size.width or 80) // 2), overflow="ellipsis")
            alert.append("  ")
        else:
            alert = Text()
        if i.status == "none":
            return Text.assemble(line1, "\n", (self.hint, dim))
        if i.job:  # a deploy, merge or chat worker: what it serves or writes, not training numbers
            return Text.assemble(line1, "\n", (printable(i.job, newlines=False), ""), ("  elapsed ", dim),
                                 (fmt_duration(i.elapsed_s), ""), no_wrap=True, overflow="ellipsis")
        step = "-" if i.step is None else f"{i.step}/{i.max_steps}" if i.max_steps else str(i.step)
        pct = f" {100 * i.step / i.max_steps:.0f}%" if i.step is not None and i.max_steps else ""
        parts = [(0, Text.assemble(("step ", dim), (step + pct, BOLD))),
                 (3, Text.assemble(("  epoch ", dim), fmt_num(i.epoch, 3))),
                 (2, Text.assemble(("  elapsed ", dim), fmt_duration(i.elapsed_s))),
                 (1, Text.assemble(("  ETA ", dim), fmt_duration(i.eta_s))),
                 (4, Text.assemble("  ", fmt_num(i.seconds_per_it, 3), (" s/it", dim))),
                 (0, Text.assemble(("  loss ", dim), (fmt_num(i.last_loss), accent + BOLD)))]
        return Text.assemble(line1, "\n", alert, fit(parts, max(1, width - alert.cell_len)), no_wrap=True,
                             overflow="ellipsis")


class FailureCard(Static):
    """The slot under the header (id #failure) for the failure card; tui/widgets/failure.py draws it."""
