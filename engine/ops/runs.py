"""Which runs exist and how to name one: a registry record, or a bare ms-swift run folder / console log found on
disk. Resolving a RUN argument, listing runs and the cheap per-run summary (step, max steps, last loss) live here
once, for `swiftdeck runs`, the run switcher and every command that takes RUN."""
from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

from engine import runs
from engine.command import TRAINING_KINDS, Command
from engine.errors import SwiftdeckError
from engine.events import Metrics
from engine.ingest import ConsoleParser, JsonlParser

SUMMARY_TAIL = 256 * 1024


class SourceError(SwiftdeckError):
    """A RUN argument that names nothing we know (one line for the user)."""


@dataclass
class RunSource:
    """A run to show: a registry record, or a bare ms-swift run folder / console log found on disk."""

    record: runs.RunRecord | None = None
    run_dir: Path | None = None
    console_log: Path | None = None
    _status: str | None = field(default=None, init=False, repr=False, compare=False)  # a bare folder's, once read

    @classmethod
    def of_record(cls, rec: runs.RunRecord) -> "RunSource":
        return cls(rec, Path(rec.run_dir) if rec.run_dir else None, rec.console_log)

    @property
    def key(self) -> str:
        return self.record.id if self.record else str(self.run_dir or self.console_log)

    @property
    def name(self) -> str:
        if self.record:
            label, run_id = self.record.label, self.record.id
            return f"{label} {run_id}" if label and not run_id.startswith(f"{label}-") else run_id  # not "deploy deploy-…"
        return (self.run_dir or self.console_log).name

    @property
    def kind(self) -> str:
        """'sft', 'pt', 'rlhf/dpo', 'rlhf/grpo', … (engine.kinds.label); a job's kind ('deploy'); '?' when a bare
        folder or log does not say."""
        from engine import kinds

        if self.record:
            rec = self.record
            if rec.kind not in TRAINING_KINDS:
                return rec.kind
            return kinds.label_of_argv(rec.kind, list(Command.of_record(rec).args))
        if self.run_dir:
            try:
                args = json.loads((self.run_dir / "args.json").read_text(encoding="utf-8"))
            except (OSError, ValueError):
                args = None
            return kinds.label_of_args_json(args if isinstance(args, dict) else {}) or "?"
        return "?"

    @property
    def status(self) -> str:
        """The record's status; for a bare run folder what its files show, in the words of the checkpoint tree
        (engine.status.folder_status): "finished" only when ms-swift's end record follows the last of max_steps,
        "ended" when it ended short of them (stopped, interrupted), else "unknown"."""
        if self.record:
            return self.record.status
        if self._status is None:  # read once per RunSource: `refreshed()` gives a new one
            if not (self.run_dir and _folder_finished(self.run_dir)):
                self._status = "unknown"
            else:
                s = quick_summary(self)
                self._status = "ended" if s.step is not None and s.max_steps and s.step < s.max_steps else "finished"
        return self._status

    @property
    def active(self) -> bool:
        return bool(self.record and self.record.active)

    def refreshed(self) -> "RunSource":
        if not self.record:
            return RunSource(run_dir=self.run_dir, console_log=self.console_log)  # its files may have moved on
        try:
            rec = runs.load(self.record.id)
        except (OSError, ValueError, TypeError):
            return self
        return RunSource(rec, Path(rec.run_dir) if rec.run_dir else self.run_dir, rec.console_log)


def _folder_finished(run_dir: Path) -> bool:
    try:
        with open(run_dir / "logging.jsonl", "rb") as fh:
            fh.seek(0, 2)
            fh.seek(max(0, fh.tell() - SUMMARY_TAIL))
            return b"last_model_checkpoint" in fh.read()
    except OSError:
        return False


def _has_files(folder: Path) -> bool:
    try:
        with os.scandir(folder) as entries:
            return next(entries, None) is not None
    except OSError:
        return False


