"""GPU / process-tree readings for the GPU pane, taken on a worker thread (no Textual here)."""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from engine import gpu
from engine.runs import RunRecord

HISTORY = 60  # samples kept for the sparklines (one a second)


@dataclass
class GpuView:
    snapshot: gpu.GpuSnapshot
    ours: list = field(default_factory=list)  # GpuProcess of our run's tree
    others: list = field(default_factory=list)  # GpuProcess of anything else on the same cards
    tree_pids: int = 0  # live processes of the run's tree
    tree_cpu: float = 0.0  # percent, 100 = one core
    tree_rss: int = 0
    util_history: dict[int, list[float]] = field(default_factory=dict)  # per GPU index
    mem_history: dict[int, list[float]] = field(default_factory=dict)  # percent of total
    cpu_history: list[float] = field(default_factory=list)


class GpuFeed:
    """One sample() a second: NVML snapshot, our run's tree (pid + start time verified), history."""

    def __init__(self, sampler: gpu.GpuSampler | None = None):
        self.sampler = sampler or gpu.GpuSampler()
        self._util: dict[int, deque] = {}
        self._mem: dict[int, deque] = {}
        self._cpu: deque = deque(maxlen=HISTORY)

    def sample(self, record: RunRecord | None) -> GpuView:
        snap = self.sampler.sample()
        pids: set[int] = set()
        if record is not None and record.active:
            from engine import supervisor

            try:
                pids = {p.pid for p in supervisor.live_tree(record)}
            except Exception:  # a process vanished mid-walk: count none this second
                pids = set()
        cpu, rss = gpu.tree_usage(pids) if pids else (0.0, 0)
        ours, others = gpu.attribute(snap, pids)
        for g in snap.gpus:
            self._util.setdefault(g.index, deque(maxlen=HISTORY)).append(g.util_gpu or 0.0)
            self._mem.setdefault(g.index, deque(maxlen=HISTORY)).append(
                100.0 * g.mem_used / g.mem_total if g.mem_total else 0.0)
        self._cpu.append(cpu)
        return GpuView(snap, ours, others, len(pids), cpu, rss,
                       {k: list(v) for k, v in self._util.items()}, {k: list(v) for k, v in self._mem.items()},
                       list(self._cpu))

    def close(self) -> None:
        self.sampler.close()
