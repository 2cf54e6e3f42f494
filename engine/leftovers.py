"""Processes of swiftdeck's earlier runs that outlived them (orphaned dataloader workers, a server or worker
whose run ended), found by registry pid + start time, with their RAM and GPU memory. Only our own processes are
ever offered for stopping; other GPU users are listed as such and never touched."""
from __future__ import annotations

import signal
import time
from dataclasses import asdict, dataclass

import psutil

from engine import runs, supervisor
from engine.runs import is_same_process


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
    """Live processes of runs that are no longer active."""
    gpu_by_pid = {}
    if gpu_snapshot is not None and gpu_snapshot.available:
        gpu_by_pid = {p.pid: p.used_mem for g in gpu_snapshot.gpus for p in g.processes}
    found = []
    for rec in runs.all_runs():
        if rec.active:
            continue
        for proc in supervisor.live_tree(rec):
            try:
                with proc.oneshot():
                    found.append(Leftover(rec.id, rec.status, proc.pid, proc.create_time(), proc.name(),
                                          " ".join(proc.cmdline())[:300], proc.memory_info().rss,
                                          gpu_by_pid.get(proc.pid)))
            except psutil.NoSuchProcess:
                continue
    return found


def stop(items: list[Leftover], grace_s: float = 5.0) -> list[int]:
    """SIGTERM, then SIGKILL after `grace_s`; each pid re-verified by start time first. Returns pids still alive."""
    procs = []
    for item in items:
        if is_same_process(item.pid, item.create_time):
            try:
                proc = psutil.Process(item.pid)
                proc.send_signal(signal.SIGTERM)
                procs.append(proc)
            except psutil.NoSuchProcess:
                continue
    _, alive = psutil.wait_procs(procs, timeout=grace_s)
    for proc in alive:
        try:
            proc.kill()
        except psutil.NoSuchProcess:
            pass
    _, alive = psutil.wait_procs(alive, timeout=grace_s)
    time.sleep(0.05)
    return [p.pid for p in alive]
