"""Compare training runs: final and best loss, eval loss, best checkpoint, the arguments that differ (from each run's
`args.json`, which ms-swift writes into the run folder), and each run's loss curve — a resumed run's curve joined to
its parent's at the resume step, so that a chart draws the continuation instead of a second curve from step 0.

    cmp = compare([resolve("sft-…"), resolve("output/v1-…")])
    cmp.runs[1].joined_loss      # [(step, loss), ...]: the parent's steps up to the resume step, then its own
    cmp.differing                # {"learning_rate": [0.003, 0.001], ...}: one value per run, None when unknown
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import orjson

from engine import checkpoints
from engine.errors import SwiftdeckError
from engine.ingest import TRAIN, RunReader, loads_json, metric_kind
from engine.ops.checkpoints import CKPT_NAME, best_checkpoint
from engine.ops.runs import RunSource

# Written per run by ms-swift (its own folder, reprs of objects) or shown on their own (the resume checkpoint).
RUN_SPECIFIC_ARGS = frozenset({"output_dir", "logging_dir", "run_name", "training_args", "model_info", "model_meta",
                               "resume_from_checkpoint", "rank", "local_rank"})
SECRET_ARG = re.compile(r"(^|_)(token|secret|api_key|password)$")
MAX_PARENTS = 32  # a resume chain longer than this is cut (and a loop of links cannot hang us)

Series = list[tuple[int, float]]


class CompareError(SwiftdeckError):
    """Runs that cannot be compared (one line for the user)."""


@dataclass
class ComparedRun:
    key: str  # registry id, or the run folder
    name: str  # label and id, or the folder name
    status: str
    run_dir: str | None
    label: str = ""
    step: int | None = None  # last logged step
    max_steps: int | None = None
    final_loss: float | None = None  # the last logged train loss
    best_loss: float | None = None  # the lowest logged train loss ...
    best_loss_step: int | None = None  # ... and its step
    eval_loss: float | None = None  # the last eval loss
    best_eval_loss: float | None = None
    best_eval_step: int | None = None
    best_checkpoint: str | None = None  # path
    best_checkpoint_reason: str = ""
    last_checkpoint: str | None = None  # path
    resumed_from: str | None = None  # the --resume_from_checkpoint of this run (a checkpoint of its parent)
    resume_step: int | None = None  # where the joined curve switches from the parent to this run
    parent: str | None = None  # the key of the parent when it is one of the compared runs, else its run folder
    loss: Series = field(default_factory=list)  # this run's own train loss
    eval: Series = field(default_factory=list)  # ... and eval loss
    joined_loss: Series = field(default_factory=list)  # parent chain up to the resume step, then this run
    joined_eval: Series = field(default_factory=list)
    args: dict = field(default_factory=dict)  # args.json ({} when the run wrote none)
    notes: list[str] = field(default_factory=list)

    def to_json(self, *, series: bool = True) -> dict:
        data = {k: getattr(self, k) for k in (
            "key", "name", "label", "status", "run_dir", "step", "max_steps", "final_loss", "best_loss",
            "best_loss_step", "eval_loss", "best_eval_loss", "best_eval_step", "best_checkpoint",
            "best_checkpoint_reason", "last_checkpoint", "resumed_from", "resume_step", "parent", "notes")}
        if series:
            for k in ("loss", "eval", "joined_loss", "joined_eval"):
                data[k] = [list(p) for p in getattr(self, k)]
        return data


@dataclass
class Comparison:
    runs: list[ComparedRun]
    differing: dict[str, list]  # argument -> one value per run (None: the run has no such value / no args.json)

    def to_json(self, *, series: bool = True) -> dict:
        return {"runs": [r.to_json(series=series) for r in self.runs], "differing": self.differing}


# ---------------------------------------------------------------- reading one run


def _args(run_dir: Path | None) -> dict:
    if run_dir is None:
        return {}
    try:
        data = loads_json((run_dir / "args.json").read_bytes())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _finite(v) -> bool:
    return isinstance(v, float) and math.isfinite(v)


def _curves(console_log: Path | None, run_dir: Path | None) -> tuple[Series, Series, int | None]:
    """(train loss, eval loss, max steps) of one run, in step order."""
    if console_log is None and (run_dir is None or not run_dir.is_dir()):
        return [], [], None
    state = RunReader(console_log=console_log, run_dir=run_dir).read_all()
    loss, ev = [], []
    for m in state.metrics:
        if metric_kind(m) == TRAIN and _finite(m.values.get("loss")):
            loss.append((m.step, m.values["loss"]))
        if _finite(m.values.get("eval_loss")):
            ev.append((m.step, m.values["eval_loss"]))
    return loss, ev, state.max_steps


def _checkpoint_step(ckpt: Path) -> int | None:
    m = CKPT_NAME.fullmatch(ckpt.name)
    if m:
        return int(m.group(1))
    try:  # a link such as last-checkpoint, or a renamed folder: its trainer state knows
        state = loads_json((ckpt / "trainer_state.json").read_bytes())
        return int(state["global_step"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def join(parent: Series, own: Series, at: int) -> Series:
    """The parent's points up to step `at`, then the run's own. A run that counted its steps from 1 again
    (`--resume_only_model`) is shifted to continue at `at`."""
    if own and own[0][0] <= at:
        own = [(s + at, v) for s, v in own]
    return [p for p in parent if p[0] <= at] + own


class _Chains:
    """Joined curves of run folders, each folder read once per comparison."""

    def __init__(self):
        self._memo: dict[Path, tuple[Series, Series]] = {}

    def remember(self, run_dir: Path, loss: Series, ev: Series) -> None:
        self._memo.setdefault(run_dir.resolve(), (loss, ev))

    def resume_point(self, args: dict, cwd: Path | None) -> tuple[Path, int] | None:
        value = args.get("resume_from_checkpoint")
        if not isinstance(value, str) or not value or value == "None":
            return None
        ckpt = Path(value).expanduser()
        if not ckpt.is_absolute() and cwd is not None:
            ckpt = cwd / ckpt
        step = _checkpoint_step(ckpt)
        if step is None:
            return None
        try:
            ckpt = ckpt.resolve()
        except OSError:
            pass
        return ckpt, step

    def joined(self, run_dir: Path, own: tuple[Series, Series] | None = None, depth: int = 0) -> tuple[Series, Series]:
        run_dir = run_dir.resolve()
        if run_dir in self._memo:
            return self._memo[run_dir]
        loss, ev = own if own is not None else _curves(None, run_dir)[:2]
        self._memo[run_dir] = (loss, ev)  # a loop of resumes ends here
        point = self.resume_point(_args(run_dir), None)
        if point is not None and depth < MAX_PARENTS and point[0].parent.is_dir():
            p_loss, p_ev = self.joined(point[0].parent, None, depth + 1)
            loss, ev = join(p_loss, loss, point[1]), join(p_ev, ev, point[1])
            self._memo[run_dir] = (loss, ev)
        return loss, ev


# ---------------------------------------------------------------- comparing


def _short(value) -> str:
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()


# One setting under two names: ms-swift 3.x's args.json has `train_type`, 4.x renamed it `tuner_type`.
SAME_SETTING = {"train_type": "tuner_type"}


def _one_name(args: dict) -> dict:
    """args with each older name of a setting replaced by its current one (when the current one is not there)."""
    if not any(old in args for old in SAME_SETTING):
        return args
    out = dict(args)
    for old, new in SAME_SETTING.items():
        if old in out:
            value = out.pop(old)
            out.setdefault(new, value)
    return out


def differing_args(arg_sets: list[dict]) -> dict[str, list]:
    """The arguments whose values differ between runs (run-specific ones left out, secrets masked); a run without
    args.json (None values) does not make every argument differ. A setting renamed between ms-swift versions
    (3.x `train_type`, 4.x `tuner_type`) is one setting, under its current name."""
    arg_sets = [_one_name(a) if a else a for a in arg_sets]
    known = [a for a in arg_sets if a]
    if len(known) < 2:
        return {}
    out = {}
    for key in sorted({k for a in known for k in a} - RUN_SPECIFIC_ARGS):
        values = [a.get(key) if a else None for a in arg_sets]
        if len({_short(a.get(key)) for a in known}) > 1:
            out[key] = ["***" if SECRET_ARG.search(key) and v is not None else v for v in values]
    return out


def compare_one(src: RunSource, chains: _Chains | None = None) -> ComparedRun:
    """Everything `compare` shows about one run."""
    chains = chains or _Chains()
    rec = src.record
    run_dir = Path(src.run_dir) if src.run_dir else None
    out = ComparedRun(key=src.key, name=src.name, status=src.status, run_dir=str(run_dir) if run_dir else None,
                      label=rec.label if rec else "")
    loss, ev, max_steps = _curves(src.console_log, run_dir)
    out.loss, out.eval, out.max_steps = loss, ev, max_steps
    out.step = max((s for s, _ in loss + ev), default=None)
    if loss:
        out.final_loss = loss[-1][1]
        out.best_loss_step, out.best_loss = min(loss, key=lambda p: p[1])
    if ev:
        out.eval_loss = ev[-1][1]
        out.best_eval_step, out.best_eval_loss = min(ev, key=lambda p: p[1])
    else:
        out.notes.append("no eval loss: ms-swift evaluates only with --split_dataset_ratio or --val_dataset")
    out.args = _args(run_dir)
    if run_dir is None:
        out.notes.append("no run folder yet: ms-swift has not started training")
    elif not out.args:
        out.notes.append("no args.json in the run folder")

    if run_dir is not None and run_dir.is_dir():
        try:
            folder = checkpoints.scan_run(run_dir)
        except checkpoints.CheckpointError:
            folder = None
        if folder is not None:
            best, out.best_checkpoint_reason = best_checkpoint(folder)
            out.best_checkpoint = str(best.path) if best else None
            last = next((c for c in folder.checkpoints if c.is_last), None)
            out.last_checkpoint = str(last.path) if last else None

    cwd = Path(rec.cwd) if rec else None
    point = chains.resume_point(out.args, cwd)
    if point is None and rec is not None:  # no args.json yet: the command line says it
        from engine.command import Command

        point = chains.resume_point({"resume_from_checkpoint": Command.of_record(rec).flag("--resume_from_checkpoint")},
                                    cwd)
    out.joined_loss, out.joined_eval = list(loss), list(ev)
    if point is not None:
        ckpt, step = point
        out.resumed_from, out.resume_step, out.parent = str(ckpt), step, str(ckpt.parent)
        if ckpt.parent.is_dir():
            p_loss, p_ev = chains.joined(ckpt.parent)
            out.joined_loss, out.joined_eval = join(p_loss, loss, step), join(p_ev, ev, step)
        else:
            out.notes.append(f"resumed from {ckpt}, whose run folder is gone: its curve starts at step {step}")
    if run_dir is not None:
        chains.remember(run_dir, out.joined_loss, out.joined_eval)
    return out


def compare(sources: list[RunSource]) -> Comparison:
    """Compare runs (two or more, each once). A parent that is among them is named by its key."""
    keys = [s.key for s in sources]
    if len(set(keys)) != len(keys):
        twice = next(k for k in keys if keys.count(k) > 1)
        raise CompareError(f"run {twice} is given twice")
    chains = _Chains()
    compared = [compare_one(s, chains) for s in sources]
    by_dir = {str(Path(r.run_dir).resolve()): r.key for r in compared if r.run_dir}
    for r in compared:
        if r.parent is not None:
            r.parent = by_dir.get(str(Path(r.parent).resolve()), r.parent)
    return Comparison(compared, differing_args([r.args for r in compared]))
