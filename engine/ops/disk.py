"""Where the disk went, per output dir: the size of each run folder and each of its checkpoints (and how much of a
checkpoint is optimizer state that `swiftdeck strip` could free), and the free space on the volume. Read from disk
only; a run folder that a swiftdeck run wrote is shown with its registry id, label and status."""
from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

from engine import checkpoints, runs
from engine.errors import SwiftdeckError
from engine.ops.checkpoints import best_checkpoint, optimizer_files, tree_size

fmt_bytes = checkpoints._fmt_size  # one formatter for sizes: "580.0 KB", "2.3 GB"


class DiskError(SwiftdeckError):
    """An output dir that cannot be summarised (one line for the user)."""


@dataclass
class CheckpointDisk:
    name: str
    path: Path
    step: int | None
    kind: str  # lora | merged | full
    size_bytes: int
    optimizer_bytes: int  # what stripping it would free
    resumable: bool
    is_last: bool
    is_best: bool

    def to_json(self) -> dict:
        return {"name": self.name, "path": str(self.path), "step": self.step, "kind": self.kind,
                "size_bytes": self.size_bytes, "optimizer_bytes": self.optimizer_bytes, "resumable": self.resumable,
                "is_last": self.is_last, "is_best": self.is_best}


@dataclass
class RunDisk:
    path: Path
    size_bytes: int  # the whole run folder
    checkpoints: list[CheckpointDisk] = field(default_factory=list)
    run_id: str | None = None  # the swiftdeck run that wrote it
    label: str = ""
    status: str = "unknown"

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def checkpoint_bytes(self) -> int:
        return sum(c.size_bytes for c in self.checkpoints)

    @property
    def optimizer_bytes(self) -> int:
        return sum(c.optimizer_bytes for c in self.checkpoints)

    def to_json(self) -> dict:
        return {"name": self.name, "path": str(self.path), "size_bytes": self.size_bytes,
                "checkpoint_bytes": self.checkpoint_bytes, "optimizer_bytes": self.optimizer_bytes,
                "run_id": self.run_id, "label": self.label, "status": self.status,
                "checkpoints": [c.to_json() for c in self.checkpoints]}


@dataclass
class DiskSummary:
    output_dir: Path
    runs: list[RunDisk]  # oldest first
    volume_total: int
    volume_free: int  # available to this user

    @property
    def size_bytes(self) -> int:
        return sum(r.size_bytes for r in self.runs)

    def to_json(self) -> dict:
        return {"output_dir": str(self.output_dir), "size_bytes": self.size_bytes,
                "volume_total": self.volume_total, "volume_free": self.volume_free,
                "runs": [r.to_json() for r in self.runs]}


def _optimizer_bytes(path: Path) -> int:
    try:
        return sum(tree_size(p) if p.is_dir() else p.stat().st_size for p in optimizer_files(path))
    except (OSError, SwiftdeckError):
        return 0


def disk_summary(output_dir: Path) -> DiskSummary:
    """Every run folder under `output_dir` (or `output_dir` itself when it is one) with its sizes, and the
    volume's free space."""
    root = Path(output_dir).expanduser()
    if not root.is_dir():
        raise DiskError(f"no such folder: {root.resolve()}")
    root = root.resolve()
    by_dir = {Path(r.run_dir).resolve(): r for r in runs.all_runs() if r.run_dir}
    out = []
    for folder in checkpoints.scan(root):
        best, _ = best_checkpoint(folder)
        ckpts = [CheckpointDisk(c.name, c.path, c.step, c.kind, c.size_bytes, _optimizer_bytes(c.path), c.resumable,
                                c.is_last, best is not None and c.name == best.name) for c in folder.checkpoints]
        rec = by_dir.get(folder.path.resolve())
        status = rec.status if rec else ("finished" if folder.finished else "empty" if folder.empty else "unknown")
        out.append(RunDisk(folder.path, tree_size(folder.path), ckpts, rec.id if rec else None,
                           rec.label if rec else "", status))
    usage = shutil.disk_usage(root)
    return DiskSummary(root, out, usage.total, usage.free)
