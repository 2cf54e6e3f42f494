"""Deleting a checkpoint and stripping its optimizer state, one at a time or in bulk (prune, strip), with the guards
both faces need: nothing outside a `checkpoint-N` folder is touched, and a checkpoint that a live process may still
need is refused — the one ms-swift may be writing (the highest-numbered one of a running run, and anything newer
than its `last-checkpoint` link), the one a running training would resume from (its last complete checkpoint), the
one a running training was started from (`--resume_from_checkpoint`), and one that a chat worker or a deploy has
loaded.

    plan = plan_prune(run_dir, keep_last=2)   # keep the best and the last 2; what is freed, and why each is kept
    done = apply(plan)                        # each deletion re-checks the guard; refusals are reported, not raised
    plan = plan_strip(run_dir, keep_last=1)   # optimizer states of the checkpoints that won't be resumed
"""
from __future__ import annotations

import math
import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from engine import runs
from engine.command import TRAINING_KINDS
from engine.errors import SwiftdeckError

CKPT_NAME = re.compile(r"checkpoint-(\d+)(-merged)?")
OPTIMIZER_FILES = re.compile(r"optimizer\.(pt|bin)|scheduler\.pt|rng_state(_\d+)?\.pth|scaler\.pt")


class CheckpointRefused(SwiftdeckError):
    """Why a checkpoint is not deleted or stripped (nothing was changed)."""


def tree_size(path: Path) -> int:
    """Bytes of the files under `path` (links not followed, unreadable entries skipped)."""
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except OSError:
                pass
    return total


def _checkpoint_dir(path: Path) -> Path:
    path = Path(path)
    if not CKPT_NAME.fullmatch(path.name) or path.is_symlink() or not path.is_dir():
        raise CheckpointRefused(f"not a checkpoint folder: {path}")
    return path.resolve()


def _step(path: Path) -> int:
    return int(CKPT_NAME.fullmatch(path.name).group(1))


def _link_step(run_dir: Path) -> int | None:
    """The step of ms-swift's `last-checkpoint` link (its last complete save), or None."""
    link = run_dir / "last-checkpoint"
    if not link.is_symlink():
        return None
    target = Path(os.readlink(link)).name
    return _step(Path(target)) if CKPT_NAME.fullmatch(target) else None


def _writer_reason(path: Path, rec: runs.RunRecord) -> str | None:
    """Why the running training that writes `path`'s run folder may still need it."""
    run_dir = path.parent
    trained = [p for p in run_dir.iterdir() if CKPT_NAME.fullmatch(p.name) and not p.name.endswith("-merged")]
    steps = [_step(p) for p in trained]
    last = _link_step(run_dir)
    if last is None:  # no link (older ms-swift): the newest one with its trainer state written
        complete = [_step(p) for p in trained if (p / "trainer_state.json").is_file()]
        last = max(complete, default=None)
    step = _step(path)
    if steps and step == max(steps):
        return f"{path.name} is the newest checkpoint of run {rec.id}, which is still {rec.status}"
    if last is not None and step > last:
        return f"{path.name} is newer than the last complete checkpoint of run {rec.id}: ms-swift is still writing it"
    if step == last:
        return f"{path.name} is the checkpoint run {rec.id} would resume from (its last complete one) while it is " \
               f"still {rec.status}"
    return None


def _names(path: Path, rec: runs.RunRecord) -> bool:
    """Whether the record's command line or loaded adapters name `path` (relative paths from its cwd, `name=path`
    adapters and links such as `last-checkpoint` included)."""
    values = [str(a) for a in rec.meta.get("adapters", [])] + [str(a) for a in rec.meta.get("loaded", [])]
    for token in rec.argv:
        values += [token, token.partition("=")[2]]
    for value in values:
        if not value or ("/" not in value and "checkpoint" not in value):
            continue
        try:
            if (Path(rec.cwd) / Path(value).expanduser()).resolve() == path:
                return True
        except (OSError, RuntimeError, ValueError):
            continue
    return False


def live_records() -> list[runs.RunRecord]:
    """The registry's active records: read once for a bulk plan, then passed to `in_use_by`."""
    return [r for r in runs.all_runs() if r.active]


