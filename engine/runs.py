"""Run registry: one `record.json` per run under `runs_dir()/<id>/`, next to its console.log.

Written atomically (tmp file + os.replace) under a per-run lock, so the detached runner and any swiftdeck
process can update the same record. The status is re-derived on every read, so it stays right after swiftdeck
crashed or the machine rebooted: a dead pid without an exit code is `lost`, and a pid now used by another
process (different start time) is not ours.

A run id has one shape (`ID_RE`); nothing outside `runs_dir()` is ever read as a record. Records are validated
on load: a bad one is skipped and named (`scan`). The stored command has its secrets masked (engine.redact); the
real values are in the run folder's 0600 `secrets.json`, read only by engine.runner. Every process a run starts
carries `SWIFTDECK_RUN_ID=<id>` in its environment (`MARKER`), so it can be found even if its folder is deleted.
"""
from __future__ import annotations

from engine.errors import SwiftdeckError
import dataclasses
import fcntl
import math
import os
import re
import secrets
import shutil
import signal
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import orjson
import psutil

from engine import paths
from engine.paths import StorageError, open_private, runs_dir, storage_error
from engine.redact import MASK, is_secret_name, masked_flags, redact_argv, redact_data, redact_env

ACTIVE = ("starting", "running", "stopping")
STATUSES = (*ACTIVE, "finished", "failed", "stopped", "lost")

ID_RE = re.compile(r"[a-z]+-[0-9]{8}-[0-9]{6}-[0-9a-z]{1,16}")  # kind-YYYYMMDD-HHMMSS-xxxx
MARKER = "SWIFTDECK_RUN_ID"  # in the environment of every process a run starts (and of its runner)
SECRETS = "secrets.json"  # the real argv/env of a run whose command has secrets (0600, read by engine.runner)
HEARTBEAT = "heartbeat"  # its mtime: the last time the run's process was seen alive
HEARTBEAT_S = 2.0  # how often the runner touches it
MIN_FREE_BYTES = 1 << 20  # a run needs room for its record and the first lines of its console

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


def valid_id(run_id: object) -> bool:
    return isinstance(run_id, str) and ID_RE.fullmatch(run_id) is not None


class UnknownRun(SwiftdeckError, LookupError):
    pass


class RunFolderGone(SwiftdeckError, FileNotFoundError):
    """The run's folder under runs_dir() was deleted (its processes may still run: see engine.leftovers)."""

    def __init__(self, run_id: str, processes: int = 0):
        self.run_id = run_id
        alive = (f"; {processes} of its processes still run: `swiftdeck leftovers` can stop them" if processes
                 else "; if any of its processes still run, `swiftdeck leftovers` finds them")
        super().__init__(f"run {run_id}'s registry folder is gone: {runs_dir() / run_id}{alive}")


class BadRecord(SwiftdeckError, ValueError):
    """A record.json that is not a valid run record (truncated, edited by hand, from a newer swiftdeck)."""

    def __init__(self, path: Path, reason: str):
        self.path, self.reason = path, reason
        super().__init__(f"unreadable run record {path}: {reason}")


class MaskedSecret(SwiftdeckError, ValueError):
    """A command to start whose secret values are the mask (copied from a record): it would run with ***."""


# ---------------------------------------------------------------- which processes are ours

def is_same_process(pid: int | None, create_time: float | None) -> bool:
    """True if `pid` is alive and is the very process we recorded (same start time), not a reused pid."""
    if not pid or create_time is None:
        return False
    try:
        proc = psutil.Process(pid)
        return abs(proc.create_time() - create_time) < 0.05 and proc.status() != psutil.STATUS_ZOMBIE
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False


def signal_verified(pid: int, create_time: float, sig: int) -> bool:
    """Send `sig` to `pid` only if it is the process that started at `create_time`; True if sent.

    The process is pinned by a pidfd first and verified after: the signal goes to the process that was verified,
    even if it exits and its pid is reused in between (then nothing is sent)."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return False
    except (AttributeError, OSError):  # no pidfd (old kernel): psutil re-checks the start time right before kill
        try:
            proc = psutil.Process(pid)
            if abs(proc.create_time() - create_time) >= 0.05:
                return False
            proc.send_signal(sig)
            return True
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            return False
    try:
        if not is_same_process(pid, create_time):
            return False
        signal.pidfd_send_signal(fd, sig)
        return True
    except (ProcessLookupError, PermissionError):
        return False
    finally:
        os.close(fd)


def last_seen_alive(rec: RunRecord) -> float:
    """The last time the run was seen alive: the runner's heartbeat, else the newest start time on record."""
    times = [rec.started_at, rec.create_time, rec.runner_create_time, *(t for _, t in rec.descendants)]
    try:
        times.append((runs_dir() / rec.id / HEARTBEAT).stat().st_mtime)
    except OSError:
        pass
    return max(t for t in times if t is not None)


