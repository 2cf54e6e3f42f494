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
    """The run failed (or a live console line is fatal): engine.diagnose's verdict. `kind` is a stable diagnosis
    name (see engine/diagnose.py); `remedies` are numbered advice, those that start with `--flag value` pairs can be
    applied by a relaunch; `evidence` is the console text it rests on. `live`: from a fatal console line while the
    run is still going (the verdict on the ended run follows)."""

    kind: str
    summary: str
    evidence: str = ""
    remedies: tuple[str, ...] = ()
    live: bool = False

    @classmethod
    def from_json(cls, d, live: bool = False) -> "Failed | None":
        """From a Diagnosis.to_json() dict (as the runner records it in `meta["diagnosis"]`); anything that is not
        one (wrong types, garbage) gives None, odd members are made strings."""
        if not isinstance(d, dict) or not isinstance(d.get("kind"), str):
            return None
        remedies = d.get("remedies")
        return cls(d["kind"], str(d.get("summary") or ""), str(d.get("evidence") or ""),
                   tuple(str(r) for r in remedies) if isinstance(remedies, list) else (), live)

    def to_json(self) -> dict:
        return {"kind": self.kind, "summary": self.summary, "remedies": list(self.remedies),
                "evidence": self.evidence}


@dataclass(frozen=True, slots=True)
class ConsoleAppended:
    """Bytes the console log gained: `data` is the file from byte `offset` on. `restarted`: the file was truncated
    or replaced, everything seen before is gone and `offset` is 0 again (`data` may then be empty)."""

    offset: int
    data: bytes
    restarted: bool = False

    @property
    def end(self) -> int:
        return self.offset + len(self.data)


@dataclass(frozen=True, slots=True)
class ErrorLine:
    """The console gained error lines (`[ERROR:swift] …`, a logger's ERROR): the last one, and how many so far. A run
    can log errors for minutes (a hub dataset that does not load) while its process looks healthy."""

    line: str
    count: int


Event = RunDirFound | Metrics | Progress | CheckpointSaved | Finished | Failed | ConsoleAppended | ErrorLine
