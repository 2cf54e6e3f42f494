"""Processes of swiftdeck's earlier runs that outlived them (orphaned dataloader workers, a server or worker
whose run ended, a run whose registry folder was deleted), with their RAM and GPU memory.

Which processes are ours: those of a run's verified tree (engine.supervisor.live_tree: recorded pid + start
time, the group while provably the run's), and those whose environment carries the marker of a run
(`SWIFTDECK_RUN_ID`, engine.runs.MARKER) whose record is gone. Each is signalled only after its pid and start
time are checked again at that moment (engine.runs.signal_verified). Other GPU users are listed as such and
never touched."""
from __future__ import annotations

import signal
import time
from dataclasses import asdict, dataclass

import psutil

from engine import runs, supervisor
from engine.runs import is_same_process

GONE = "gone"  # run_status of a process whose run has no record any more


@dataclass
class Leftover:
    run_id: str
    run_status: str
    pid: int
    create_time: float
    name: str
    cmdline: str
    rss: int
    gpu_mem: int | None = None

    def to_json(self) -> dict:
        return asdict(self)


def find(gpu_snapshot=None) -> list[Leftover]:
    """Live processes of runs that are no longer active, and of runs whose record is gone."""
    gpu_by_pid = {}
    if gpu_snapshot is not None and gpu_snapshot.available:
        gpu_by_pid = {p.pid: p.used_mem for g in gpu_snapshot.gpus for p in g.processes}
    found: dict[int, Leftover] = {}

    def add(run_id: str, status: str, proc: psutil.Process) -> None:
        try:
            with proc.oneshot():
                found.setdefault(proc.pid, Leftover(run_id, status, proc.pid, proc.create_time(), proc.name(),
                                                    " ".join(proc.cmdline())[:300], proc.memory_info().rss,
                                                    gpu_by_pid.get(proc.pid)))
        except psutil.Error:
            pass

    for rec in runs.all_runs():
        if rec.active:
            continue
        for proc in supervisor.live_tree(rec):
            add(rec.id, rec.status, proc)
    root = runs.runs_dir()
    for run_id, procs in runs.marked_processes().items():
        if not (root / run_id / "record.json").exists():
            for proc in procs:
                add(run_id, GONE, proc)
    return list(found.values())


def _alive(items: list[tuple[int, float]]) -> list[tuple[int, float]]:
    return [(pid, ctime) for pid, ctime in items if is_same_process(pid, ctime)]


def _wait_gone(items: list[tuple[int, float]], timeout: float) -> list[tuple[int, float]]:
    deadline = time.time() + timeout
    while (left := _alive(items)) and time.time() < deadline:
        time.sleep(0.05)
    return left


def stop(items: list[Leftover], grace_s: float = 5.0) -> list[int]:
    """SIGTERM, then SIGKILL after `grace_s`; each signal only to the very process found (pid + start time,
    checked at the moment of signalling). Returns pids still alive."""
    sent = [(i.pid, i.create_time) for i in items if runs.signal_verified(i.pid, i.create_time, signal.SIGTERM)]
    left = _wait_gone(sent, grace_s)
    for pid, ctime in left:
        runs.signal_verified(pid, ctime, signal.SIGKILL)
    return [pid for pid, _ in _wait_gone(left, grace_s)]
