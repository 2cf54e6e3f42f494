"""Typed events produced by ingest from ms-swift's files; the only thing widgets consume."""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class RunDirFound:
    """ms-swift printed its versioned output folder (`output/vN-YYYYMMDD-HHMMSS`)."""

    path: str


@dataclass(frozen=True, slots=True)
class Metrics:
    """One logged step. `values` holds floats (nan kept as nan): loss, grad_norm, learning_rate,
    token_acc, epoch, memory(GiB), train_speed(s/it), eval_* ... as ms-swift names them."""

    step: int
    values: dict[str, float] = field(default_factory=dict)
    max_steps: int | None = None


@dataclass(frozen=True, slots=True)
class Progress:
    """Where training is: from a tqdm bar or a logged step."""

    step: int
    max_steps: int | None = None
    epoch: float | None = None
    elapsed_s: float | None = None
    remaining_s: float | None = None
    seconds_per_it: float | None = None


@dataclass(frozen=True, slots=True)
class CheckpointSaved:
    step: int
    path: str


@dataclass(frozen=True, slots=True)
class Finished:
    """Training reached its end record (train_runtime summary and/or the final logging.jsonl record)."""

    last_checkpoint: str | None = None
    best_checkpoint: str | None = None
    best_metric: float | None = None
    summary: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Failed:
    """The console shows a failure. `kind` is a stable diagnosis name (see engine/diagnose.py)."""

    kind: str
    summary: str
    evidence: str = ""


Event = RunDirFound | Metrics | Progress | CheckpointSaved | Finished | Failed
