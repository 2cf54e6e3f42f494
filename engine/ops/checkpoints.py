"""Deleting a checkpoint and stripping its optimizer state, with the guards both faces need: nothing outside a
`checkpoint-N` folder is touched, and a checkpoint that a live process may still need is refused — the one ms-swift
may be writing (the highest-numbered one of a running run, and anything newer than its `last-checkpoint` link) and
one that a chat worker or a deploy has loaded."""
from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

from engine import runs
from engine.errors import SwiftdeckError

CKPT_NAME = re.compile(r"checkpoint-(\d+)(-merged)?")
OPTIMIZER_FILES = re.compile(r"optimizer\.(pt|bin)|scheduler\.pt|rng_state(_\d+)?\.pth|scaler\.pt")


class CheckpointRefused(SwiftdeckError):
    """Why a checkpoint is not deleted or stripped (nothing was changed)."""


def _size(path: Path) -> int:
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


def _in_use_by(path: Path) -> str | None:
    """Why a live process may still need this checkpoint, or None."""
    path = path.resolve()
    run_dir = path.parent
    for rec in runs.all_runs():
        if not rec.active:
            continue
        if rec.run_dir and Path(rec.run_dir).resolve() == run_dir and rec.kind in ("sft", "pt", "rlhf"):
            steps = [_step(p) for p in run_dir.iterdir() if CKPT_NAME.fullmatch(p.name) and not p.name.endswith(
                "-merged")]
            link = run_dir / "last-checkpoint"
            last = _step(Path(os.readlink(link))) if link.is_symlink() and CKPT_NAME.fullmatch(
                Path(os.readlink(link)).name) else None
            step = _step(path)
            if steps and step == max(steps):
                return f"{path.name} is the newest checkpoint of run {rec.id}, which is still {rec.status}"
            if last is not None and step > last:
                return f"{path.name} is newer than the last complete checkpoint of run {rec.id}: ms-swift is " \
                       "still writing it"
        loaded = [str(a) for a in rec.meta.get("adapters", [])] + list(map(str, rec.meta.get("loaded", [])))
        text = " ".join(rec.argv)
        if str(path) in loaded or str(path) in text.split() or f"={path}" in text:
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
    why = _in_use_by(Path(path))
    if why:
        raise CheckpointRefused(f"not stripped: {why}")
    freed = 0
    for p in files:
        size = _size(p) if p.is_dir() else p.stat().st_size
        shutil.rmtree(p) if p.is_dir() else p.unlink()
        freed += size
    return freed


def delete_checkpoint(path: Path) -> int:
    """Delete a checkpoint folder; returns the bytes freed."""
    path = _checkpoint_dir(path)
    why = _in_use_by(path)
    if why:
        raise CheckpointRefused(f"not deleted: {why}")
    freed = _size(path)
    link = path.parent / "last-checkpoint"
    shutil.rmtree(path)
    if link.is_symlink() and not link.exists():  # ms-swift's link now points at nothing
        link.unlink()
    return freed
