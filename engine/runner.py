"""`python -m engine.runner RUN_ID`: the small detached process that owns one ms-swift process.

Started in its own session by engine.supervisor.launch. It starts ms-swift in another new session (stdin closed,
stdout+stderr appended to the run's console.log — a file, never a pipe that nobody drains), records pid, process
group and start time, keeps a list of descendants (children may move to other groups, e.g. under torchrun),
watches the console for the run folder, waits, and records the exit code and final status. It imports no torch.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import psutil

from engine import runs, supervisor

OUTPUT_DIR_RE = re.compile(rb"\[INFO:swift\] output_dir: ([^\r\n]+)")
POLL_S = 0.2


def final_status(exit_code: int, stop_requested: str | None) -> str:
    if stop_requested:
        return "stopped"
    return "finished" if exit_code == 0 else "failed"


class ConsoleWatch:
    """Reads what ms-swift appends to the console log; finds the run folder."""

    def __init__(self, path: Path, cwd: str):
        self.path, self.cwd, self.offset, self.pending = path, cwd, 0, b""

    def poll(self) -> str | None:
        try:
            with open(self.path, "rb") as fh:
                fh.seek(self.offset)
                data = fh.read(1 << 20)
        except OSError:
            return None
        self.offset += len(data)
        self.pending = (self.pending + data)[-65536:]
        match = OUTPUT_DIR_RE.search(self.pending)
        if match:
            self.pending = b""
            return str((Path(self.cwd) / match.group(1).decode(errors="replace").strip()).resolve())
        return None


def main(run_id: str) -> int:
    # In its own session the runner has no controlling terminal: no SIGHUP/SIGINT from a closed terminal.
    rec = runs._read(run_id)
    env = {**os.environ, **rec.env, "PYTHONUNBUFFERED": "1"}
    with open(rec.console_log, "ab") as console:
        try:
            proc = subprocess.Popen(rec.argv, cwd=rec.cwd, env=env, stdin=subprocess.DEVNULL, stdout=console,
                                    stderr=subprocess.STDOUT, start_new_session=True)
        except OSError as exc:
            console.write(f"swiftdeck: could not start {rec.argv[0]}: {exc}\n".encode())

            def failed(r: runs.RunRecord) -> None:
                r.status, r.exit_code, r.ended_at = "failed", 127, time.time()
                r.notes.append(f"could not start: {exc}")
            runs.update(run_id, failed)
            return 1

    me = psutil.Process()
    create_time = psutil.Process(proc.pid).create_time()

    def started(r: runs.RunRecord) -> None:
        r.pid, r.pgid, r.create_time = proc.pid, proc.pid, create_time
        r.runner_pid, r.runner_create_time = me.pid, me.create_time()
        r.status = "running" if r.status == "starting" else r.status

    rec = runs.update(run_id, started)
    watch = ConsoleWatch(rec.console_log, rec.cwd)
    known: dict[int, float] = {}
    last_tree = 0.0
    while proc.poll() is None:
        if rec.run_dir is None:
            found = watch.poll()
            if found:
                rec = runs.update(run_id, lambda r: setattr(r, "run_dir", found))
        if time.time() - last_tree > 1.0:
            last_tree = time.time()
            new = _descendants(proc.pid, known)
            if new:
                rec = runs.update(run_id, lambda r: setattr(r, "descendants", [[p, t] for p, t in known.items()]))
        time.sleep(POLL_S)

    exit_code = proc.returncode
    if rec.run_dir is None:
        found = watch.poll()
        rec = runs.update(run_id, lambda r: setattr(r, "run_dir", found)) if found else rec

    def ended(r: runs.RunRecord) -> None:
        r.exit_code, r.ended_at = exit_code, time.time()
        r.status = final_status(exit_code, r.stop_requested)

    rec = runs.update(run_id, ended)
    left = supervisor.kill_tree(rec)  # ms-swift can leave dataloader workers behind
    if left:
        runs.update(run_id, lambda r: r.notes.append(f"processes still alive after exit: {left}"))
    return 0


def _descendants(pid: int, known: dict[int, float]) -> bool:
    """Add live descendants of `pid` to `known`; True if any is new."""
    try:
        children = psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return False
    new = False
    for child in children:
        try:
            if child.pid not in known:
                known[child.pid] = child.create_time()
                new = True
        except psutil.NoSuchProcess:
            continue
    return new


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
