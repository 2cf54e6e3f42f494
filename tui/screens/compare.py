"""Compare runs (from the run switcher): one chart with each run's train loss (raw and EMA) in its own theme
colour, labelled, its eval loss, its best checkpoint and — for a resumed run — the resume step marked (the curve
continues its parent's, engine.ops.compare joins them); beside it the arguments that differ and each run's facts."""
from __future__ import annotations

from textual import work
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import DataTable, Static

from engine.errors import SwiftdeckError
from engine.ops.compare import Comparison, ComparedRun, compare
from engine.ops.checkpoints import CKPT_NAME
from engine.textsafe import printable
from tui.model import fmt_num
from tui.series import ema_debiased
from tui.widgets.loss import Chart, Line

RUN_COLORS = ("primary", "secondary", "accent", "success", "warning", "error")  # ink roles: the theme's colours
SMOOTHING = 0.6


def _near(series: list[tuple[int, float]], step: int) -> tuple[int, float] | None:
    return min(series, key=lambda p: abs(p[0] - step), default=None)


def _best_step(r: ComparedRun) -> int | None:
    if not r.best_checkpoint:
        return None
    m = CKPT_NAME.fullmatch(r.best_checkpoint.rstrip("/").rsplit("/", 1)[-1])
    return int(m.group(1)) if m else None


def lines_of(cmp: Comparison) -> list[Line]:
    """The chart's lines: per run raw loss (dots), its EMA (labelled with the run), eval loss, the best checkpoint
    (◆) and the resume step (▶)."""
    out: list[Line] = []
    for i, r in enumerate(cmp.runs):
        color = RUN_COLORS[i % len(RUN_COLORS)]
        name = printable(r.label or r.name, newlines=False)
        curve = r.joined_loss or r.loss
        xs, ys = [float(s) for s, _ in curve], [v for _, v in curve]
        if xs:
            out.append(Line(xs, ys, None, color, marker="dot"))
            out.append(Line(xs, ema_debiased(ys, SMOOTHING), name, color))
        ev = r.joined_eval or r.eval
        if ev:
            out.append(Line([float(s) for s, _ in ev], [v for _, v in ev], f"{name} eval", color, marker="x",
                            scatter=True))
        best = _best_step(r)
        if best is not None and (p := _near(ev or curve, best)):
            out.append(Line([float(best)], [p[1]], f"{name} best", color, marker="◆", scatter=True))
        if r.resume_step is not None and (p := _near(curve, r.resume_step)):
            out.append(Line([float(r.resume_step)], [p[1]], f"{name} resumed", color, marker="▶", scatter=True))
    return out


class CompareScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,q", "dismiss(None)", "Close")]

    def __init__(self, sources) -> None:
        super().__init__()
        self.sources = list(sources)
        self.comparison: Comparison | None = None

    def compose(self):
        with Vertical(id="compare-box"):
            yield Static(f"Comparing {len(self.sources)} runs — Esc closes", id="compare-title")
            with Horizontal(id="compare-body"):
                yield Chart("train loss (dots raw, line EMA) · x eval · ◆ best checkpoint · ▶ resumed",
                            id="compare-chart")
                with Vertical(id="compare-side"):
                    yield DataTable(id="compare-runs", cursor_type="none", zebra_stripes=True)
                    yield DataTable(id="compare-args", cursor_type="row", zebra_stripes=True)

    def on_mount(self) -> None:
        self.query_one("#compare-chart", Chart).empty_note = "reading the runs …"
        self._load()

    @work(thread=True, exclusive=True)
    def _load(self) -> None:
        try:
            cmp, error = compare(self.sources), None
        except (SwiftdeckError, OSError) as exc:
            cmp, error = None, str(exc)
        self.app.call_from_thread(self._show, cmp, error)

    def _show(self, cmp: Comparison | None, error: str | None) -> None:
        chart = self.query_one("#compare-chart", Chart)
        if cmp is None:
            chart.empty_note = f"cannot compare: {error}"
            chart.refresh()
            return
        self.comparison = cmp
        chart.empty_note = "no logged loss in these runs"
        chart.set_lines(lines_of(cmp))
        runs_table = self.query_one("#compare-runs", DataTable)
        runs_table.add_columns("", "run", "final", "best eval", "best checkpoint", "resumed")
        for i, r in enumerate(cmp.runs):
            best = r.best_checkpoint.rstrip("/").rsplit("/", 1)[-1] if r.best_checkpoint else "-"
            runs_table.add_row(str(i + 1), printable(r.label or r.name, newlines=False), fmt_num(r.final_loss),
                               fmt_num(r.best_eval_loss), best, "-" if r.resume_step is None else str(r.resume_step))
        args = self.query_one("#compare-args", DataTable)
        args.add_columns("argument", *(str(i + 1) for i in range(len(cmp.runs))))
        for key, values in sorted(cmp.differing.items()):
            args.add_row(key, *(printable("-" if v is None else str(v), newlines=False) for v in values))
        if not cmp.differing:
            args.add_row("(no argument differs)", *("" for _ in cmp.runs))
