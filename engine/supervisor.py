"""Start ms-swift processes detached, stop them gracefully, escalate, and confirm the whole tree is gone.

Every process is launched through `engine.runner` (its own session), which starts ms-swift in a second new
session: closing the terminal, a dropped SSH session or `kill -9` on swiftdeck never reaches the run. Signals go
only to processes recorded for the run and verified by pid + start time.
"""
from __future__ import annotations

from engine.errors import SwiftdeckError
import errno
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from engine import paths, ranks, runs, status
from engine.command import GRACEFUL
from engine.redact import redact_text
from engine.runs import RunRecord, is_same_process

# ms-swift entry points that are trainers (the process that owns the model; dataloader workers are its forks).
TRAINER_SCRIPTS = ("swift/cli/sft.py", "swift/cli/pt.py", "swift/cli/rlhf.py", "swift.cli.sft", "swift.cli.pt",
                   "swift.cli.rlhf")


class LaunchError(SwiftdeckError, RuntimeError):
    pass


def swift_executable() -> str:
    """The `swift` of the environment swiftdeck drives (engine.swift_env): --swift / SWIFTDECK_SWIFT, else the
    console script of the Python that runs swiftdeck (same venv), else the one on PATH."""
    from engine import swift_env

    try:
        return swift_env.selected().swift
    except swift_env.SwiftEnvError as exc:
        raise LaunchError(str(exc)) from None


def relevant_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: os.environ[k] for k in runs.RELEVANT_ENV if k in os.environ}
    env.update(extra or {})
    return env


def launch(kind: str, swift_args: list[str], *, cwd: str | Path, env: dict[str, str] | None = None,
           label: str = "", output_dir: str | None = None, notes: list[str] | None = None,
           wait_started_s: float = 15.0, swift: str | None = None) -> RunRecord:
    """Record and start `swift <kind> <swift_args>` detached; return once its pid is recorded. `swift`: the
    command of a given environment (default: the driven one); the record keeps it as argv[0]."""
    return launch_argv(kind, [swift or swift_executable(), kind, *swift_args], cwd=cwd, env=env, label=label,
                       output_dir=output_dir, notes=notes, wait_started_s=wait_started_s)


def launch_argv(kind: str, argv: list[str], *, cwd: str | Path, env: dict[str, str] | None = None,
                label: str = "", output_dir: str | None = None, notes: list[str] | None = None,
                wait_started_s: float = 15.0) -> RunRecord:
    """Record and start any argv detached through engine.runner (its own session, console to a file)."""
    rec = runs.create(kind, argv, str(Path(cwd).resolve()), env=relevant_env(env), label=label,
                      output_dir=output_dir, notes=notes)
    runner_log = rec.folder / "runner.log"
    try:
        with paths.open_private(runner_log, "ab") as log:
            runner = subprocess.Popen(
                [sys.executable, "-m", "engine.runner", rec.id],
                cwd=str(rec.folder), stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
                env={**os.environ, "SWIFTDECK_HOME": str(paths.data_dir()), runs.MARKER: rec.id},
            )
    except OSError as exc:
        runs.update(rec.id, lambda r: (setattr(r, "status", "failed"), r.notes.append(f"runner not started: {exc}")))
        raise paths.storage_error(exc, runner_log) if exc.errno in (errno.ENOSPC, errno.EROFS) else \
            LaunchError(f"could not start swiftdeck's runner for {kind} (run {rec.id}): {exc}") from None
    deadline = time.time() + wait_started_s
    while time.time() < deadline:
        rec = runs._read(rec.id)
        if rec.pid or not rec.active:
            return rec
        if runner.poll() is not None:
            break
        time.sleep(0.05)
    try:
        log_tail = runner_log.read_text(errors="replace")[-2000:]
    except OSError:
        log_tail = ""
    log_tail = "\n".join(redact_text(line) for line in log_tail.strip().splitlines())
    raise LaunchError(f"swiftdeck's runner did not start {kind} (run {rec.id}): {log_tail or 'no output'}")


def _verified(pid: int, create_time: float) -> psutil.Process | None:
    try:
        proc = psutil.Process(pid)
        same = abs(proc.create_time() - create_time) < 0.05 and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return None
    return proc if same else None


