"""The run header (name, status, step/max, epoch, elapsed, ETA, s/it, last loss) and the failure card slot."""
from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

from tui.widgets.style import theme_color
from tui.model import FailureInfo, HeaderInfo, fmt_duration, fmt_num

STATUS_STYLE = {"running": "success", "starting": "success", "stopping": "warning", "finished": "primary",
                "failed": "error", "lost": "warning", "stopped": "warning", "unknown": "secondary", "none": "secondary"}
STATUS_ICON = {"running": "●", "starting": "◌", "stopping": "◍", "finished": "✔", "failed": "✖", "lost": "?",
               "stopped": "■"}


def _var(widget, name: str) -> str:
    return theme_color(widget.app, name)


class RunHeader(Static):
    """Two lines: which run and its status; where training is."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.info = HeaderInfo()

    def show(self, info: HeaderInfo) -> None:
        if info != self.info:
            self.info = info
            self.update(self.render_info(), layout=False)  # fixed height: no relayout per poll

    def on_mount(self) -> None:
        self.update(self.render_info())

    def render_info(self) -> Text:
        i = self.info
        status_color = _var(self, STATUS_STYLE.get(i.status, "secondary"))
        accent, dim = _var(self, "accent"), _var(self, "foreground-muted")
        line1 = Text.assemble(("swiftdeck ", f"bold {accent}"), (i.name, "bold"), "  ",
                              (f"{STATUS_ICON.get(i.status, '·')} {i.status}", f"bold {status_color}"))
        if i.exit_code not in (None, 0) and i.status in ("failed", "stopped", "lost"):
            line1.append(f" (exit {i.exit_code})", status_color)
        if i.status == "none":
            return Text.assemble(line1, "\n", ("n: new run   w: runs   ?: help", dim))
        step = "-" if i.step is None else f"{i.step}/{i.max_steps}" if i.max_steps else str(i.step)
        pct = f" {100 * i.step / i.max_steps:.0f}%" if i.step is not None and i.max_steps else ""
        parts = [("step ", dim), (step + pct, "bold"), ("  epoch ", dim), (fmt_num(i.epoch, 3), ""),
                 ("  elapsed ", dim), (fmt_duration(i.elapsed_s), ""), ("  ETA ", dim), (fmt_duration(i.eta_s), ""),
                 ("  ", ""), (fmt_num(i.seconds_per_it, 3), ""), (" s/it", dim), ("  loss ", dim),
                 (fmt_num(i.last_loss), f"bold {accent}")]
        return Text.assemble(line1, "\n", *parts, no_wrap=True, overflow="ellipsis")


class FailureCard(Static):
    """Shown when the run failed or was lost: exit code and the console's last traceback line.
    (engine.diagnose's full card — kind, remedies — goes here too; its summary is shown when recorded.)"""

    def show(self, failure: FailureInfo | None) -> None:
        self.display = failure is not None
        if failure is None:
            return
        err = _var(self, "error")
        head = "Run failed" if failure.status == "failed" else f"Run {failure.status}"
        code = f" (exit code {failure.exit_code})" if failure.exit_code is not None else ""
        text = Text.assemble((f"✖ {head}{code}: ", f"bold {err}"), failure.line, no_wrap=True, overflow="ellipsis")
        if failure.diagnosis:
            text.append(f"\n  diagnosis: {failure.diagnosis}")
        text.append("\n  t: jump to the first Traceback in the log", _var(self, "foreground-muted"))
        self.update(text)
