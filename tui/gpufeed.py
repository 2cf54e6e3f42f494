"""GPU / process-tree readings for the GPU pane, taken on a worker thread (no Textual here)."""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from engine import gpu, ranks
from engine.runs import RunRecord

HISTORY = 60  # samples kept for the sparklines (one a second)


@dataclass(frozen=True)
class RankLine:
    """One rank of a distributed run as the pane shows it: its usage (None for a rank that has not started) and
    its global rank number."""
    rank: int
    usage: ranks.RankUsage | None


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
    ranks: list[RankLine] = field(default_factory=list)  # a distributed run's ranks on this node, by rank
    run_active: bool = False
    on_gpus: dict[int, tuple[int, ...]] = field(default_factory=dict)  # pid → NVML indices listing it

    def rank_pids(self) -> set[int]:
        """The pids of the ranks' trainers (their GPU memory is shown per rank)."""
        return {line.usage.rank.pid for line in self.ranks if line.usage is not None}

    def ranks_on(self, index: int) -> list[int]:
        """The ranks of this run that NVML lists on GPU `index`."""
        return [line.rank for line in self.ranks if line.usage is not None and index in line.usage.gpus]


def rank_lines(record: RunRecord | None, snapshot: gpu.GpuSnapshot, tree) -> list[RankLine]:
    """Every rank this node runs (or ran): the recorded ones with their usage, and those torchrun was asked for
    but that were never recorded (not started, or gone before the runner saw them). Empty for a single process."""
    if record is None:
        return []
    used = ranks.usage(record, snapshot, tree)
    layout = ranks.distributed(dict(record.env or {}))
    if not used and layout is None:
        return []
    by_rank = {u.rank.rank: u for u in used}
    expected: set[int] = set(by_rank)
    if layout is not None:
        first = layout["node_rank"] * layout["nproc_per_node"]
        expected |= set(range(first, first + layout["nproc_per_node"]))
    return [RankLine(r, by_rank.get(r)) for r in sorted(expected)]


class GpuFeed:
    """One sample() a second: NVML snapshot, our run's tree (pid + start time verified), the ranks, history."""

    def __init__(self, sampler: gpu.GpuSampler | None = None):
        self.sampler = sampler or gpu.GpuSampler()
        self._util: dict[int, deque] = {}
        self._mem: dict[int, deque] = {}
        self._cpu: deque = deque(maxlen=HISTORY)

    def sample(self, record: RunRecord | None) -> GpuView:
        snap = self.sampler.sample()
        tree = []
        if record is not None and record.active:
            from engine import supervisor

            try:
                tree = supervisor.live_tree(record)
            except Exception:  # a process vanished mid-walk: count none this second
                tree = []
        pids = {p.pid for p in tree}
        cpu, rss = gpu.tree_usage(pids) if pids else (0.0, 0)
        ours, others = gpu.attribute(snap, pids)
        try:
            lines = rank_lines(record, snap, tree)
        except Exception:  # a rank vanished mid-read: shown next second
            lines = []
        on_gpus: dict[int, tuple[int, ...]] = {}
        for g in snap.gpus:
            self._util.setdefault(g.index, deque(maxlen=HISTORY)).append(g.util_gpu or 0.0)
            self._mem.setdefault(g.index, deque(maxlen=HISTORY)).append(
                100.0 * g.mem_used / g.mem_total if g.mem_total else 0.0)
            for p in g.processes:
                on_gpus[p.pid] = (*on_gpus.get(p.pid, ()), g.index)
        self._cpu.append(cpu)
        return GpuView(snap, ours, others, len(pids), cpu, rss,
                       {k: list(v) for k, v in self._util.items()}, {k: list(v) for k, v in self._mem.items()},
                       list(self._cpu), lines, bool(record is not None and record.active), on_gpus)

    def close(self) -> None:
        self.sampler.close()
