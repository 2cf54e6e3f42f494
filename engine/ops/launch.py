"""Launch, resume and relaunch: one path for the CLI and the dashboard.

    cmd = Command.parse(...)            # or a form's / a record's command, changed by plan_resume / plan_relaunch
    check = check_launch(cmd)           # arguments against the driven ms-swift + the dataset check
    cmd, changes = plan_devices(cmd, gpus="0,1", nproc=2, deepspeed="zero2")   # GPUs, processes, nodes
    check = check_launch(cmd)           # arguments, the dataset check and the preflight (engine.preflight)
    check = check.confirmed()           # only if the user agreed to share a GPU that another process fills
    rec = start(check)                  # refuses what the check blocks; a training run gets the graceful stop

The run's command value (kind, args, env, cwd, label, swift) is what is recorded, so a resume or relaunch of a run
keeps its environment (CUDA_VISIBLE_DEVICES, NPROC_PER_NODE, ...), working folder and ms-swift environment (the
`swift` it ran: a run started on a 3.x venv resumes there, checked against that ms-swift).
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import re
import socket

from engine import kinds, preflight, ranks, relaunch, supervisor
from engine.command import Command
from engine.errors import SwiftdeckError
from engine.ops.datasets import check_datasets
from engine.runs import RunRecord


# ms-swift's ShutdownManager (behind the graceful_exit callback) also stops every run while this file exists.
STOP_FILE = Path("/tmp/stop")
NO_GRACEFUL_STOP = ("this ms-swift has no graceful stop (no graceful_exit callback): a stop interrupts the trainer "
                    "and saves no checkpoint at the next step; the last saved checkpoint stays")


class LaunchRefused(SwiftdeckError):
    """The check blocks this launch; the message says what blocks it."""


@dataclass
class LaunchCheck:
    command: Command  # as checked (with the rewrites and, when asked, the fixes applied)
    args: object  # engine.swift_args.ArgCheck
    datasets_ok: bool = True
    datasets: list[tuple[str, str]] = field(default_factory=list)  # (level, line), see ops.datasets
    changes: list[str] = field(default_factory=list)  # for a resume/relaunch: what differs from the earlier run
    preflight: preflight.Preflight | None = None  # training only: GPUs, disk, memory estimate
    gpus_confirmed: bool = False  # the user agreed to launch onto GPUs that other processes fill

    @property
    def ok(self) -> bool:
        return self.args.ok and self.datasets_ok and not self.gpu_blocker

    @property
    def gpu_blocker(self) -> str | None:
        """Why the preflight refuses this launch (a GPU other processes fill: only until confirmed)."""
        pre = self.preflight
        if pre is None:
            return None
        if pre.problems:
            return pre.problems[0]
        if pre.busy and not self.gpus_confirmed:
            return pre.busy[0] + " (confirm to launch anyway)"
        return None

    def confirmed(self) -> "LaunchCheck":
        """The same check with the busy GPUs accepted by the user."""
        return replace(self, gpus_confirmed=True)

    @property
    def fixable(self) -> bool:
        return bool(self.args.problems) and all(p.fix for p in self.args.problems)

    @property
    def blocker(self) -> str | None:
        """Why a launch is refused, in one line; None when it is not."""
        if not self.datasets_ok:
            return next((line.strip() for level, line in self.datasets if level == "error"),
                        "the dataset check found errors")
        if self.gpu_blocker:
            return self.gpu_blocker
        if self.args.problems:
            n = len(self.args.problems)
            first = self.args.problems[0].message
            return (f"{n} problem(s) with the swift {self.command.kind} arguments: {first}"
                    + (" (apply the proposed fixes)" if self.fixable else ""))
        return None

    def with_fixes(self) -> "LaunchCheck":
        fixed = self.args.with_fixes()
        return replace(self, args=fixed, command=self.command.with_args(fixed.argv))


def check_launch(cmd: Command, *, fix: bool = False, datasets: bool = True, cuda: bool | None = None,
                 gpus: bool = True) -> LaunchCheck:
    """Check `cmd` against the ms-swift of its environment (its `swift`, else the one swiftdeck drives): renames,
    unknown flags, model_type/template, bf16 on CPU, relative paths; for `swift rlhf` the --rlhf_type, its packages
    and reward functions; and its local dataset files (for `swift rlhf`, with the columns the --rlhf_type needs).
    `fix` applies every proposed fix. The checked command names the `swift` it was checked against. For training,
    `gpus` adds the preflight (engine.preflight: the selected GPUs and who else is on them, free disk, a memory
    estimate, the process/GPU layout)."""
    from engine import swift_args, swift_env

    try:
        env = swift_env.of_swift(cmd.swift)
    except swift_env.SwiftEnvError as exc:
        env = None
        where = "the ms-swift environment of this command: " if cmd.swift else ""
        args = swift_args.ArgCheck(list(cmd.args), [], [swift_args.ArgProblem(None, f"{where}{exc}")], cmd.kind,
                                   Path(cmd.cwd), cuda)
    if env is not None:
        args = swift_args.check_args(list(cmd.args), command=cmd.kind, cwd=Path(cmd.cwd), cuda=cuda, env=env)
        cmd = cmd.with_swift(env.swift)
    check = LaunchCheck(cmd.with_args(args.argv), args)
    if fix and check.fixable:
        check = check.with_fixes()
    if datasets:
        values = [*(check.command.flags("--dataset") or []), *(check.command.flags("--val_dataset") or [])]
        rlhf_type = (check.command.flag("--rlhf_type") or kinds.DEFAULT_RLHF_TYPE) if cmd.kind == "rlhf" else None
        check.datasets_ok, check.datasets = check_datasets(values, Path(cmd.cwd), rlhf_type=rlhf_type)
    if gpus and check.command.is_training:
        check.preflight = run_preflight(check.command)
        if check.args.graceful_exit and STOP_FILE.exists():
            check.preflight.problems.append(
                f"{STOP_FILE} exists: ms-swift's graceful-exit callback, which swiftdeck's stop uses, reads it as "
                f"\"stop now\" and would end this run after its first step. Remove {STOP_FILE} and launch again")
    return check


def run_preflight(cmd: Command, *, snapshot=None) -> preflight.Preflight:
    """engine.preflight.check, plus whether torchrun's port is free on this host (node 0 listens on it)."""
    pre = preflight.check(cmd, snapshot=snapshot)
    layout = ranks.distributed({**supervisor.relevant_env(), **cmd.env})
    if layout and layout["node_rank"] == 0 and not _port_free(layout["master_port"]):
        pre.problems.append(f"MASTER_PORT {layout['master_port']} is in use on this host (another distributed run?): "
                            f"give another with --master-port")
    return pre


