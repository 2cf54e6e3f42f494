"""What the log pane says about the ranks of a distributed run (no Textual here): per rank of this node, whether it
runs, ended, died (torchrun's ChildFailedError summary: exit code or signal) or never started, and whether its
`[rankN]:` lines hold an error."""
from __future__ import annotations

from dataclasses import dataclass

from engine import ranks
from tui.logstore import LogStore


@dataclass(frozen=True)
class RankState:
    rank: int
    state: str  # running | ended | died | starting | never started
    detail: str = ""  # "exited with code 3 (first failure)", "killed by SIGKILL", "pid 1234"
    lines: int = 0  # its [rankN]: lines in the console
    errors: int = 0  # of those, error lines (a traceback)

    @property
    def bad(self) -> bool:
        return self.state in ("died", "never started") or self.errors > 0


def _how(failure: dict) -> str:
    how = (f"killed by {failure['signal']}" if failure.get("signal")
           else f"exited with code {failure['exit_code']}")
    return how + (" (first failure)" if failure.get("root_cause") else "")


def rank_states(rec, store: LogStore | None) -> list[RankState]:
    """The ranks of `rec` on this node, by rank; [] for a run that is not distributed."""
    if rec is None:
        return []
    layout = ranks.distributed(dict(rec.env or {}))
    recorded = {r.rank: r for r in ranks.recorded(rec)}
    if layout is None and not recorded:
        return []
    expected = set(recorded)
    if layout is not None:
        first = layout["node_rank"] * layout["nproc_per_node"]
        expected |= set(range(first, first + layout["nproc_per_node"]))
    alive = {r.rank for r, _ in ranks.live(rec)} if rec.active else set()
    failures: dict[int, dict] = {}
    if store is not None:
        for f in ranks.child_failures(store.child_failed_text()):
            if f["rank"] not in failures or f["root_cause"]:
                failures[f["rank"]] = f
    out = []
    for n in sorted(expected):
        counts = {"lines": store.rank_lines.get(n, 0), "errors": store.rank_errors.get(n, 0)} if store else {}
        r = recorded.get(n)
        if n in alive:
            out.append(RankState(n, "running", f"pid {r.pid}", **counts))
        elif n in failures:
            out.append(RankState(n, "died", _how(failures[n]), **counts))
        elif r is not None and rec.active and not rec.stop_requested:  # the run goes on without it: torchrun's summary comes at the end
            out.append(RankState(n, "died", f"its process exited (pid {r.pid})", **counts))
        elif r is not None:
            out.append(RankState(n, "ended", f"pid {r.pid}", **counts))
        else:
            out.append(RankState(n, "starting" if rec.active else "never started", "", **counts))
    return out