def heartbeat(run_id: str) -> None:
    """Note that the run is alive now (an mtime: needs no free space). Best effort."""
    path = runs_dir() / run_id / HEARTBEAT
    try:
        os.utime(path)
    except FileNotFoundError:
        try:
            open_private(path, "ab").close()
        except OSError:
            pass
    except OSError:
        pass


def marked_processes() -> dict[str, list[psutil.Process]]:
    """Live processes of this user whose environment carries the marker of a run of this data dir, by run id.
    Not this process or its ancestors."""
    home = paths.data_dir().resolve()
    me = psutil.Process()
    skip = {me.pid, *(p.pid for p in me.parents())}
    uid = os.getuid()
    out: dict[str, list[psutil.Process]] = {}
    for proc in psutil.process_iter(["uids"]):
        try:
            uids = proc.info["uids"]
            if proc.pid in skip or uids is None or uids.real != uid:
                continue
            env = proc.environ()
            run_id = env.get(MARKER)
            if not valid_id(run_id) or paths.home_of(env).resolve() != home:
                continue
            if proc.status() != psutil.STATUS_ZOMBIE:
                out.setdefault(run_id, []).append(proc)
        except (psutil.Error, OSError):
            continue
    return out


# ---------------------------------------------------------------- records on disk

def _folder(run_id: str) -> Path:
    if not valid_id(run_id):
        raise UnknownRun(f"'{run_id}' is not a swiftdeck run id (like sft-20260101-120000-ab12)")
    return runs_dir() / run_id


def _record_path(run_id: str) -> Path:
    return _folder(run_id) / "record.json"


@contextmanager
def _locked(run_id: str) -> Iterator[None]:
    lock = _folder(run_id) / ".lock"
    try:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, paths.PRIVATE_FILE)
    except FileNotFoundError:
        raise RunFolderGone(run_id) from None
    except OSError as exc:
        raise storage_error(exc, lock) from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def _write(rec: RunRecord) -> None:
    """Atomically replace the record; on any error the old record stays and no temp file is left."""
    path = _record_path(rec.id)
    tmp = path.with_name(f"record.tmp{os.getpid()}")
    data = dataclasses.asdict(rec)
    data["argv"], data["env"] = redact_argv(rec.argv), redact_env(rec.env)
    data["notes"], data["meta"] = redact_data(rec.notes), redact_data(rec.meta)  # log excerpts, diagnoses
    try:
        with open_private(tmp, "wb") as fh:
            fh.write(orjson.dumps(data, option=orjson.OPT_INDENT_2))
        os.replace(tmp, path)
    except FileNotFoundError as exc:
        if not path.parent.is_dir():
            raise RunFolderGone(rec.id) from None
        raise storage_error(exc, path) from None
    except OSError as exc:
        raise storage_error(exc, path) from None
    finally:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass


