"""GPU pane: per GPU a memory bar, utilisation, temperature, power and a short history; our run's processes and
the other processes on the same cards. Without NVML: the reason plus CPU/RAM of the run's process tree."""
from __future__ import annotations

from rich.text import Text
from textual.containers import VerticalScroll
from textual.widgets import Static

from tui.actions import fmt_bytes
from tui.gpufeed import GpuView
from tui.widgets.style import BOLD, INK, ink, redraw_on_theme_change

SPARK = "▁▂▃▄▅▆▇█"
GIB = 1024 ** 3


def sparkline(values: list[float], width: int, top: float = 100.0) -> str:
    values = values[-width:]
    if not values:
        return ""
    top = max(top, max(values), 1e-9)
    return "".join(SPARK[min(len(SPARK) - 1, int(v / top * (len(SPARK) - 1) + 0.5))] for v in values)


def bar(fraction: float, width: int) -> tuple[str, str]:
    fraction = min(1.0, max(0.0, fraction))
    full = int(round(fraction * width))
    return "█" * full, "░" * (width - full)


def _gib(n: int | None) -> str:
    return "N/A" if n is None else f"{n / GIB:.1f}"


def _on(v: GpuView, pid: int) -> str:
    """'on GPU 1' / 'on GPU 0,1' for a process NVML lists ("" with one GPU: nothing to tell apart)."""
    gpus = v.on_gpus.get(pid, ())
    return f"on GPU {','.join(map(str, gpus))}" if gpus and len(v.snapshot.gpus) > 1 else ""


class GpuPane(VerticalScroll):
    """Redrawn once a second from a GpuView sampled on a worker thread."""

    DEFAULT_CSS = "GpuPane > #gpu-body { width: 1fr; height: auto; }"
    COMPONENT_CLASSES = INK

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.border_title = "GPU"
        self.view: GpuView | None = None
        self._shown: tuple | None = None

    def compose(self):
        yield Static("sampling …", id="gpu-body")

    def show(self, view: GpuView) -> None:
        """Redraw only when the text changed; relayout only when its number of lines did."""
        self.view = view
        text = self.render_view(view, max(20, self.size.width - 4))
        key = (text.plain, tuple((s.start, s.end, str(s.style)) for s in text.spans))
        if key == self._shown:
            return
        lines = text.plain.count("\n")
        layout = self._shown is None or lines != self._shown[0].count("\n")
        self._shown = key
        self.query_one("#gpu-body", Static).update(text, layout=layout)

    def on_mount(self) -> None:
        redraw_on_theme_change(self, self.redraw)

    def on_resize(self) -> None:
        self.redraw()

    def redraw(self) -> None:
        if self.view is not None:
            self._shown = None
            self.show(self.view)

    def render_view(self, v: GpuView, width: int) -> Text:
        dim, ok, warn, err, acc = (ink(self, role) for role in ("muted", "success", "warning", "error", "accent"))
        out = Text(no_wrap=True, overflow="ellipsis")
        snap = v.snapshot
        if not snap.available:
            head, _, detail = snap.reason.partition(": ")
            out.append(head, warn + BOLD)
            if detail:
                out.append(f"\n  {detail}", dim)
            out.append("\n\nThis run's processes: ", dim)
            if v.tree_pids:
                out.append(f"{v.tree_pids}  ", "bold")
                out.append("CPU ", dim)
                out.append(f"{v.tree_cpu:.0f}%", "bold")
                out.append("  RAM ", dim)
                out.append(fmt_bytes(v.tree_rss), "bold")
                out.append("\nCPU ", dim)
                out.append(sparkline(v.cpu_history, width - 4, top=100.0), ok)
            else:
                out.append("none running", "bold")
            self._rank_lines(out, v, width)
            return out
        bar_w = max(8, min(40, width - 24))
        for g in snap.gpus:
            frac = g.mem_used / g.mem_total if g.mem_total else 0.0
            color = err if frac > 0.95 else warn if frac > 0.8 else ok
            on_it = v.ranks_on(g.index)
            out.append(f"GPU{g.index} ", "bold")
            out.append(g.name[: max(8, width - 30)])
            if on_it:
                out.append("  ← this run's rank " + ", ".join(map(str, on_it)), ok)
            util = "N/A" if g.util_gpu is None else f"{g.util_gpu:.0f}%"
            temp = "N/A" if g.temperature is None else f"{g.temperature:.0f}°C"
            power = "N/A" if g.power_w is None else f"{g.power_w:.0f}" + (
                f"/{g.power_limit_w:.0f}W" if g.power_limit_w else "W")
            out.append(f"\n  util {util}  {temp}  {power}", "")
            out.append("\n  mem ", dim)
            used, free = bar(frac, bar_w)
            out.append(used, color)
            out.append(free, dim)
            out.append(f" {_gib(g.mem_used)}/{_gib(g.mem_total)} GiB")
            out.append("\n  util ", dim)
            out.append(sparkline(v.util_history.get(g.index, []), bar_w), acc)
            out.append("\n  mem  ", dim)
            out.append(sparkline(v.mem_history.get(g.index, []), bar_w), color)
            out.append("\n")
        out.append("\nThis run", "bold")
        if v.tree_pids:
            out.append(f"  {v.tree_pids} proc  CPU {v.tree_cpu:.0f}%  RAM {fmt_bytes(v.tree_rss)}", dim)
        self._rank_lines(out, v, width)
        rank_pids = v.rank_pids()
        rest = [p for p in v.ours or [] if p.pid not in rank_pids]
        for p in rest:
            out.append(f"\n  {p.pid:>7} {p.name[:18]:<18} {_gib(p.used_mem):>6} GiB {_on(v, p.pid)}".rstrip(), ok)
        if not v.ours:
            out.append("\n  no GPU memory held by this run", dim)
        out.append("\nOther processes on these GPUs", "bold")
        for p in (v.others or [])[:8]:
            out.append(f"\n  {p.pid:>7} {p.name[:18]:<18} {_gib(p.used_mem):>6} GiB {_on(v, p.pid)}".rstrip())
        if not v.others:
            out.append("\n  none", dim)
        return out

    def _rank_lines(self, out: Text, v: GpuView, width: int) -> None:
        """One line per rank of a distributed run: its GPU, memory and that GPU's utilisation while it runs; a rank
        that ended or never started says so."""
        if not v.ranks:
            return
        dim, ok, warn = (ink(self, role) for role in ("muted", "success", "warning"))
        nvml = v.snapshot.available
        for line in v.ranks:
            u = line.usage
            out.append(f"\n  rank {line.rank:<3}", "bold")
            if u is None:
                out.append("not started yet" if v.run_active else "never started", warn)
                continue
            if nvml:  # without NVML the recorded GPU may be none at all (a CPU run)
                gpus = ",".join(map(str, u.gpus)) if u.gpus else u.rank.gpu
                out.append(f"GPU {gpus:<3} ", "")
            if not u.alive:
                out.append("ended" if not v.run_active else "gone (its process exited)", dim if not v.run_active
                           else warn)
                out.append(f"  pid {u.rank.pid}", dim)
                continue
            if nvml:
                util = "N/A" if u.util_gpu is None else f"{u.util_gpu:.0f}%"
                out.append(f"{_gib(u.mem_bytes):>6} GiB  util {util:>4}", ok)
            else:
                out.append("running", ok)
            out.append(f"  pid {u.rank.pid}", dim)