def _port_free(port: int) -> bool:
    """Nothing listens on `port` here (SO_REUSEADDR, like torchrun's store: connections of an earlier run that are
    still in TIME_WAIT do not count; on an H200 a resume right after a stop was refused without it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("", port))
            return True
        except OSError:
            return False


_GPU_ID = re.compile(r"\d+|(?:GPU|MIG)-[0-9A-Za-z/-]+")


def plan_devices(cmd: Command, *, gpus: str | None = None, nproc: int | None = None, deepspeed: str | None = None,
                 nnodes: int | None = None, node_rank: int | None = None, master_addr: str | None = None,
                 master_port: int | None = None) -> tuple[Command, list[str]]:
    """`cmd` on these GPUs (CUDA_VISIBLE_DEVICES), with `nproc` processes per node (NPROC_PER_NODE: ms-swift then
    runs torchrun), a DeepSpeed preset (--deepspeed) and, across hosts, NNODES/NODE_RANK/MASTER_ADDR/MASTER_PORT.
    All of it is the command's own environment, so a stop, resume or relaunch keeps it. Bad values: LaunchRefused."""
    env, changes = dict(cmd.env), []

    def put(name: str, value) -> None:
        if value is None:
            return
        value = str(value)
        if env.get(name) != value:
            changes.append(f"{name}={value}" + (f" (was {env[name]})" if name in env else ""))
        env[name] = value

    if gpus is not None:
        ids = [g.strip() for g in gpus.split(",")]
        if not ids or not all(_GPU_ID.fullmatch(g) for g in ids) or len(set(ids)) != len(ids):
            raise LaunchRefused(f"--gpus {gpus!r}: give GPU indices (or UUIDs) separated by commas, each once, "
                                "e.g. --gpus 0,1")
        put("CUDA_VISIBLE_DEVICES", ",".join(ids))
    for name, value, low in (("--nproc", nproc, 1), ("--nnodes", nnodes, 1), ("--node-rank", node_rank, 0),
                             ("--master-port", master_port, 1)):
        if value is not None and value < low:
            raise LaunchRefused(f"{name} {value}: must be at least {low}")
    if master_port is not None and master_port > 65535:
        raise LaunchRefused(f"--master-port {master_port}: not a port")
    if nproc is not None and gpus is not None and nproc > len(gpus.split(",")):
        raise LaunchRefused(f"--nproc {nproc} with --gpus {gpus}: each process needs its own GPU")
    put("NPROC_PER_NODE", nproc)
    if nnodes is not None and nnodes > 1:
        if not (master_addr or env.get("MASTER_ADDR")):
            raise LaunchRefused(f"--nnodes {nnodes}: give --master-addr, the address of the node with --node-rank 0 "
                                "(each node runs its own swiftdeck train with the same values)")
        if node_rank is None and "NODE_RANK" not in env:
            raise LaunchRefused(f"--nnodes {nnodes}: give --node-rank (0 on the master node, 1..{nnodes - 1} on the "
                                "others)")
    if node_rank is not None and nnodes is not None and node_rank >= nnodes:
        raise LaunchRefused(f"--node-rank {node_rank}: must be below --nnodes {nnodes}")
    put("NNODES", nnodes)
    put("NODE_RANK", node_rank)
    put("MASTER_ADDR", master_addr)
    put("MASTER_PORT", master_port)
    if (nnodes or 1) > 1 and "NPROC_PER_NODE" not in env:
        put("NPROC_PER_NODE", 1)
    out = replace(cmd, env=env)
    if deepspeed is not None:
        if deepspeed not in preflight.DEEPSPEED_PRESETS and not deepspeed.endswith(".json"):
            raise LaunchRefused(f"--deepspeed {deepspeed!r}: one of {', '.join(preflight.DEEPSPEED_PRESETS)} or a "
                                "DeepSpeed json file")
        before = cmd.flag("--deepspeed")
        out = out.with_flag("--deepspeed", [deepspeed])
        if before != deepspeed:
            changes.append(f"--deepspeed {deepspeed}" + (f" (was {before})" if before else ""))
    return out, changes


