"""A run's status, decided in one place from its record, its processes and its files.

    decide(rec, alive=..., files=...)  the rules (no I/O)
    observe(rec)                       what the console and the run folder show (bounded reads)
    settle(rec)                        an active record whose processes are all gone gets its final status
    folder_status(folder, rec)         the label of a run folder (`swiftdeck checkpoints`)

The runner's final write, `runs.refresh`, `swiftdeck stop` and the checkpoint labels all go through `decide`, so
the status says what the files and processes show, not which process happened to write last:

- ms-swift printed "End time of running main" and its final record reached max_steps (the last checkpoint it
  names complete): finished, whatever the exit code (swiftdeck may end a slow teardown) and even when the runner
  was killed before it could record one;
- a stop was asked for: stopped, never failed;
- exit code 0 with ms-swift's final record short of max_steps (the trainer interrupted from outside swiftdeck):
  stopped, not finished;
- otherwise the exit code (0: finished, else failed); without one (the runner is gone) a main that returned early
  is stopped, a traceback or fatal sign in the console is failed, and anything else is lost.
"""
from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from engine import runs
from engine.command import swift_args_of
from engine.checkpoints import RunFolder, scan_run

TRAINING = ("sft", "pt", "rlhf")  # ms-swift commands with a trainer, max_steps and checkpoints
MAIN_END_RE = re.compile(rb"End time of running main: (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d+)?)")
OUTPUT_DIR_RE = re.compile(rb"\[INFO:swift\] output_dir: ([^\r\n]+)")
HEAD_BYTES = 256 * 1024  # the output_dir line comes early
TAIL_BYTES = 64 * 1024  # "End time of running main" is one of the last lines
STARTING_GRACE_S = 30.0  # a record the launcher has not yet given a runner
RUNNER_RESERVE = ".reserve"  # the runner's spare room beside record.json (engine.runner), given back at its end


@dataclass
class Files:
    """What a run's files show."""
    run_dir: str | None = None  # the record's, or the console's `output_dir:` line
    main_ended_at: float | None = None  # ms-swift's "End time of running main" (its main returned normally)
    folder: RunFolder | None = None  # the run folder as scanned (training runs)
    failure: dict | None = None  # a diagnosis of the console, when it was asked for and shows a failure


def _read_range(path: Path, *, head: int = 0, tail: int = 0) -> bytes:
    try:
        with open(path, "rb") as fh:
            if head:
                return fh.read(head)
            size = fh.seek(0, os.SEEK_END)
            fh.seek(max(0, size - tail))
            return fh.read()
    except OSError:
        return b""


def main_end_time(data: bytes) -> float | None:
    """The time of the last "End time of running main: ..." in `data` (console bytes), as a Unix time."""
    found = MAIN_END_RE.findall(data)
    if not found:
        return None
    text = found[-1].decode()
    try:
        return datetime.strptime(text, "%Y-%m-%d %H:%M:%S.%f" if "." in text else "%Y-%m-%d %H:%M:%S").timestamp()
    except ValueError:
        return None


def main_ended(console_log: Path) -> float | None:
    """When ms-swift's main returned, from the end of a console log (None: not yet, or never)."""
    return main_end_time(_read_range(console_log, tail=TAIL_BYTES))


def run_dir_from_console(console_log: Path, cwd: str) -> str | None:
    """The run folder ms-swift printed (`[INFO:swift] output_dir: ...`), resolved against the run's cwd."""
    m = OUTPUT_DIR_RE.search(_read_range(console_log, head=HEAD_BYTES))
    if not m:
        return None
    return str((Path(cwd) / m.group(1).decode(errors="replace").strip()).resolve())