def _num(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _strs(v) -> bool:
    return isinstance(v, list) and all(isinstance(x, str) for x in v)


def _opt(check):
    return lambda v: v is None or check(v)


_CHECKS: dict[str, tuple[Callable[[object], bool], str]] = {
    "kind": (lambda v: isinstance(v, str) and v.isidentifier(), "a word"),
    "argv": (lambda v: _strs(v) and len(v) > 0, "a list of strings"),
    "cwd": (lambda v: isinstance(v, str), "a string"),
    "env": (lambda v: isinstance(v, dict) and all(isinstance(x, str) for kv in v.items() for x in kv),
            "a string mapping"),
    "label": (lambda v: isinstance(v, str), "a string"),
    "status": (lambda v: v in STATUSES, f"one of {', '.join(STATUSES)}"),
    "output_dir": (_opt(lambda v: isinstance(v, str)), "a string"),
    "run_dir": (_opt(lambda v: isinstance(v, str)), "a string"),
    "pid": (_opt(lambda v: _int(v) and v > 0), "a pid"),
    "pgid": (_opt(lambda v: _int(v) and v > 0), "a pid"),
    "create_time": (_opt(_num), "a number"),
    "runner_pid": (_opt(lambda v: _int(v) and v > 0), "a pid"),
    "runner_create_time": (_opt(_num), "a number"),
    "descendants": (lambda v: isinstance(v, list) and all(
        isinstance(d, list) and len(d) == 2 and _num(d[0]) and d[0] == int(d[0]) > 0 and _num(d[1]) for d in v),
        "a list of [pid, start time]"),
    "exit_code": (_opt(_int), "an integer"),
    "started_at": (_num, "a number"),
    "ended_at": (_opt(_num), "a number"),
    "stop_requested": (_opt(lambda v: isinstance(v, str)), "a string"),
    "notes": (_strs, "a list of strings"),
    "meta": (lambda v: isinstance(v, dict), "an object"),
}
_REQUIRED = ("kind", "argv", "cwd", "started_at")


def _parse(raw: bytes, run_id: str, path: Path) -> RunRecord:
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise BadRecord(path, "not valid JSON (truncated?)" if raw.strip() else "empty file") from None
    if not isinstance(data, dict):
        raise BadRecord(path, "not a JSON object")
    for name in _REQUIRED:
        if name not in data:
            raise BadRecord(path, f"{name} is missing")
    for name, (check, what) in _CHECKS.items():
        if name in data and not check(data[name]):
            shown = orjson.dumps(data[name]).decode()
            raise BadRecord(path, f"{name} is not {what} ({shown[:40]}{'...' if len(shown) > 40 else ''})")
    names = {f.name for f in dataclasses.fields(RunRecord)}
    data["id"] = run_id  # a record is its folder's: never follow an id written inside it
    return RunRecord(**{k: v for k, v in data.items() if k in names})


def _read(run_id: str) -> RunRecord:
    path = _record_path(run_id)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        if not path.parent.is_dir():
            raise RunFolderGone(run_id) from None
        raise BadRecord(path, "record.json is missing") from None
    except OSError as exc:
        raise BadRecord(path, exc.strerror or str(exc)) from None
    return _parse(raw, run_id, path)


def _check_space(root: Path) -> None:
    try:
        free = shutil.disk_usage(root).free
    except OSError:
        return
    if free < MIN_FREE_BYTES:
        raise StorageError(f"no space left on {paths.mount_point(root)} for the run registry ({root}): "
                           f"{free // 1024} KiB free, a run needs at least {MIN_FREE_BYTES >> 20} MiB")


def create(kind: str, argv: list[str], cwd: str, *, env: dict[str, str] | None = None, label: str = "",
           output_dir: str | None = None, notes: list[str] | None = None) -> RunRecord:
    """A new record (status `starting`). Secrets in argv/env are stored masked; their values go to SECRETS.
    On any error nothing of the run is left on disk."""
    argv, env = list(argv), dict(env or {})
    masked = masked_flags(argv) + [k for k, v in env.items() if v == MASK and is_secret_name(k, bare=True)]
    if masked:
        raise MaskedSecret(f"{', '.join(masked)} is {MASK}, a secret masked in a stored record: give its real value")
    rec = RunRecord(id=new_id(kind), kind=kind, argv=redact_argv(argv), cwd=cwd, env=redact_env(env), label=label,
                    output_dir=output_dir, notes=list(notes or []))
    root = runs_dir()
    _check_space(root)
    for attempt in range(8):
        try:
            rec.folder.mkdir(mode=paths.PRIVATE_DIR)
            break
        except FileExistsError as exc:  # two runs of one kind in one second drew the same suffix
            if attempt == 7:
                raise storage_error(exc, rec.folder) from None
            rec.id = new_id(kind)
        except OSError as exc:
            raise storage_error(exc, rec.folder) from None
    try:
        if rec.argv != argv or rec.env != env:
            secret = rec.folder / SECRETS
            try:
                with open_private(secret, "wb") as fh:
                    fh.write(orjson.dumps({"argv": argv, "env": env}))
            except OSError as exc:
                raise storage_error(exc, secret) from None
        _write(rec)
    except BaseException:
        shutil.rmtree(rec.folder, ignore_errors=True)
        raise
    return rec


def command(rec: RunRecord) -> tuple[list[str], dict[str, str]]:
    """The argv and recorded env to start, with the real secret values. Only engine.runner calls this."""
    path = rec.folder / SECRETS
    try:
        data = orjson.loads(path.read_bytes())
    except FileNotFoundError:
        return list(rec.argv), dict(rec.env)
    except (OSError, orjson.JSONDecodeError) as exc:
        raise BadRecord(path, f"unreadable: {exc}") from None
    argv, env = data.get("argv") if isinstance(data, dict) else None, data.get("env") if isinstance(data, dict) else None
    if not _strs(argv) or not isinstance(env, dict) or redact_argv(argv) != rec.argv or redact_env(env) != rec.env:
        raise BadRecord(path, "does not match the run's record")
    return argv, env


def update(run_id: str, change: Callable[[RunRecord], None]) -> RunRecord:
    """Read-modify-write one record under its lock. Raises RunFolderGone, BadRecord or StorageError (disk full,
    read-only): the record on disk is then unchanged."""
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


@dataclass
class Unreadable:
    path: Path
    reason: str


def scan() -> tuple[list[RunRecord], list[Unreadable]]:
    """Every valid record (newest first, refreshed status) and the record files that are not valid."""
    out, bad = [], []
    for path in sorted(runs_dir().glob("*/record.json")):
        run_id = path.parent.name
        if not valid_id(run_id):
            bad.append(Unreadable(path, "its folder name is not a run id"))
            continue
        try:
            out.append(load(run_id))
        except BadRecord as exc:
            bad.append(Unreadable(exc.path, exc.reason))
        except RunFolderGone:
            continue  # deleted while we looked
    return sorted(out, key=lambda r: r.started_at, reverse=True), bad


def all_runs() -> list[RunRecord]:
    """Every recorded run, newest first, with refreshed status. Unreadable records are skipped (see `scan`)."""
    return scan()[0]


def describe_unreadable(bad: list[Unreadable]) -> str | None:
    """One line naming the unreadable records, or None."""
    if not bad:
        return None
    shown = "; ".join(f"{b.path} ({b.reason})" for b in bad[:3])
    more = f"; and {len(bad) - 3} more" if len(bad) > 3 else ""
    return f"{len(bad)} unreadable run record{'s' if len(bad) > 1 else ''}: {shown}{more}"


def _gone(run_id: str) -> None:
    """Raise RunFolderGone if processes of the run `run_id`, whose record is gone, are still alive."""
    procs = marked_processes().get(run_id)
    if procs:
        raise RunFolderGone(run_id, len(procs))


def resolve(ref: str) -> RunRecord:
    """A registry id (or unique prefix), or the path of a run folder / console log that a record points at.
    Nothing outside the registry is read: `../x` is neither an id nor a run's folder."""
    if valid_id(ref):
        folder = runs_dir() / ref
        if (folder / "record.json").is_file():
            return load(ref)
        if not folder.exists():
            _gone(ref)
    runs = all_runs()
    if re.fullmatch(r"[a-z0-9-]+", ref):
        matches = [r for r in runs if r.id.startswith(ref)]
        if len(matches) == 1:
            return matches[0]
        if len(matches) > 1:
            raise UnknownRun(f"'{ref}' matches several runs: {', '.join(r.id for r in matches[:5])}")
    path = Path(ref).expanduser().resolve()
    for r in runs:
        if path in {Path(p).resolve() for p in (r.run_dir, r.console_log, r.folder) if p}:
            return r
    registry = runs_dir().resolve()
    for candidate in (path, path.parent):  # a deleted run folder, or its console.log
        if candidate.parent == registry and valid_id(candidate.name) and not (candidate / "record.json").exists():
            _gone(candidate.name)
    orphans = sum(len(p) for i, p in marked_processes().items() if not (runs_dir() / i / "record.json").exists())
    hint = (f"; {orphans} process(es) of runs whose registry folder is gone still run: see `swiftdeck leftovers`"
            if orphans else "")
    raise UnknownRun(f"no swiftdeck run '{ref}' (see `swiftdeck runs`){hint}")