def start(check: LaunchCheck, *, notes: list[str] | None = None) -> RunRecord:
    """Start a checked command detached (engine.supervisor) with the `swift` it was checked against; refuses one
    whose check blocks it. A training run gets ms-swift's graceful stop where that ms-swift has one (4.x)."""
    if not check.ok:
        raise LaunchRefused(f"not launched: {check.blocker}")
    cmd, more = check.command, []
    if cmd.is_training and check.args.graceful_exit:
        cmd = cmd.with_graceful_exit()
    elif cmd.is_training:
        more.append(NO_GRACEFUL_STOP)
    env = check.args.env
    if env is not None and not env.own:
        more.append(f"runs in another environment: {env.describe()}")
    return supervisor.launch(cmd.kind, list(cmd.args), cwd=cmd.cwd, env=cmd.env, label=cmd.label,
                             output_dir=cmd.output_dir if cmd.is_training else None,
                             notes=[*check.args.notes, *check.changes, *more, *(notes or [])],
                             swift=cmd.swift or None)


# ---------------------------------------------------------------- resume / relaunch


def _trainable(rec: RunRecord | None, what: str) -> Command:
    if rec is None:
        raise LaunchRefused(f"this run folder was not started by swiftdeck, so its command line is unknown: run "
                            f"`swiftdeck train -- <its arguments> {what}`")
    cmd = Command.of_record(rec)
    if not cmd.is_training:
        raise LaunchRefused(f"run {rec.id} is a {rec.kind} job, not a training run")
    if rec.active:
        raise LaunchRefused(f"run {rec.id} is still {rec.status}: stop it first")
    return cmd


class AtMaxSteps(LaunchRefused):
    """Resuming this checkpoint would train nothing: it is at the run's last step (ms-swift would start a run that
    ends at once with an empty vN folder). `flags`: the `--flag value` pair that raises the end, to propose."""

    def __init__(self, message: str, flags: str) -> None:
        super().__init__(message)
        self.flags = flags