def observe(rec: runs.RunRecord, *, diagnose_console: bool = False) -> Files:
    """The run's files: run folder (from the record or the console), end of main, the scanned run folder, and,
    with `diagnose_console`, the console's diagnosis when it shows a failure."""
    files = Files(run_dir=rec.run_dir or run_dir_from_console(rec.console_log, rec.cwd),
                  main_ended_at=main_ended(rec.console_log))
    if rec.kind in TRAINING and files.run_dir and Path(files.run_dir).is_dir():
        try:
            files.folder = scan_run(Path(files.run_dir), registry=False)
        except OSError:
            files.folder = None
    if diagnose_console and rec.console_log.exists():
        from engine import diagnose

        d = diagnose.diagnose_file(rec.console_log, exit_code=rec.exit_code, command=rec.kind,
                                   args=swift_args_of(rec)).to_json()
        if d["kind"] not in ("unknown", "no_failure") or d["details"].get("exception"):
            files.failure = d
    return files


def reached_end(folder: RunFolder | None) -> bool:
    """ms-swift's final record says the run got to max_steps, and the last checkpoint it names (if still there) is
    complete. A final record alone proves nothing: ms-swift writes it after an interrupt or a crash too."""
    if folder is None or not folder.ended:
        return False
    step, total = folder.final.get("global_step"), folder.max_steps
    if not isinstance(step, int) or not total or step < total:
        return False
    named = Path(str(folder.final.get("last_model_checkpoint") or "")).name
    return not any(c.name == named and not c.complete for c in folder.checkpoints)


def short_of_end(folder: RunFolder | None) -> bool:
    """ms-swift's final record is there and names a step short of max_steps (an interrupt it ended on, not the end
    of training). Unknown steps prove nothing."""
    if folder is None or not folder.ended:
        return False
    step, total = folder.final.get("global_step"), folder.max_steps
    return isinstance(step, int) and not isinstance(step, bool) and bool(total) and step < total


def early_stopping(rec: runs.RunRecord) -> bool:
    """The command asked for ms-swift's early stop (`--callbacks early_stop`, `--early_stop_interval`): ending short
    of max_steps is how it finishes."""
    return any("early_stop" in a for a in swift_args_of(rec))


def completed(kind: str, files: Files) -> bool:
    """The files show a run that ended normally and did all it was asked to."""
    if files.main_ended_at is None:
        return False
    return reached_end(files.folder) if kind in TRAINING else True


def decide(rec: runs.RunRecord, *, alive: bool, files: Files | None = None) -> str:
    """The status of a run from its record, whether any of its processes is alive, and its files."""
    if alive:
        return "stopping" if rec.active and rec.stop_requested else rec.status
    if rec.stop_requested and rec.kind not in TRAINING:
        return "stopped"  # a server ends when asked, and prints its end of main then too: that is no finish
    if files is not None and completed(rec.kind, files):
        return "finished"
    if rec.stop_requested:
        return "stopped"
    if rec.exit_code == 0 and rec.kind in TRAINING and files is not None and short_of_end(files.folder) \
            and not early_stopping(rec):
        return "stopped"  # exit 0 with ms-swift's final record short of max_steps: stopped from outside swiftdeck
    if rec.exit_code is not None:
        return "finished" if rec.exit_code == 0 else "failed"
    if files is not None and files.main_ended_at is not None:
        return "stopped"  # main returned before max_steps (a stop from outside swiftdeck) and nobody saw the exit
    if files is not None and files.failure is not None:
        return "failed"
    return "lost"


def _alive(rec: runs.RunRecord) -> bool:
    """The runner, ms-swift's process or a trainer of the run is alive (the wrapper may be killed while its trainer
    trains on). Other leftovers (a worker, an orphaned child) do not keep a run alive: `swiftdeck leftovers`."""
    if runs.is_same_process(rec.runner_pid, rec.runner_create_time) or runs.is_same_process(rec.pid, rec.create_time):
        return True
    from engine import supervisor

    return bool(rec.pid and rec.kind in TRAINING and supervisor.trainer_processes(rec))


