"""Run registry: one `record.json` per run under `runs_dir()/<id>/`, next to its console.log.

Written atomically (tmp file + os.replace) under a per-run lock, so the detached runner and any swiftdeck
process can update the same record. The status is re-derived on every read, so it stays right after swiftdeck
crashed or the machine rebooted: a dead pid without an exit code is `lost`, and a pid now used by another
process (different start time) is not ours.
"""
from __future__ import annotations

from engine.errors import SwiftdeckError
import dataclasses
import fcntl
import os
import secrets
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import orjson
import psutil

from engine.paths import runs_dir

ACTIVE = ("starting", "running", "stopping")
STATUSES = (*ACTIVE, "finished", "failed", "stopped", "lost")

# Environment that changes what a run does; recorded with the run (the rest of the env is inherited).
RELEVANT_ENV = (
    "CUDA_VISIBLE_DEVICES", "NPROC_PER_NODE", "NNODES", "NODE_RANK", "MASTER_ADDR", "MASTER_PORT",
    "PYTORCH_CUDA_ALLOC_CONF", "USE_HF", "HF_HOME", "HF_ENDPOINT", "MODELSCOPE_CACHE", "ASCEND_RT_VISIBLE_DEVICES",
)


@dataclass
class RunRecord:
    id: str
    kind: str  # sft | infer | deploy | export | chat
    argv: list[str]
    cwd: str
    env: dict[str, str] = field(default_factory=dict)
    label: str = ""
    status: str = "starting"
    output_dir: str | None = None  # the --output_dir given (absolute)
    run_dir: str | None = None  # the versioned folder ms-swift printed (vN-YYYYMMDD-HHMMSS)
    pid: int | None = None  # the ms-swift process; leader of its own session and process group
    pgid: int | None = None
    create_time: float | None = None
    runner_pid: int | None = None
    runner_create_time: float | None = None
    descendants: list[list[float]] = field(default_factory=list)  # [pid, create_time] seen while running
    exit_code: int | None = None
    started_at: float = field(default_factory=time.time)
    ended_at: float | None = None
    stop_requested: str | None = None  # "graceful" | "force"
    notes: list[str] = field(default_factory=list)
    meta: dict = field(default_factory=dict)  # kind-specific extras (deploy URL, failure diagnosis, ...)

    @property
    def folder(self) -> Path:
        return runs_dir() / self.id

    @property
    def console_log(self) -> Path:
        return self.folder / "console.log"

    @property
    def active(self) -> bool:
        return self.status in ACTIVE

    def to_json(self) -> dict:
        data = dataclasses.asdict(self)
        data["console_log"] = str(self.console_log)
        return data


def new_id(kind: str) -> str:
    return f"{kind}-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(2)}"


def is_same_process(pid: int | None, create_time: float | None) -> bool:
    """True if `pid` is alive and is the very process we recorded (same start time), not a reused pid."""
    if not pid or create_time is None:
        return False
    try:
        proc = psutil.Process(pid)
        return abs(proc.create_time() - create_time) < 0.05 and proc.status() != psutil.STATUS_ZOMBIE
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False


def _record_path(run_id: str) -> Path:
    return runs_dir() / run_id / "record.json"


@contextmanager
def _locked(run_id: str) -> Iterator[None]:
    lock = runs_dir() / run_id / ".lock"
    with open(lock, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _write(rec: RunRecord) -> None:
    path = _record_path(rec.id)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    tmp.write_bytes(orjson.dumps(dataclasses.asdict(rec), option=orjson.OPT_INDENT_2))
    os.replace(tmp, path)


def _read(run_id: str) -> RunRecord:
    data = orjson.loads(_record_path(run_id).read_bytes())
    names = {f.name for f in dataclasses.fields(RunRecord)}
    return RunRecord(**{k: v for k, v in data.items() if k in names})


def create(kind: str, argv: list[str], cwd: str, *, env: dict[str, str] | None = None, label: str = "",
           output_dir: str | None = None, notes: list[str] | None = None) -> RunRecord:
    rec = RunRecord(id=new_id(kind), kind=kind, argv=list(argv), cwd=cwd, env=dict(env or {}), label=label,
                    output_dir=output_dir, notes=list(notes or []))
    rec.folder.mkdir(parents=True)
    _write(rec)
    return rec


def update(run_id: str, change: Callable[[RunRecord], None]) -> RunRecord:
    """Read-modify-write one record under its lock."""
    with _locked(run_id):
        rec = _read(run_id)
        change(rec)
        _write(rec)
        return rec


def refresh(rec: RunRecord) -> RunRecord:
    """Re-derive an active record's status once none of its processes is alive (engine.status.settle: from
    the record and the run's files, e.g. finished when the runner was killed but ms-swift ended normally)."""
    if not rec.active:
        return rec
    from engine import status

    return status.settle(rec)


def load(run_id: str) -> RunRecord:
    return refresh(_read(run_id))


def all_runs() -> list[RunRecord]:
    """Every recorded run, newest first, with refreshed status. Unreadable records are skipped."""
    out = []
    for path in runs_dir().glob("*/record.json"):
        try:
            out.append(load(path.parent.name))
        except (OSError, orjson.JSONDecodeError, TypeError):
            continue
    return sorted(out, key=lambda r: r.started_at, reverse=True)


class UnknownRun(SwiftdeckError, LookupError):
    pass


def resolve(ref: str) -> RunRecord:
    """A registry id (or unique prefix), or the path of a run folder / console log that a record points at."""
    if (runs_dir() / ref / "record.json").exists():
        return load(ref)
    runs = all_runs()
    matches = [r for r in runs if r.id.startswith(ref)]
    if len(matches) == 1:
        return matches[0]
    if len(matches) > 1:
        raise UnknownRun(f"'{ref}' matches several runs: {', '.join(r.id for r in matches[:5])}")
    path = Path(ref).expanduser().resolve()
    for r in runs:
        if path in {Path(p).resolve() for p in (r.run_dir, r.console_log, r.folder) if p}:
            return r
    raise UnknownRun(f"no swiftdeck run '{ref}' (see `swiftdeck runs`)")