def in_use_by(path: Path, records: list[runs.RunRecord] | None = None) -> str | None:
    """Why a live process may still need this checkpoint, or None. `records`: `live_records()` already read."""
    path = Path(path).resolve()
    for rec in live_records() if records is None else records:
        if not rec.active:
            continue
        training = rec.kind in TRAINING_KINDS
        if training and rec.run_dir and Path(rec.run_dir).resolve() == path.parent:
            why = _writer_reason(path, rec)
            if why:
                return why
        if _names(path, rec):
            if training:
                return f"{path.name} is the checkpoint run {rec.id} was started from ({rec.status}): stop it first"
            return f"{path.name} is loaded by {rec.kind} job {rec.id} ({rec.status}): stop it first"
    return None


def optimizer_files(path: Path) -> list[Path]:
    """What `strip_optimizer` removes: optimizer/scheduler/scaler/RNG state and DeepSpeed `global_step*/`."""
    path = _checkpoint_dir(path)
    return sorted(p for p in path.iterdir()
                  if OPTIMIZER_FILES.fullmatch(p.name) or (p.is_dir() and p.name.startswith("global_step")))


def strip_optimizer(path: Path) -> int:
    """Remove the optimizer state of a checkpoint (keeps the adapter/model and trainer_state.json); returns the
    bytes freed. The checkpoint can still be chatted with and merged, but no longer resumed."""
    files = optimizer_files(path)
    why = in_use_by(Path(path))
    if why:
        raise CheckpointRefused(f"not stripped: {why}")
    freed = 0
    for p in files:
        size = tree_size(p) if p.is_dir() else p.stat().st_size
        shutil.rmtree(p) if p.is_dir() else p.unlink()
        freed += size
    return freed


def delete_checkpoint(path: Path) -> int:
    """Delete a checkpoint folder; returns the bytes freed."""
    path = _checkpoint_dir(path)
    why = in_use_by(path)
    if why:
        raise CheckpointRefused(f"not deleted: {why}")
    freed = tree_size(path)
    link = path.parent / "last-checkpoint"
    shutil.rmtree(path)
    if link.is_symlink() and not link.exists():  # ms-swift's link now points at nothing
        link.unlink()
    return freed


# ---------------------------------------------------------------- bulk: prune and strip a run's checkpoints


def best_checkpoint(folder) -> tuple[object | None, str]:
    """(the best checkpoint of an engine.checkpoints.RunFolder, how it was chosen): ms-swift's
    best_model_checkpoint (by --metric_for_best_model) when it recorded one, else the lowest eval loss, else the
    lowest train loss logged at the checkpoint's step. (None, why) when no loss was logged."""
    trained = [c for c in folder.checkpoints if c.kind != "merged" and c.step is not None]
    marked = [c for c in trained if c.is_best]
    if marked:
        return marked[0], "ms-swift's best_model_checkpoint"

    def lowest(attr: str):
        scored = [c for c in trained if getattr(c, attr) is not None and math.isfinite(getattr(c, attr))]
        return min(scored, key=lambda c: getattr(c, attr)) if scored else None

    if (c := lowest("eval_loss")) is not None:
        return c, f"lowest eval loss, {c.eval_loss:.4g}"
    if (c := lowest("loss")) is not None:
        return c, f"lowest train loss logged at its step, {c.loss:.4g} at step {c.loss_step}"
    return None, "no loss logged"


@dataclass
class PlanItem:
    """One checkpoint of a bulk plan: what happens to it and why."""

    path: Path
    step: int
    size_bytes: int  # the whole folder
    action: str  # "delete" | "strip" | "keep"
    reasons: list[str] = field(default_factory=list)  # why it is kept (empty for a deletion or strip)
    freed_bytes: int = 0  # what the action frees: the folder (delete) or its optimizer state (strip)

    @property
    def name(self) -> str:
        return self.path.name

    def to_json(self) -> dict:
        return {"name": self.name, "path": str(self.path), "step": self.step, "size_bytes": self.size_bytes,
                "action": self.action, "reasons": list(self.reasons), "freed_bytes": self.freed_bytes}


@dataclass
class BulkPlan:
    """What `apply` will do to one run folder's checkpoints (nothing has changed yet)."""

    run_dir: Path
    action: str  # "delete" (prune) | "strip"
    items: list[PlanItem]
    best: str | None = None  # the best checkpoint's name
    best_reason: str = ""

    @property
    def chosen(self) -> list[PlanItem]:
        return [i for i in self.items if i.action == self.action]

    @property
    def kept(self) -> list[PlanItem]:
        return [i for i in self.items if i.action == "keep"]

    @property
    def freed_bytes(self) -> int:
        return sum(i.freed_bytes for i in self.chosen)

    def to_json(self) -> dict:
        return {"run_dir": str(self.run_dir), "action": self.action, "best": self.best,
                "best_reason": self.best_reason, "freed_bytes": self.freed_bytes,
                "items": [i.to_json() for i in self.items]}


