"""Loss pane: raw loss + TensorBoard-style debiased EMA (smoothing on `[` / `]`), eval loss on the same axes with
a best-eval marker, and small charts for learning rate, grad_norm, token_acc and memory.

The charts follow the kind of run, told by the keys it logs (engine.kinds.family): preference pairs (DPO, ORPO,
SimPO, CPO) get rewards chosen/rejected, margins, accuracies and logps; KTO its rewards, margins, KL and logps;
GRPO the reward (with its EMA and one line per reward function) as the main chart, then reward std, KL, completion
length and clip ratio, and the newest sample completions below when the run logs them (--log_completions).

Chart widget: textual-plotext (plotext). Measured against textual-plot for the same 2×200-point braille chart at
100×30: 14.5 ms vs 36.7 ms CPU per frame (textual-plot refreshes the widget once per plotted pixel), it needs no
numpy, and it draws only when we refresh it. Long runs are downsampled (min/max per bucket) to about two points
per cell column, so a frame costs the same at step 100 and at step 100 000.
"""
from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass

from rich.text import Text
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widgets import Static
from textual_plotext import PlotextPlot

from engine import kinds
from engine.completions import Completion
from engine.events import Metrics
from engine.metric_columns import NewRows
from engine.textsafe import printable
from tui.series import SMOOTHING_STEPS, ColumnSeries, Series, downsample
from tui.widgets.style import INK, ink, redraw_on_theme_change

MINI = (("learning_rate", "learning rate"), ("grad_norm", "grad_norm"), ("token_acc", "token_acc"),
        ("memory(GiB)", "memory GiB"))
MINI_IDS = tuple(f"mini-{key.split('(')[0].replace('_', '-')}" for key, _ in MINI)  # four slots, whatever they show


@dataclass(frozen=True)
class Trace:
    key: str  # the logged metric
    label: str | None
    color: str  # a theme variable


@dataclass(frozen=True)
class Panel:
    title: str
    traces: tuple[Trace, ...]


def _one(key: str, title: str) -> Panel:
    return Panel(title, (Trace(key, None, "accent"),))


def _pair(prefix: str, title: str) -> Panel:
    return Panel(title, (Trace(f"{prefix}/chosen", "chosen", "success"), Trace(f"{prefix}/rejected", "rejected",
                                                                                "error")))


PANELS = {  # the four small charts of each family (engine.kinds.family)
    "sft": tuple(_one(key, title) for key, title in MINI),
    "preference": (_pair("rewards", "rewards"), _one("rewards/margins", "margins"),
                   _one("rewards/accuracies", "accuracies"), _pair("logps", "logps")),
    "kto": (_pair("rewards", "rewards"), _one("rewards/margins", "margins"), _one("kl", "KL"),
            _pair("logps", "logps")),
    "grpo": (_one("reward_std", "reward std"), _one("kl", "KL"),
             Panel("completion length", (Trace("completions/mean_length", "mean", "accent"),
                                         Trace("completions/max_length", "max", "muted"))),
             Panel("clip ratio", (Trace("clip_ratio/region_mean", "clipped", "accent"),
                                  Trace("completions/clipped_ratio", "truncated", "warning")))),
}
TITLES = {"sft": "Loss", "preference": "Loss · preference pairs (DPO, ORPO, SimPO)", "kto": "Loss · KTO",
          "grpo": "Reward · GRPO"}
FUNC_COLORS = ("secondary", "success", "warning", "error")  # GRPO's reward functions on the main chart
COMPLETIONS_SHOWN = 8
MAIN_EVERY_S = 2.0  # at most one chart frame this often (a plotext frame costs ~10 ms of CPU)
MINI_EVERY_S = 5.0
EARLY_S = 0.3  # paced by the polls (pace()): a poll this much before a chart is due draws it (timers drift)
NO_EVAL_HINT = "no eval loss: ms-swift needs --split_dataset_ratio 0.1 or --val_dataset"


@dataclass
class Line:
    xs: list[float]
    ys: list[float]
    label: str | None
    color: str  # an ink role (tui/widgets/style.py)
    marker: str = "braille"
    scatter: bool = False