def settle(rec: runs.RunRecord) -> runs.RunRecord:
    """An active record whose runner and processes are all gone (the runner was killed, the host rebooted) gets
    the status its files show, its run folder and, for a failure, the console's diagnosis. Others are returned
    as they are: the runner writes the final status of the runs it still watches."""
    if not rec.active:
        return rec
    if _alive(rec):
        runs.heartbeat(rec.id)  # seen alive now: a run that dies unseen is dated by this, not by who looks later
        return rec
    if rec.status == "starting" and rec.runner_pid is None and time.time() - rec.started_at < STARTING_GRACE_S:
        return rec  # the launcher has not recorded the runner yet
    (rec.folder / RUNNER_RESERVE).unlink(missing_ok=True)  # the runner was killed before it gave it back
    files = observe(rec, diagnose_console=not rec.stop_requested)

    def ended(r: runs.RunRecord) -> None:
        if not r.active:
            return  # written meanwhile
        r.status = decide(r, alive=False, files=files)
        r.ended_at = r.ended_at or files.main_ended_at or (runs.last_seen_alive(r) if r.status == "lost"
                                                            else time.time())
        r.run_dir = r.run_dir or files.run_dir
        if r.status == "lost":
            r.notes.append("process gone without an exit code (swiftdeck's runner was killed or the host rebooted)")
        else:
            r.notes.append(f"swiftdeck's runner was gone before the run ended (killed, or the host rebooted): "
                           f"{r.status}, from its files")
        if r.status == "failed" and files.failure:
            r.meta.setdefault("diagnosis", files.failure)

    try:
        return runs.update(rec.id, ended)
    except runs.StorageError:  # cannot record it (disk full, read-only): the derived status holds all the same
        ended(rec)
        return rec


def exit_words(status: str, exit_code: int | None, stop_requested: bool = False) -> str:
    """How an ended run ended, in words a user follows ("" when the status says it all): "stopped by you (SIGINT)",
    "killed by SIGKILL", "exit code 1" — never a bare "exit -2"."""
    import signal

    def signame(n: int) -> str:
        try:
            return signal.Signals(n).name
        except ValueError:
            return f"signal {n}"

    sig = signame(-exit_code) if isinstance(exit_code, int) and exit_code < 0 else None
    if stop_requested and status in ("stopped", "stopping"):
        return f"stopped by you ({sig})" if sig else "stopped by you"
    if status not in ("failed", "lost", "stopped") or exit_code in (None, 0):
        return ""
    if sig:
        return "interrupted (SIGINT)" if sig == "SIGINT" else f"killed by {sig}"
    if exit_code > 128 and exit_code - 128 < 65:
        return f"exit code {exit_code}: killed by {signame(exit_code - 128)}"
    return f"exit code {exit_code}"


def registry_index() -> dict[str, str]:
    """Run folder (resolved) -> id of the registry record that points at it (the newest, if several do)."""
    index: dict[str, tuple[float, str]] = {}
    for path in runs.runs_dir().glob("*/record.json"):
        try:
            rec = runs._read(path.parent.name)
        except (OSError, ValueError, TypeError):
            continue
        if rec.run_dir:
            key = str(Path(rec.run_dir).resolve())
            if key not in index or index[key][0] < rec.started_at:
                index[key] = (rec.started_at, rec.id)
    return {k: v for k, (_, v) in index.items()}


def record_for(folder: Path, index: dict[str, str] | None = None) -> runs.RunRecord | None:
    """The registry record of a run folder (status refreshed), if swiftdeck launched it."""
    index = registry_index() if index is None else index
    run_id = index.get(str(Path(folder).resolve()))
    if run_id is None:
        return None
    try:
        return runs.load(run_id)
    except (OSError, ValueError, TypeError):
        return None


def folder_status(folder: RunFolder, rec: runs.RunRecord | None = None) -> str:
    """A run folder's state: its registry record's status when one points at it, else what its files show:
    finished only when the final record reached max_steps, "ended" for a final record short of it (or whose last
    checkpoint is incomplete), "not finished" without one."""
    if rec is not None:
        return rec.status
    if folder.empty:
        return "empty"
    if reached_end(folder):
        return "finished"
    return "ended" if folder.ended else "not finished"  # RunFolder.label: "ended at step N/M"