def discover(output_dir: Path | None = None) -> list[RunSource]:
    """Registry training runs (newest first), then deploy/merge jobs, then run folders under `output_dir` that no
    record claims (newest first). Chat workers are the dashboard's own helpers, not runs to open."""
    records = [r for r in runs.all_runs() if r.kind != "chat"]
    records.sort(key=lambda r: r.kind not in ("sft", "pt", "rlhf"))  # stable: newest first within each group
    found = [RunSource.of_record(r) for r in records]
    if output_dir is not None and Path(output_dir).is_dir():
        from engine import checkpoints

        claimed = {Path(s.run_dir).resolve() for s in found if s.run_dir}
        try:
            folders = checkpoints.run_folder_paths(Path(output_dir))  # names only: no checkpoint is read
        except (checkpoints.CheckpointError, OSError):
            folders = []
        for path in reversed(folders):
            path = path.resolve()
            if path not in claimed and _has_files(path):  # a launch that failed at once leaves an empty folder
                found.append(RunSource(run_dir=path))
    return found


def resolve(ref: str) -> RunSource:
    """A registry id/prefix, a run folder, or a console log file."""
    try:
        return RunSource.of_record(runs.resolve(ref))
    except runs.UnknownRun as exc:
        path = Path(ref).expanduser()
        if path.is_dir():
            return RunSource(run_dir=path.resolve())
        if path.is_file():
            return RunSource(console_log=path.resolve())
        raise SourceError(str(exc)) from None


# ---------------------------------------------------------------- run list summaries


@dataclass
class RunSummary:
    step: int | None = None
    max_steps: int | None = None
    last_loss: float | None = None


def _tail_bytes(path: Path, n: int = SUMMARY_TAIL) -> bytes:
    try:
        with open(path, "rb") as fh:
            fh.seek(0, 2)
            size = fh.tell()
            fh.seek(max(0, size - n))
            data = fh.read()
        if size > n:  # drop the partial first line
            data = data[data.find(b"\n") + 1:]
        return data
    except OSError:
        return b""


def quick_summary(src: RunSource) -> RunSummary:
    """Step, max steps and last loss from the last 256 KiB of logging.jsonl and of the console: cheap for the
    run switcher even for a week-long run. The step is the furthest either file shows (a logged step, or the
    progress bar between two logged steps), as the dashboard's header counts it (engine.ingest's RunState.progress):
    `swiftdeck runs`, the run switcher and the header say the same step."""
    out = RunSummary()
    events = []
    if src.run_dir and (src.run_dir / "logging.jsonl").exists():
        parser = JsonlParser()
        events = parser.feed(_tail_bytes(src.run_dir / "logging.jsonl")) + parser.flush()
    if src.console_log:
        parser = ConsoleParser()
        console = parser.feed(_tail_bytes(src.console_log))
        console += [] if src.active else parser.flush()  # a live bar's unfinished update counts when complete
        events += console if not events else [ev for ev in console if not isinstance(ev, Metrics)]
    for ev in events:
        step = getattr(ev, "step", None)
        if step is not None and (out.step is None or step >= out.step):
            out.step = step
            out.max_steps = getattr(ev, "max_steps", None) or out.max_steps
        if isinstance(ev, Metrics) and "loss" in ev.values and math.isfinite(ev.values["loss"]):
            out.last_loss = ev.values["loss"]
    return out




def _when(src: RunSource) -> float:
    if src.record:
        return src.record.started_at
    try:
        return (src.run_dir or src.console_log).stat().st_mtime
    except OSError:
        return 0.0


def newest_run(output_dir: Path | None = None, *, under: bool = False) -> RunSource | None:
    """The run a dashboard opens first: the newest training run. With `under`, only runs whose folder (or
    --output_dir) lies under `output_dir`: `swiftdeck --output-dir DIR` opens DIR's newest run, not the newest run
    of the registry."""
    found = [s for s in discover(output_dir) if not s.record or s.record.kind in TRAINING_KINDS]
    if under and output_dir is not None:
        root = Path(output_dir).resolve()

        def inside(s: RunSource) -> bool:
            places = [s.run_dir, s.record.output_dir if s.record else None]
            return any(p and (Path(p).resolve() == root or root in Path(p).resolve().parents) for p in places)

        found = [s for s in found if inside(s)]
    return max(found, key=_when, default=None)
