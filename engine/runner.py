"""`python -m engine.runner RUN_ID`: the small detached process that owns one ms-swift process.

Started in its own session by engine.supervisor.launch. It starts ms-swift in another new session (stdin closed,
stdout+stderr appended to the run's console.log — a file, never a pipe that nobody drains), records pid, process
group and start time, keeps a list of descendants (children may move to other groups, e.g. under torchrun),
watches the console for the run folder, waits, and records the exit code and final status. It imports no torch.
"""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil

from engine import paths, runs, supervisor
from engine.ingest import ConsoleTail

OUTPUT_DIR_RE = re.compile(r"\[INFO:swift\] output_dir: (.+)")
POLL_S = 0.2
# Console signs after which the process tree is stopped at once (it may hang or leave workers holding the GPU).
CLEAN_UP_ON = {"cuda_oom"}


def final_status(exit_code: int, stop_requested: str | None) -> str:
    if stop_requested:
        return "stopped"
    return "finished" if exit_code == 0 else "failed"


def clean_up_after(kind: str, line: str, rec: runs.RunRecord, proc: subprocess.Popen) -> dict:
    """Stop the whole tree after a fatal console line; confirm with NVML that none of it holds GPU memory."""
    from engine import gpu

    detected = time.time()
    pids = [p.pid for p in supervisor.live_tree(rec)]
    sampler = gpu.GpuSampler()
    before = gpu.gpu_memory_of(pids, sampler.sample())
    try:  # let the trainer finish writing its traceback (it usually exits by itself within a moment)
        proc.wait(2)
    except subprocess.TimeoutExpired:
        pass
    left = supervisor.kill_tree(rec)
    after, deadline = before, time.time() + 15
    while True:  # the driver releases memory shortly after the processes are gone
        after = gpu.gpu_memory_of(pids, sampler.sample())
        if not after or time.time() > deadline:
            break
        time.sleep(0.2)
    snapshot = sampler.sample()
    sampler.close()
    return {"kind": kind, "line": line[-500:], "detected_at": detected, "tree_pids": pids, "left": left,
            "gpu_mem_before": before, "gpu_mem_after": after, "gpu_available": snapshot.available,
            "gpu_free_after": [g.mem_total - g.mem_used for g in snapshot.gpus],
            "seconds_to_clean": time.time() - detected}


def main(run_id: str) -> int:
    # In its own session the runner has no controlling terminal: no SIGHUP/SIGINT from a closed terminal.
    rec = runs._read(run_id)
    argv, run_env = runs.command(rec)  # with the real values of masked secrets
    env = {**os.environ, **run_env, "PYTHONUNBUFFERED": "1", runs.MARKER: run_id}
    # A swiftdeck started in the background by a shell (`swiftdeck train ... &`, a script) hands SIGINT down
    # ignored, and an ignored signal stays ignored across exec: the trainer would never see the SIGINT of a stop
    # (ms-swift 3.x has no other graceful stop). ms-swift gets the default disposition; the runner keeps its own.
    inherited = signal.signal(signal.SIGINT, signal.SIG_DFL)
    with paths.open_private(rec.console_log, "ab") as console:
        try:
            proc = subprocess.Popen(argv, cwd=rec.cwd, env=env, stdin=subprocess.DEVNULL, stdout=console,
                                    stderr=subprocess.STDOUT, start_new_session=True)
        except OSError as exc:
            reason = f"could not start {rec.argv[0]}: {exc}"
            console.write(f"swiftdeck: {reason}\n".encode())

            def failed(r: runs.RunRecord) -> None:
                r.status, r.exit_code, r.ended_at = "failed", 127, time.time()
                r.notes.append(reason)
            runs.update(run_id, failed)
            return 1
        finally:
            if inherited is not None:
                signal.signal(signal.SIGINT, inherited)

    me = psutil.Process()
    create_time = psutil.Process(proc.pid).create_time()

    def started(r: runs.RunRecord) -> None:
        r.pid, r.pgid, r.create_time = proc.pid, proc.pid, create_time
        r.runner_pid, r.runner_create_time = me.pid, me.create_time()
        r.status = "running" if r.status == "starting" else r.status

    rec = runs.update(run_id, started)
    watch = ConsoleTail(rec.console_log)
    known: dict[int, float] = {}
    last_tree = last_beat = 0.0
    while proc.poll() is None:
        rec = _watch_console(watch, rec, proc)
        if time.time() - last_beat >= runs.HEARTBEAT_S:
            last_beat = time.time()
            runs.heartbeat(run_id)
        if time.time() - last_tree > 1.0:
            last_tree = time.time()
            new = _descendants(proc.pid, known)
            if new:
                rec = runs.update(run_id, lambda r: setattr(r, "descendants", [[p, t] for p, t in known.items()]))
        time.sleep(POLL_S)

    exit_code = proc.returncode
    rec = _watch_console(watch, rec, proc)
    diagnosis = None
    if exit_code != 0 and not rec.stop_requested:
        from engine import diagnose

        diagnosis = diagnose.diagnose_file(rec.console_log, exit_code=exit_code, command=rec.kind,
                                           args=rec.argv[2:]).to_json()

    def ended(r: runs.RunRecord) -> None:
        r.exit_code, r.ended_at = exit_code, time.time()
        r.status = final_status(exit_code, r.stop_requested)
        if diagnosis:
            r.meta["diagnosis"] = diagnosis

    rec = runs.update(run_id, ended)
    left = supervisor.kill_tree(rec)  # ms-swift can leave dataloader workers behind
    if left:
        runs.update(run_id, lambda r: r.notes.append(f"processes still alive after exit: {left}"))
    return 0


def _watch_console(watch: ConsoleTail, rec: runs.RunRecord, proc: subprocess.Popen) -> runs.RunRecord:
    from engine.diagnose import match_line

    for line in watch.poll():
        match = OUTPUT_DIR_RE.search(line) if rec.run_dir is None else None
        if match:
            found = str((Path(rec.cwd) / match.group(1).strip()).resolve())
            rec = runs.update(rec.id, lambda r: setattr(r, "run_dir", found))
        kind = match_line(line)
        if kind in CLEAN_UP_ON and "clean_up" not in rec.meta:
            runs.update(rec.id, lambda r: r.meta.update(clean_up={"kind": kind, "detected_at": time.time()}))
            report = clean_up_after(kind, line, rec, proc)
            rec = runs.update(rec.id, lambda r: r.meta.update(clean_up=report))
    return rec


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