def _group_is_ours(rec: RunRecord) -> bool:
    """Whether the process group `rec.pgid` is still the run's, not a new group that got the same number.

    Linux never hands out a number that is still some live process group's id, so: either the process with
    pid == pgid is the run's leader (same start time), or no process has that pid and the number is still held
    by the run's surviving group (or by nobody). Any other process there means the group died and the number
    was reused: none of that group is ours."""
    if not rec.pgid or rec.pgid != rec.pid or rec.create_time is None:
        return False
    try:
        holder = psutil.Process(rec.pgid)
        return abs(holder.create_time() - rec.create_time) < 0.05
    except psutil.NoSuchProcess:
        return True
    except psutil.AccessDenied:
        return False


def _group_deadline(rec: RunRecord) -> float | None:
    """Members of the run's group started after this are not the run's (None: the run is active)."""
    if rec.active:
        return None
    if rec.status == "lost":  # it died unseen: the last time it was seen alive, not when someone noticed
        return runs.last_seen_alive(rec) + runs.HEARTBEAT_S + 5
    return (rec.ended_at if rec.ended_at is not None else runs.last_seen_alive(rec)) + 5


def live_tree(rec: RunRecord) -> list[psutil.Process]:
    """Every live process of this run: the ms-swift process, its descendants, recorded descendants that were
    re-parented (e.g. under torchrun), and members of its process group started after it (only while the group
    is provably the run's; for an ended run, only those started before it ended)."""
    found: dict[int, psutil.Process] = {}
    leader = _verified(rec.pid, rec.create_time) if rec.pid else None
    if leader:
        found[leader.pid] = leader
        try:
            for child in leader.children(recursive=True):
                found[child.pid] = child
        except psutil.NoSuchProcess:
            pass
    recorded = [*rec.descendants, *((r.pid, r.create_time) for r in ranks.recorded(rec)), *ranks.recorded_agents(rec)]
    for pid, ctime in recorded:
        proc = _verified(int(pid), ctime)
        if proc:
            found[proc.pid] = proc
    if rec.create_time and _group_is_ours(rec):
        end = _group_deadline(rec)
        group: dict[int, psutil.Process] = {}
        for proc in psutil.process_iter(["create_time"]):
            try:
                ctime = proc.info["create_time"]
                if (proc.pid not in found and os.getpgid(proc.pid) == rec.pgid and ctime >= rec.create_time - 0.05
                        and (end is None or ctime <= end) and proc.status() != psutil.STATUS_ZOMBIE):
                    group[proc.pid] = proc
            except (psutil.NoSuchProcess, ProcessLookupError, PermissionError):
                continue
        if _group_is_ours(rec):  # still the run's group after the scan
            found.update(group)
    tree = []
    for proc in found.values():
        try:
            proc.create_time()  # psutil keeps it: the identity that _signal checks before each signal
        except psutil.Error:
            continue
        if proc.pid != os.getpid():
            tree.append(proc)
    return tree


def trainer_processes(rec: RunRecord) -> list[psutil.Process]:
    """The processes running the training loop (one per rank): every recorded rank of a torchrun run that is still
    alive, and any process of the tree running an ms-swift trainer script that is not the `swift` wrapper, not
    torchrun and not a dataloader worker (a fork of a trainer, same command line)."""
    found = {proc.pid: proc for _, proc in ranks.live(rec)}
    for proc in live_tree(rec):
        try:
            cmd = proc.cmdline()
            if proc.pid in found or ranks.is_agent(cmd) or not any(s in " ".join(cmd) for s in TRAINER_SCRIPTS):
                continue
            parent = proc.parent()
            if parent and parent.cmdline() == cmd:
                continue  # a dataloader worker
            found[proc.pid] = proc
        except psutil.Error:
            continue
    return list(found.values())


def _signal(procs: list[psutil.Process], sig: int) -> list[int]:
    """Signal each process only if it is still the one found (pid + start time, checked on a pidfd)."""
    return [p.pid for p in procs if runs.signal_verified(p.pid, p.create_time(), sig)]


