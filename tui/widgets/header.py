"""The run header (name, status, step/max, epoch, elapsed, ETA, s/it, last loss) and the failure card's slot."""
from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

from engine.textsafe import printable
from tui.model import HeaderInfo, fmt_duration, fmt_num
from tui.widgets.style import BOLD, INK, ink, redraw_on_theme_change

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

    def render_info(self) -> Text:
        i = self.info
        status = ink(self, STATUS_STYLE.get(i.status, "secondary"))
        accent, dim = ink(self, "accent"), ink(self, "muted")
        line1 = Text.assemble(("swiftdeck ", accent + BOLD), (printable(i.name, newlines=False), BOLD), "  ",
                              no_wrap=True, overflow="ellipsis")
        # how it ended, in words ("stopped by you (SIGINT)", "failed (exit code 1)"): never a bare "exit -2"
        line1.append(f"{STATUS_ICON.get(i.status, '·')} {i.status}", status + BOLD)
        if i.ended:
            line1.append(i.ended.removeprefix(i.status) if i.ended.startswith(i.status) else f" ({i.ended})", status)
        if i.kind and not (i.job and i.name.startswith(f"{i.kind}-")):  # a job's id says its kind already
            line1.append(f"  {i.kind}", dim)
        if i.errors:  # error lines of a running run, as they come: first on the second line, cut to half the width
            err = ink(self, "error")
            alert = Text.assemble((f"⚠ {i.errors} error line{'s' if i.errors > 1 else ''}: ", err + BOLD),
                                  (printable(i.last_error, newlines=False), err), no_wrap=True)
            alert.truncate(max(40, (self.size.width or 80) // 2), overflow="ellipsis")
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
        parts = [("step ", dim), (step + pct, BOLD), ("  epoch ", dim), (fmt_num(i.epoch, 3), ""),
                 ("  elapsed ", dim), (fmt_duration(i.elapsed_s), ""), ("  ETA ", dim), (fmt_duration(i.eta_s), ""),
                 ("  ", ""), (fmt_num(i.seconds_per_it, 3), ""), (" s/it", dim), ("  loss ", dim),
                 (fmt_num(i.last_loss), accent + BOLD)]
        return Text.assemble(line1, "\n", alert, *parts, no_wrap=True, overflow="ellipsis")


class FailureCard(Static):
    """The slot under the header (id #failure) for the failure card; tui/widgets/failure.py draws it."""
