"""`python -m engine.runner RUN_ID`: the small detached process that owns one ms-swift process.

Started in its own session by engine.supervisor.launch. It starts ms-swift in another new session (stdin closed,
stdout+stderr appended to the run's console.log — a file, never a pipe that nobody drains), records pid, process
group and start time, keeps a list of descendants (children may move to other groups, e.g. under torchrun),
watches the console for the run folder and the end of ms-swift's main (after which a slow teardown is ended:
supervisor.end_after_main), waits, and records the exit code and the final status (engine.status decides it from
the fresh record and the run's files, so a stop asked for meanwhile is seen). After a non-zero exit it notes the
free space of the console's and the run folder's volumes: a console write that failed for space leaves no error
in the log, and `diagnose` then says disk_full from this note. A small reserve file beside the record, given back
before the final write, keeps that write possible on a full disk. It imports no torch.
"""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import psutil

from engine import paths, ranks, runs, status, supervisor
from engine.ingest import ConsoleTail

OUTPUT_DIR_RE = re.compile(r"\[INFO:swift\] output_dir: (.+)")
POLL_S = 0.2
# Console signs after which the process tree is stopped at once (it may hang or leave workers holding the GPU).
CLEAN_UP_ON = {"cuda_oom"}
RESERVE_BYTES = 256 * 1024  # status.RUNNER_RESERVE: room for the final write when the disk has filled up
FINAL_WRITE_TRIES_S = 120.0
PEER_GRACE_S = 60.0  # multi-node: after the other side is gone, this node's ranks get this long to stop by themselves


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
    reserve = _reserve(rec.folder / status.RUNNER_RESERVE)
    watch = ConsoleTail(rec.console_log)
    known: dict[int, float] = {}
    tracker, peers = ranks.Tracker(), ranks.PeerWatch(run_env)
    last_tree = last_beat = 0.0
    main_ended_at = peer_deadline = None
    while proc.poll() is None:
        rec, ended_at = _watch_console(watch, rec, proc)
        main_ended_at = main_ended_at or ended_at
        if time.time() - last_beat >= runs.HEARTBEAT_S:
            last_beat = time.time()
            runs.heartbeat(run_id)
        if time.time() - last_tree > 1.0:
            last_tree = time.time()
            seen = dict(known)
            if _descendants(proc.pid, seen) | tracker.see({proc.pid: create_time, **seen}):  # ranks: engine.ranks
                written = _try_update(run_id, lambda r: (setattr(r, "descendants", [[p, t] for p, t in seen.items()]),
                                                         tracker.store(r.meta)))
                if written is not None:
                    rec, known = written, seen
                    tracker.dirty = False
        if why := peers.gone({proc.pid, *known}, bool(tracker.ranks)):  # multi-node: the other side is gone
            rec = _note_peer_gone(run_id, why) or rec
            if main_ended_at is None:
                supervisor.ask_to_stop(rec)  # a rank still saving finishes; one stuck in a collective is ended below
            peer_deadline = time.time() + (PEER_GRACE_S if main_ended_at is None else 0)
        if peer_deadline is not None and (time.time() > peer_deadline or not ranks.live(rec)):
            supervisor.kill_tree(rec)  # torchrun's agent would wait 300 s for the gone node at its exit barrier
            peer_deadline = None
        if main_ended_at is not None:
            rec = _reread(rec)  # a stop may have been asked for since
            left = supervisor.end_after_main(rec, main_ended_at)
            if left is not None:
                note = (f"ended the process tree {time.time() - main_ended_at:.1f}s after ms-swift's main returned "
                        "(its teardown was still running)" + (f"; still alive: {left}" if left else ""))
                rec = _try_update(run_id, lambda r: r.notes.append(note)) or rec
        time.sleep(POLL_S)

    exit_code = proc.returncode
    if exit_code != 0 and not rec.stop_requested and (why := peers.gone_at_exit(bool(tracker.ranks))):
        rec = _note_peer_gone(run_id, why) or rec
    rec, _ = _watch_console(watch, rec, proc)
    ended = _ending(_reread(rec), exit_code)
    _release(reserve)
    rec = _final_update(run_id, ended)
    left = supervisor.kill_tree(rec)  # ms-swift can leave dataloader workers behind
    if left:
        _try_update(run_id, lambda r: r.notes.append(f"processes still alive after exit: {left}"))
    return 0