# After ms-swift's trainer printed the end of its main, its checkpoint and final record are written and only the
# interpreter's teardown is left, where dataloader workers can leave one at a time (each joined with a 5 s
# timeout: 22 s seen on an H200). The tree is ended this long after the end of main: soon for a stop, late for a
# run that finished on its own (a safety net for a hung teardown; atexit hooks such as trackers' uploads run).
AFTER_MAIN_GRACE_S = {"stop": 2.5, "finished": 30.0}


def end_after_main(rec: RunRecord, main_ended_at: float, report: StopReport | None = None) -> list[int] | None:
    """End what is left of a training run's tree once its main has returned and the grace is up. Returns the
    pids still alive after the kill (None: the grace is not up, or not a training run)."""
    grace = AFTER_MAIN_GRACE_S["stop" if rec.stop_requested else "finished"]
    if rec.kind not in status.TRAINING or time.time() - main_ended_at < grace:
        return None
    if report is not None:
        report.steps.append(f"ms-swift's main ended {time.time() - main_ended_at:.1f}s ago; ending its teardown")
    return kill_tree(rec, report)


def _wait_gone(rec: RunRecord, timeout: float, report: StopReport | None = None) -> list[psutil.Process]:
    """Wait until no process of the run is left (or `timeout`), ending a training run's teardown once its main
    has returned (end_after_main)."""
    deadline = time.time() + timeout
    main_ended_at = None
    while True:
        left = live_tree(rec)
        if not left or time.time() >= deadline:
            return left
        main_ended_at = main_ended_at or status.main_ended(rec.console_log)
        if main_ended_at is not None and end_after_main(rec, main_ended_at, report) is not None:
            continue
        time.sleep(0.2)


@dataclass
class StopReport:
    run_id: str
    steps: list[str] = field(default_factory=list)
    seconds: float = 0.0
    left: list[int] = field(default_factory=list)  # pids still alive at the end (should be empty)
    gpu_checked: bool = False  # NVML was there to confirm
    gpu_mem_left: int = 0  # bytes NVML still lists for the run's processes after the stop (should be 0)

    @property
    def clean(self) -> bool:
        return not self.left and not self.gpu_mem_left


def kill_tree(rec: RunRecord, report: StopReport | None = None) -> list[int]:
    """SIGKILL every verified process of the run, repeatedly until none is left (or 10 s)."""
    deadline = time.time() + 10
    while True:
        procs = live_tree(rec)
        if not procs or time.time() >= deadline:
            return [p.pid for p in procs]
        sent = _signal(procs, signal.SIGKILL)
        if report is not None and sent:
            report.steps.append(f"SIGKILL → {len(sent)} process(es) {sent}")
        time.sleep(0.1)


# torchrun's agent, on SIGTERM, sends SIGTERM to its workers and SIGKILL after 30 s (its own default), then exits.
AGENT_GRACE_S = 35.0
GPU_RELEASE_S = 15.0  # the driver frees a process's memory shortly after it is gone


def gpu_held(pids: set[int], sampler=None) -> tuple[bool, dict[int, int]]:
    """(NVML available, {pid: bytes} of these pids that NVML lists with GPU memory, all GPUs summed)."""
    from engine import gpu

    snapshot = (sampler or gpu.default_sampler()).sample()
    ours, _ = gpu.attribute(snapshot, set(pids))
    return snapshot.available, {p.pid: p.used_mem or 0 for p in ours}


def wait_gpu_released(held: dict[int, int], timeout_s: float = GPU_RELEASE_S) -> int:
    """Wait until NVML lists none of the pids that held GPU memory (`held`, from gpu_held while they lived) or
    `timeout_s`; the bytes it still lists for them. A pid is matched as NVML reports it, so memory the driver still
    keeps for a process that has exited counts (gpu.attribute would call it not visible)."""
    from engine import gpu

    if not held:
        return 0
    with gpu.GpuSampler() as sampler:
        deadline = time.time() + timeout_s
        while True:
            snapshot = sampler.sample()
            left = sum(p.used_mem or 0 for g in snapshot.gpus for p in g.processes if p.pid in held)
            if not left or not snapshot.available or time.time() >= deadline:
                return left
            time.sleep(0.2)