@dataclass
class Applied:
    """What `apply` did: each checkpoint done with the bytes it freed, each refused with why."""

    done: list[tuple[Path, int]] = field(default_factory=list)
    refused: list[tuple[Path, str]] = field(default_factory=list)

    @property
    def freed_bytes(self) -> int:
        return sum(n for _, n in self.done)

    def to_json(self) -> dict:
        return {"done": [{"path": str(p), "freed_bytes": n} for p, n in self.done],
                "refused": [{"path": str(p), "reason": why} for p, why in self.refused],
                "freed_bytes": self.freed_bytes}


def _run_folder(run_dir: Path):
    from engine import checkpoints

    run_dir = Path(run_dir).expanduser()
    if not run_dir.is_dir():
        raise CheckpointRefused(f"no such run folder: {run_dir}")
    if not checkpoints.is_run_folder(run_dir):
        raise CheckpointRefused(f"{run_dir} is not an ms-swift run folder (vN-YYYYMMDD-HHMMSS with checkpoint-N/)")
    folder = checkpoints.scan_run(run_dir.resolve())
    return folder, [c for c in folder.checkpoints if c.kind != "merged" and c.step is not None]


def _last_words(keep_last: int) -> str:
    return "the last one" if keep_last == 1 else f"one of the last {keep_last}"


def _last(trained: list, keep_last: int) -> set[str]:
    if keep_last < 0:
        raise CheckpointRefused(f"--keep-last must be 0 or more, not {keep_last}")
    ordered = sorted(trained, key=lambda c: c.step)
    return {c.name for c in ordered[max(0, len(ordered) - keep_last):]} if keep_last else set()


def plan_prune(run_dir: Path, *, keep_last: int, keep_best: bool = True) -> BulkPlan:
    """Keep the best (see `best_checkpoint`) and the last `keep_last` checkpoints of a run folder, and every one a
    live process may need; the others are to be deleted. Merged folders (`checkpoint-N-merged`) are not touched."""
    folder, trained = _run_folder(run_dir)
    best, best_reason = best_checkpoint(folder)
    last = _last(trained, keep_last)
    live = live_records()
    items = []
    for c in trained:
        reasons = []
        if c.name in last:
            reasons.append(_last_words(keep_last))
        if keep_best and best is not None and c.name == best.name:
            reasons.append(f"best ({best_reason})")
        if (why := in_use_by(c.path, live)) is not None:
            reasons.append(f"in use: {why}")
        action = "keep" if reasons else "delete"
        items.append(PlanItem(c.path, c.step, c.size_bytes, action, reasons,
                              c.size_bytes if action == "delete" else 0))
    return BulkPlan(folder.path, "delete", items, best.name if best else None, best_reason)


def plan_strip(run_dir: Path, *, keep_last: int = 1) -> BulkPlan:
    """Strip the optimizer state of every checkpoint that won't be resumed: all but the last `keep_last` (which
    stay resumable) and those a live process may need. A stripped checkpoint still chats, deploys and merges."""
    folder, trained = _run_folder(run_dir)
    last = _last(trained, keep_last)
    live = live_records()
    items = []
    for c in trained:
        files = optimizer_files(c.path)
        optimizer = sum(tree_size(p) if p.is_dir() else p.stat().st_size for p in files)
        reasons = []
        if not files:
            reasons.append("no optimizer state")
        if c.name in last:
            reasons.append(f"{_last_words(keep_last)}: stays resumable")
        if (why := in_use_by(c.path, live)) is not None:
            reasons.append(f"in use: {why}")
        action = "keep" if reasons else "strip"
        items.append(PlanItem(c.path, c.step, c.size_bytes, action, reasons, optimizer if action == "strip" else 0))
    return BulkPlan(folder.path, "strip", items)


def apply(plan: BulkPlan) -> Applied:
    """Carry out a plan. Each checkpoint goes through `delete_checkpoint` / `strip_optimizer`, which check the guard
    again at that moment: one that a process started to need since the plan was made is refused, not touched."""
    done = Applied()
    act = delete_checkpoint if plan.action == "delete" else strip_optimizer
    for item in plan.chosen:
        try:
            done.done.append((item.path, act(item.path)))
        except CheckpointRefused as exc:
            done.refused.append((item.path, str(exc)))
        except OSError as exc:
            done.refused.append((item.path, f"{item.name}: {exc.strerror or exc}"))
    return done