class Chart(PlotextPlot):
    """A plotext chart drawn from `lines` at render time, downsampled to the widget's width. Its colours are
    looked up in `render`, which a theme switch runs again (Textual refreshes a widget whose component styles
    changed)."""

    COMPONENT_CLASSES = INK

    def __init__(self, title: str = "", legend: bool = True, **kwargs):
        super().__init__(**kwargs)
        self.title = title
        self.legend = legend  # False: the owner shows the legend elsewhere (the main chart: its pane's border)
        self.lines: list[Line] = []
        self.empty_note = "waiting for the first logged step"

    def set_lines(self, lines: list[Line]) -> None:
        self.lines = lines
        self.refresh()

    def _rgb(self, role: str) -> tuple[int, int, int] | str:
        color = ink(self, role).color
        return tuple(color.get_truecolor()) if color is not None else "default"  # plotext's own foreground

    def render(self):
        plt = self.plt
        plt.clear_figure()
        width, height = self.size.width, self.size.height
        title_row = bool(self.title) and height > 3  # the title is a row of its own: plotext drops a title wider
        plot_height = height - title_row              # than its plot area (a narrow chart with wide y labels)
        points = max(16, width * 2)
        drawn: list[tuple[list, list]] = []
        for line in self.lines:
            if line.scatter:
                xs, ys = downsample(line.xs, line.ys, len(line.xs) + 1)  # all of them, the non-finite left out
            else:
                xs, ys = downsample(line.xs, line.ys, points)
            if not xs:
                continue
            drawn.append((xs, ys))
            draw = plt.scatter if line.scatter else plt.plot
            draw(xs, ys, label=line.label if self.legend else None, color=self._rgb(line.color), marker=line.marker)
        if drawn:
            _axes(plt, drawn, width, plot_height)
        else:
            plt.text(self.empty_note, 0.5, 0.5, alignment="center", color=self._rgb("muted"))
            plt.xlim(0, 1)
            plt.ylim(0, 1)
            plt.xticks([])
            plt.yticks([])
        plot = self._plot
        plot.plotsize(width, plot_height)
        plot._set_size(width, plot_height)  # as PlotextPlot.render does (textual-plotext issue 5)
        plot.theme(self._get_plotext_theme_name(self.app.theme))
        chart = Text.from_ansi(plot.build())
        if not title_row:
            return chart
        title = self.title if len(self.title) <= width else self.title[:max(1, width - 1)] + "…"
        return Text.assemble(Text(title.center(width).rstrip(), style="bold"), "\n", chart)


def step_ticks(x0: int, x1: int, most: int) -> list[int]:
    """Whole-step ticks from x0 to x1, both ends included, at most `most`, the inner ones on round numbers."""
    if x1 <= x0:
        return [x0]
    if most <= 2 or x1 - x0 < 2:
        return [x0, x1]
    raw = (x1 - x0) / (most - 1)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 5, 10) if m * mag >= raw)
    step = max(1, int(step))
    inner = range((x0 // step + 1) * step, x1, step)
    return [x0, *(t for t in inner if t - x0 >= step / 2 and x1 - t >= step / 2), x1]


def step_label(step: int) -> str:
    """1234 -> '1234'; 125000 -> '125k'; 2500000 -> '2.5M': whole steps, short enough for a small chart."""
    if abs(step) < 100_000:
        return str(step)
    if abs(step) < 10_000_000:
        return f"{step / 1000:.0f}k" if step % 1000 == 0 or abs(step) >= 1_000_000 else f"{step / 1000:.1f}k"
    return f"{step / 1e6:.1f}M".replace(".0M", "M")


def value_ticks(lo: float, hi: float, most: int) -> list[float]:
    """y ticks: both ends of the range, and round numbers between them."""
    if most <= 2 or hi <= lo:
        return [lo, hi]
    raw = (hi - lo) / (most - 1)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 5, 10) if m * mag >= raw)
    first = math.floor(lo / step) + 1
    inner = [k * step for k in range(first, first + most) if lo + step / 2 <= k * step <= hi - step / 2]
    return [lo, *inner, hi]


def value_labels(values: list[float]) -> list[str]:
    """Short labels for y ticks (7.5e-4, not 0.000750), with as many digits as it takes to tell them apart."""
    for digits in range(2, 7):
        labels = []
        for v in values:
            if v == 0:
                labels.append("0")
            elif abs(v) < 1e-2 or abs(v) >= 1e5:
                mant, exp = f"{v:.{digits - 1}e}".split("e")
                mant = mant.rstrip("0").rstrip(".") if "." in mant else mant
                labels.append(f"{mant}e{int(exp)}")
            else:
                labels.append(f"{v:.{digits}g}")
        if len(set(labels)) == len(labels):
            return labels
    return labels