def _note_peer_gone(run_id: str, why: str) -> runs.RunRecord | None:
    """A multi-node run whose other side is gone: this node stops with it (status `stopped`, diagnosed as stopped
    with the rest of its run; a stop asked for on this node keeps its own kind)."""
    return _try_update(run_id, lambda r: (setattr(r, "stop_requested", r.stop_requested or "peer"),
                                          r.notes.append(f"stopping this node: {why}")))


def _ending(rec: runs.RunRecord, exit_code: int) -> Callable[[runs.RunRecord], None]:
    """The final change of the record: exit code, status (engine.status, on the record as it is at the write),
    run folder and, for a failure, the free space at exit (before the reserve is given back) and the diagnosis
    (computed here, outside the lock)."""
    from engine import diagnose

    rec.exit_code = exit_code
    files = status.observe(rec)
    rec.status = status.decide(rec, alive=False, files=files)
    disk, diagnosis = None, None
    if rec.status == "failed":
        disk = rec.meta["exit_disk"] = disk_at_exit(rec)
        diagnosis = diagnose.diagnose_run(rec, recorded=False).to_json()

    def ended(r: runs.RunRecord) -> None:
        r.exit_code, r.ended_at = exit_code, time.time()
        r.status = status.decide(r, alive=False, files=files)
        r.run_dir = r.run_dir or files.run_dir
        if disk:
            r.meta["exit_disk"] = disk
        if r.status == "failed" and diagnosis:
            r.meta["diagnosis"] = diagnosis

    return ended


def disk_at_exit(rec: runs.RunRecord) -> list[dict]:
    """Free and total bytes of the volumes of the console and of the run folder (root may use the blocks kept
    for root, so it counts them as free)."""
    out, devices = [], set()
    for what, path in (("console", rec.folder), ("output", rec.run_dir or rec.output_dir)):
        if not path or not Path(path).exists():
            continue
        try:
            st, dev = os.statvfs(path), os.stat(path).st_dev
        except OSError:
            continue
        if dev in devices:
            continue
        devices.add(dev)
        free = st.f_bfree if os.geteuid() == 0 else st.f_bavail
        out.append({"what": what, "path": str(path), "free_bytes": free * st.f_frsize,
                    "total_bytes": st.f_blocks * st.f_frsize})
    return out


def _reserve(path: Path) -> Path | None:
    try:
        with open(path, "wb") as fh:
            os.posix_fallocate(fh.fileno(), 0, RESERVE_BYTES)
        return path
    except OSError:
        path.unlink(missing_ok=True)
        return None


def _release(reserve: Path | None) -> None:
    if reserve is not None:
        reserve.unlink(missing_ok=True)


def _reread(rec: runs.RunRecord) -> runs.RunRecord:
    try:
        return runs._read(rec.id)
    except (OSError, ValueError):
        return rec


def _try_update(run_id: str, change: Callable[[runs.RunRecord], None]) -> runs.RunRecord | None:
    """runs.update, or None when the record cannot be written now (a full disk): progress notes can wait."""
    try:
        return runs.update(run_id, change)
    except OSError:
        return None


def _final_update(run_id: str, change: Callable[[runs.RunRecord], None]) -> runs.RunRecord:
    """The final write must land: on a full disk, try again until there is room (or give up after a while and
    leave the status to engine.status, from the run's files)."""
    deadline = time.time() + FINAL_WRITE_TRIES_S
    while True:
        try:
            return runs.update(run_id, change)
        except OSError:
            if time.time() > deadline:
                raise
            time.sleep(1.0)


def _watch_console(watch: ConsoleTail, rec: runs.RunRecord,
                   proc: subprocess.Popen) -> tuple[runs.RunRecord, float | None]:
    """(record, when ms-swift's main ended if a new line says so)."""
    from engine.diagnose import match_line

    main_ended_at = None
    for line in watch.poll():
        match = OUTPUT_DIR_RE.search(line) if rec.run_dir is None else None
        if match:
            found = str((Path(rec.cwd) / match.group(1).strip()).resolve())
            rec = _try_update(rec.id, lambda r: setattr(r, "run_dir", found)) or rec
        if "End time of running main" in line:
            main_ended_at = status.main_end_time(line.encode()) or time.time()
        kind = match_line(line)
        if kind in CLEAN_UP_ON and "clean_up" not in rec.meta:
            _try_update(rec.id, lambda r: r.meta.update(clean_up={"kind": kind, "detected_at": time.time()}))
            report = clean_up_after(kind, line, rec, proc)
            rec = _try_update(rec.id, lambda r: r.meta.update(clean_up=report)) or rec
    return rec, main_ended_at


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