def _trainer_state(checkpoint) -> dict:
    import json

    try:
        state = json.loads((Path(checkpoint.path) / "trainer_state.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return state if isinstance(state, dict) else {}


def _number(text: str | None) -> float | None:
    try:
        return float(text) if text is not None else None
    except ValueError:
        return None


def steps_after(cmd: Command, checkpoint) -> tuple[str | None, str]:
    """(why resuming `checkpoint` with `cmd` trains nothing, or None; the flag pair that would raise the end).
    ms-swift (the HF trainer) continues from the checkpoint's global_step up to --max_steps when the command sets
    it, else to --num_train_epochs (--max_epochs overrides it) epochs of the same length; the default is 3 epochs."""
    state = _trainer_state(checkpoint)
    step, last = state.get("global_step"), state.get("max_steps")
    if not isinstance(step, int) or not isinstance(last, int) or last <= 0 or step < last:
        return None, ""
    name = checkpoint.name
    max_steps = _number(cmd.flag("--max_steps"))
    if max_steps is not None and max_steps > 0:
        if max_steps > step:
            return None, ""
        return (f"{name} is at step {step}, the run's last (--max_steps {cmd.flag('--max_steps')}): a resume would "
                f"train nothing. Raise --max_steps to train more", f"--max_steps {step * 2}")
    flag = "--max_epochs" if cmd.flag("--max_epochs") is not None else "--num_train_epochs"
    epochs = _number(cmd.flag(flag))
    epochs = 3.0 if epochs is None else epochs  # ms-swift's default
    done = state.get("epoch") if isinstance(state.get("epoch"), (int, float)) else state.get("num_train_epochs")
    done = float(done) if isinstance(done, (int, float)) else epochs
    if epochs > done + 1e-6:
        return None, ""
    raised = max(1, round(done)) * 2
    return (f"{name} is at step {step}, the run's last ({flag} {cmd.flag(flag) or '3 (the default)'}): a resume "
            f"would train nothing. Raise {flag} to train more", f"{flag} {raised}")


def plan_resume(rec: RunRecord | None, checkpoint, flags: str | None = None) -> tuple[Command, list[str]]:
    """`rec`'s command resumed from `checkpoint` (engine.checkpoints.CheckpointInfo): same env, cwd, arguments, with
    the `--flag value` pairs of `flags` applied. AtMaxSteps when that would train nothing (the checkpoint is at the
    run's last step and the flags do not raise it): its `flags` proposes the raise."""
    cmd = _trainable(rec, f"--resume_from_checkpoint {checkpoint.path}")
    if not checkpoint.resumable:
        why = next((n for n in checkpoint.notes if n.startswith("not resumable")), "not resumable")
        raise LaunchRefused(f"{checkpoint.name}: {why}")
    before = cmd.flag("--resume_from_checkpoint")
    changes = []
    for flag, value in relaunch.remedy_flags(flags or ""):
        old = cmd.flag(flag)
        cmd = cmd.with_flag(flag, [value])
        changes.append(f"{flag} {old} → {value}" if old is not None else f"{flag} {value} (new)")
    why, raise_flags = steps_after(cmd, checkpoint)
    if why:
        raise AtMaxSteps(f"{why}, e.g. {raise_flags}", raise_flags)
    cmd = cmd.with_flag("--resume_from_checkpoint", [str(checkpoint.path)]).with_label(f"resume {checkpoint.name}")
    changes += [f"--resume_from_checkpoint: {before or '(not set)'} → {checkpoint.path}",
                f"ms-swift continues from step {checkpoint.step} (model, optimizer, scheduler, RNG) and writes a new "
                f"vN-… folder under {cmd.flag('--output_dir') or 'output'}"]
    changes += [f"keeps the run's environment: {k}={v}" for k, v in sorted(cmd.env.items())]
    return cmd, changes


def plan_relaunch(rec: RunRecord | None, remedy: str | None = None) -> tuple[Command, list[str]]:
    """A failed run's command with a remedy's `--flag value` pairs applied, resumed from its newest resumable
    checkpoint when it has one (same env and cwd)."""
    cmd = _trainable(rec, "<the changed flags>")
    changes = []
    for flag, value in relaunch.remedy_flags(remedy or ""):
        old = cmd.flag(flag)
        cmd = cmd.with_flag(flag, [value])
        changes.append(f"{flag} {old} → {value}" if old is not None else f"{flag} {value} (new)")
    ckpt = relaunch.newest_resumable(rec.run_dir)
    previous = cmd.flag("--resume_from_checkpoint")
    if ckpt:
        cmd = cmd.with_flag("--resume_from_checkpoint", [str(ckpt)])
        changes.append(f"--resume_from_checkpoint {ckpt} (continues from step {ckpt.name.split('-')[-1]})")
    elif previous:
        changes.append(f"resumes from {previous} again: the failed run saved no newer checkpoint")
    else:
        changes.append("starts from scratch: the failed run left no resumable checkpoint")
    return cmd.with_label(f"relaunch of {rec.label or rec.id}"), changes