def value_range(lo: float, hi: float) -> tuple[float, float]:
    """The y range for data from lo to hi: the data exactly, or around a single value (never below 0 for data
    that are not, e.g. one token_acc of 0 gives 0..1, not -1..1)."""
    if hi > lo:
        return lo, hi
    pad = abs(lo) * 0.1 or 1.0
    return (lo - pad if lo - pad >= 0 or lo < 0 else 0.0), hi + pad


def _axes(plt, drawn: list[tuple[list, list]], width: int, height: int) -> None:
    """Each axis covers its data: x from the first step to the last, with whole-step ticks at both ends; y from the
    lowest value to the highest, with short labels."""
    x0 = int(math.floor(min(min(xs) for xs, _ in drawn)))
    x1 = int(math.ceil(max(max(xs) for xs, _ in drawn)))
    lo = min(min(ys) for _, ys in drawn)
    hi = max(max(ys) for _, ys in drawn)
    y0, y1 = value_range(lo, hi)
    yticks = value_ticks(y0, y1, max(2, min(5, (height - 3) // 2 + 1)))
    ylabels = value_labels(yticks)
    plot_width = max(1, width - max(map(len, ylabels)) - 2)
    xlab = max(len(step_label(x0)), len(step_label(x1))) + 2
    xticks = step_ticks(x0, x1, max(2, min(6, plot_width // xlab)))
    plt.xlim(x0, x1) if x1 > x0 else plt.xlim(x0 - 1, x1 + 1)
    plt.ylim(y0, y1)
    plt.xticks(xticks, [step_label(t) for t in xticks])
    plt.yticks(yticks, ylabels)


class LossPane(Vertical):
    """Smoothing keys `[` / `]` are app-wide (SwiftdeckApp.BINDINGS)."""

    COMPONENT_CLASSES = INK  # the completions' text

    DEFAULT_CSS = """
    LossPane #loss-completions { height: 8; display: none; border-top: solid $foreground-muted; }
    LossPane.-completions #loss-completions { display: block; }
    """

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.border_title = "Loss"
        self.smoothing = 0.6
        self.waiting = True  # the run may still log steps
        self._last_main = self._last_mini = -1e9
        self._pending_main = self._pending_mini = False
        self._timer = None
        self.paced = False  # pace() is called with each poll: redraws join the poll's frame, no timer of their own
        self.reset()

    def reset(self) -> None:
        self.loss = Series(weight=getattr(self, "smoothing", 0.6))
        self.eval = Series()
        self.reward = Series(weight=getattr(self, "smoothing", 0.6))  # GRPO's main line
        self.minis = {key: Series() for key, _ in MINI}  # every other logged key, by name
        self.completions: list[Completion] = []
        self.has_metrics = False
        self.loading_note = ""  # the rest of a long history is still being read (set_loading)
        self._columns = None  # the run's train columns the series read (engine.metric_columns), once known
        if getattr(self, "family", "sft") != "sft":
            self._set_family("sft")
        self.family = "sft"
        self.remove_class("-completions")

    def compose(self):
        yield Chart(id="loss-chart", legend=False)
        yield Static("", id="loss-hint")
        with Horizontal(id="loss-minis"):
            for chart_id, panel in zip(MINI_IDS, PANELS["sft"]):
                yield Chart(panel.title, id=chart_id, classes="mini")
        with VerticalScroll(id="loss-completions"):
            yield Static("", id="loss-completions-text")

    def on_mount(self) -> None:
        self.clear()
        redraw_on_theme_change(self, lambda: self.completions and self._show_completions())

    def clear(self) -> None:
        self.reset()
        self.redraw()
        self._last_main = self._last_mini = -1e9  # the first metrics are drawn at once

    def add(self, metrics: Sequence[Metrics]) -> None:
        """New logged steps: a NewRows view of the run's columns (tui.model.RunWatch; the series read the columns
        in place, nothing is copied per step), or a list of Metrics."""
        if isinstance(metrics, NewRows):
            return self._add_rows(metrics)
        for m in metrics:
            v = m.values
            if self.family == "sft" and (family := kinds.family(v)) != "sft":
                self._set_family(family)
            if "loss" in v:
                self.loss.append(m.step, v["loss"])
                self.has_metrics = True
            if "eval_loss" in v:
                self.eval.append(m.step, v["eval_loss"])
                self.has_metrics = True
            if "reward" in v:
                self.reward.append(m.step, v["reward"])
            for key, value in v.items():
                if key not in ("loss", "reward") and not key.startswith("eval"):
                    self.minis.setdefault(key, Series()).append(m.step, value)
        if metrics:
            self._request()

    def _add_rows(self, rows: NewRows) -> None:
        train, evals = rows.train, rows.eval
        if rows.rebuilt or self._columns is not train:
            self.reset()
            self._columns = train
        if self.family == "sft" and train.cols and (family := kinds.family(train.cols)) != "sft":
            self._set_family(family)
        for name, cols, key in (("loss", train, "loss"), ("eval", evals, "eval_loss"), ("reward", train, "reward")):
            series = getattr(self, name)
            if not isinstance(series, ColumnSeries):
                series = ColumnSeries(cols, key, weight=self.smoothing if name != "eval" else 0.6)
                setattr(self, name, series)
            series.update(rows.t1 if cols is train else rows.e1)
        for key in train.cols:
            if key not in ("loss", "reward") and not key.startswith("eval"):
                if not isinstance(self.minis.get(key), ColumnSeries):
                    self.minis[key] = ColumnSeries(train, key)
                self.minis[key].update(rows.t1)
        self.has_metrics = self.has_metrics or bool(len(self.loss) or len(self.eval))
        if len(rows):
            self._request()

    def _set_family(self, family: str) -> None:
        """Another kind of run than SFT: retitle the pane and the four small charts."""
        self.family = family
        self.border_title = TITLES[family]
        for chart_id, panel in zip(MINI_IDS, PANELS[family]):
            self.query_one(f"#{chart_id}", Chart).title = panel.title

    def add_completions(self, completions: list[Completion]) -> None:
        """GRPO's newest sample completions (engine.completions), shown below the charts."""
        if not completions:
            return
        self.completions = (self.completions + list(completions))[-COMPLETIONS_SHOWN * 4:]
        self.add_class("-completions")
        self._show_completions()

    def _show_completions(self) -> None:
        step = self.completions[-1].step
        latest = [c for c in self.completions if c.step == step][-COMPLETIONS_SHOWN:]
        dim, accent = ink(self, "muted"), ink(self, "accent", bold=True)
        text = Text(f"completions at step {step} (newest {len(latest)}; --log_completions)\n", style=dim)
        for c in latest:
            total = sum(c.rewards.values())
            rewards = " ".join(f"{name} {value + 0.0:+.2f}" for name, value in c.rewards.items())
            adv = f"  adv {c.advantage + 0.0:+.2f}" if c.advantage is not None else ""
            text.append(f"{total + 0.0:+.2f} ", style=accent)
            text.append(printable(f"{rewards}{adv}  ", newlines=False), style=dim)
            text.append(printable(" ".join(c.prompt.split())[:60], newlines=False) + " → ", style="bold")
            text.append(printable(" ".join(c.completion.split()), newlines=False) + "\n")
        self.query_one("#loss-completions-text", Static).update(text)

    def _request(self) -> None:
        """Throttled redraw: the main chart at most every MAIN_EVERY_S, the small ones every MINI_EVERY_S; metrics
        that arrive meanwhile join the next frame."""
        self._pending_main = self._pending_mini = True
        self._schedule()

    def pace(self) -> None:
        """Called with each poll (once a second): a redraw that is due is drawn now, in the frame the poll draws
        anyway, instead of by a timer of its own (a second frame that second)."""
        self.paced = True
        if self._timer is not None:
            self._timer.stop()
            self._timer = None
        self._flush()

    def _schedule(self) -> None:
        if self._timer is not None:
            return
        due = [t for t, pending in ((self._last_main + MAIN_EVERY_S, self._pending_main),
                                    (self._last_mini + MINI_EVERY_S, self._pending_mini)) if pending]
        if not due:
            return
        wait = min(due) - time.monotonic() - (EARLY_S if self.paced else 0.0)
        if wait <= 0:
            self._flush()
        elif not self.paced:
            self._timer = self.set_timer(wait, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._flush()

    def _flush(self) -> None:
        now = time.monotonic() + (EARLY_S if self.paced else 0.0)
        main = self._pending_main and now >= self._last_main + MAIN_EVERY_S
        minis = self._pending_mini and now >= self._last_mini + MINI_EVERY_S
        if main or minis:
            self.redraw(main=main, minis=minis)
        self._schedule()

    def set_loading(self, done: int, total: int) -> None:
        """A long history is being read (tui.model.RunWatch.poll's progress): say how far, in the empty chart."""
        pct = int(100 * done / total) if total else 0
        note = f"reading {total / 1e6:.0f} MB… {pct} %"
        if len(self.loss) or len(self.reward):  # a preview from a sample of the file is shown meanwhile
            self.loading_note = f"{note} (a sample of {len(self.loss) or len(self.reward):,} steps shown)"
            self._hint()
            return
        self.query_one("#loss-chart", Chart).empty_note = note
        self.query_one("#loss-chart", Chart).refresh()

    def set_waiting(self, waiting: bool) -> None:
        if waiting != self.waiting:
            self.waiting = waiting
            self.redraw()

    def action_smoothing(self, direction: int) -> None:
        steps = SMOOTHING_STEPS
        i = min(range(len(steps)), key=lambda k: abs(steps[k] - self.smoothing))
        self.smoothing = steps[max(0, min(len(steps) - 1, i + direction))]
        self.loss.set_weight(self.smoothing)
        self.reward.set_weight(self.smoothing)
        self.redraw()

    def best_eval(self) -> tuple[float, float] | None:
        pts = [(x, y) for x, y in zip(self.eval.xs, self.eval.ys) if math.isfinite(y)]
        return min(pts, key=lambda p: p[1]) if pts else None

    def redraw(self, main: bool = True, minis: bool = True) -> None:
        now = time.monotonic()
        if main:
            self._last_main, self._pending_main = now, False
            self._draw_main()
        if minis:
            self._last_mini, self._pending_mini = now, False
            self._draw_minis()
        self._hint()

    def _draw_main(self) -> None:
        if self.family == "grpo":
            return self._draw_reward()
        lines = [Line(self.loss.xs, self.loss.ys, "loss", "primary-muted"),
                 Line(self.loss.xs, self.loss.ema, f"EMA {self.smoothing:g}", "primary")]
        if len(self.eval):
            lines.append(Line(self.eval.xs, self.eval.ys, "eval loss", "warning", marker="dot"))
            best = self.best_eval()
            if best:
                lines.append(Line([best[0]], [best[1]], f"best eval {best[1]:.4g} @ {best[0]:g}", "success",
                                  marker="★", scatter=True))
        self._set_main(lines)

    def _draw_reward(self) -> None:
        """GRPO: the mean reward with its EMA, and each reward function's mean."""
        lines = [Line(self.reward.xs, self.reward.ys, "reward", "primary-muted"),
                 Line(self.reward.xs, self.reward.ema, f"EMA {self.smoothing:g}", "primary")]
        for n, name in enumerate(kinds.reward_functions(self.minis)):
            s = self.minis[f"rewards/{name}/mean"]
            lines.append(Line(s.xs, s.ys, printable(name, newlines=False), FUNC_COLORS[n % len(FUNC_COLORS)],
                              marker="dot"))
        self._set_main(lines)

    def _set_main(self, lines: list[Line]) -> None:
        """The main chart's legend goes in the pane's bottom border, not over the curve (a falling loss starts in
        the top-left corner, where plotext puts its legend)."""
        from textual.markup import escape

        marks = {"braille": "━", "dot": "•"}
        self.border_subtitle = "  ".join(
            f"[${ {'muted': 'foreground-muted', 'text': 'foreground'}.get(x.color, x.color)}]"
            f"{marks.get(x.marker, x.marker)}[/] {escape(x.label)}" for x in lines if x.label and x.xs)
        main = self.query_one("#loss-chart", Chart)
        main.empty_note = "waiting for the first logged step" if self.waiting else "no step was logged"
        main.set_lines(lines)

    def _draw_minis(self) -> None:
        empty = Series()
        for chart_id, panel in zip(MINI_IDS, PANELS[self.family]):
            chart = self.query_one(f"#{chart_id}", Chart)
            chart.empty_note = "GPU only" if panel.traces[0].key == "memory(GiB)" else (
                "no data yet" if self.waiting else "none logged")
            chart.set_lines([Line((s := self.minis.get(t.key, empty)).xs, s.ys, t.label, t.color)
                             for t in panel.traces])

    def _hint(self) -> None:
        hint = f"EMA smoothing {self.smoothing:g} ([ and ] change it)"
        if self.family == "grpo":
            hint = f"loss {self.loss.ys[-1]:.4g}  {hint}" if len(self.loss) else hint
        elif self.has_metrics and not len(self.eval):
            hint = f"{NO_EVAL_HINT}  {hint}"
        hint = f"{self.loading_note}  {hint}" if self.loading_note else hint
        label = self.query_one("#loss-hint", Static)
        if hint != getattr(label, "shown", None):
            label.shown = hint
            label.update(Text(hint))  # plain text, never markup ("[ and ]"); its height follows (it wraps)