def stop(rec: RunRecord, *, force: bool = False, timeout_s: float = 120.0) -> StopReport:
    """Stop a run and confirm no process of its tree is left, and (with NVML) no GPU memory held by it.

    Graceful (default): for training with swiftdeck's `--callbacks graceful_exit`, SIGUSR1 to the trainer of every
    rank makes ms-swift save a checkpoint at the end of the current step and exit normally (the ranks agree on it
    with an all-reduce, so a rank that missed the signal stops too); without that callback, SIGINT to the
    trainer(s) interrupts it (ms-swift 3.x has no such callback: nothing more is saved). Once ms-swift's main has returned, what is left of the tree is ended
    after AFTER_MAIN_GRACE_S["stop"]. Servers get SIGINT on their process group. After `timeout_s`: a torchrun run
    gets SIGTERM on its agent (which stops its workers: SIGTERM, SIGKILL after 30 s), any other SIGINT on the group;
    then SIGKILL to the whole tree, every recorded rank included (each verified by pid + start time). `force` kills
    the tree at once. The final status comes from engine.status (also when swiftdeck's runner is gone): a stopped
    run is `stopped`, never `lost` or `failed`.
    """
    started = time.time()
    report = StopReport(rec.id)
    mode = "force" if force else "graceful"

    def mark(r: RunRecord) -> None:
        r.stop_requested = mode if r.stop_requested != "force" else r.stop_requested
        if r.active:
            r.status = "stopping"

    rec = runs.update(rec.id, mark)
    report.gpu_checked, held = gpu_held({p.pid for p in live_tree(rec)})
    if not force:
        report.steps.append(ask_to_stop(rec))
        left = _wait_gone(rec, timeout_s, report)
        agents = ranks.live_agents(rec) if left else []
        if agents:
            report.steps.append(f"still running after {timeout_s:.0f}s: SIGTERM → torchrun agent "
                                f"{[p.pid for p in agents]} (it stops its ranks)")
            _signal(agents, signal.SIGTERM)
            left = _wait_gone(rec, AGENT_GRACE_S)
        if left:
            report.steps.append(f"still running after {timeout_s:.0f}s: SIGINT → group")
            _signal(left, signal.SIGINT)
            _wait_gone(rec, 5)
    report.left = kill_tree(rec, report)
    report.seconds = time.time() - started
    # The runner records the exit code as soon as it reaps the process; give it a moment. Without a runner (killed,
    # host rebooted) runs.load settles the status from the record and the files.
    deadline = time.time() + 5
    while runs.load(rec.id).active and is_same_process(rec.runner_pid, rec.runner_create_time) \
            and time.time() < deadline:
        time.sleep(0.05)
    report.gpu_mem_left = wait_gpu_released(held)
    if report.gpu_checked:
        report.steps.append(f"GPU memory held by the run's processes: {sum(held.values()) / 2**20:.0f} MiB "
                            f"({len(held)} process(es)) → {report.gpu_mem_left / 2**20:.0f} MiB (NVML)")
    return report


def ask_to_stop(rec: RunRecord) -> str:
    """The first step of a graceful stop: SIGUSR1 (with the graceful_exit callback, else SIGINT) to the trainer of
    every rank of a training run, SIGINT to the processes of anything else. Returns what was done, in words."""
    trainers = trainer_processes(rec) if rec.kind in ("sft", "pt", "rlhf") else []
    if trainers:
        sig = signal.SIGUSR1 if GRACEFUL in rec.argv else signal.SIGINT
        _signal(trainers, sig)
        return f"{signal.Signals(sig).name} → trainer {_who(rec, trainers)}"
    _signal(live_tree(rec), signal.SIGINT)
    return "SIGINT → process group"


def _who(rec: RunRecord, procs: list[psutil.Process]) -> str:
    """'[123, 124]', or for recorded ranks 'rank 0 pid 123, rank 1 pid 124'."""
    by_pid = {r.pid: r for r in ranks.recorded(rec)}
    if not any(p.pid in by_pid for p in procs):
        return str([p.pid for p in procs])
    return ", ".join(f"rank {by_pid[p.pid].rank} pid {p.pid}" if p.pid in by_pid else f"pid {p.pid}"
                     for p in sorted(procs, key=lambda p: (by_pid[p.pid].rank if p.pid in by_pid else 1 << 30)))
