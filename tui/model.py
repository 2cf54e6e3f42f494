"""What the dashboard shows, computed without Textual: which runs exist, and one run's state as it changes.

`RunWatch.poll()` does all file reading for one run and is meant for a worker thread: one engine.observer.RunObserver
(one tail of the console, one of logging.jsonl) gives the events, and the log store, the chart and the failure card
are fed from them; widgets only get the `Update` it returns. Time comes from an injected clock so tests and
snapshots are deterministic.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

from engine import runs
from engine.completions import CompletionsTail
from engine.command import TRAINING_KINDS
from engine.events import CheckpointSaved, ConsoleAppended, ErrorLine, Failed, Finished, Metrics
from engine.metric_columns import NewRows
from engine.observer import RunObserver
from engine.ops import jobs
from engine.ops.runs import (RunSource, RunSummary, SourceError, discover, newest_run, quick_summary,  # noqa: F401
                             resolve)
from tui.logstore import LogStore

CHECKPOINT_RESCAN_S = 60.0  # while running, besides every save: scan_run reads logging.jsonl whole
POLL_CHUNK = 8 * 1024 * 1024  # bytes read per file and observer step: a long history is taken in steps this big
PREVIEW_BYTES = 24 * 1024 * 1024  # a logging.jsonl this long is first shown from a sample (RunWatch.preview)
PREVIEW_POINTS = 2000  # lines sampled for it: about a chart's width in pixels, several times over
TAIL_FROM = 16 * 1024 * 1024  # a console log this long is first shown from its end (LogStore.show_tail)


# ---------------------------------------------------------------- one run, watched


def fmt_duration(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds) or seconds < 0:
        return "-"
    s = int(round(seconds))
    d, s = divmod(s, 86400)
    h, s = divmod(s, 3600)
    m, s = divmod(s, 60)
    if d:
        return f"{d}d {h}h {m:02d}m"
    if h:
        return f"{h}h {m:02d}m {s:02d}s"
    return f"{m}m {s:02d}s" if m else f"{s}s"


def fmt_num(v: float | None, digits: int = 4) -> str:
    if v is None:
        return "-"
    if not math.isfinite(v):
        return str(v)
    return f"{v:.{digits}g}"


def folder_stamp(run_dir: Path) -> tuple | None:
    """A cheap fingerprint of a run folder: its entries and their change times (one scandir, no file read). It
    changes when a checkpoint appears, goes, or gains files (a merge from the CLI, a copied checkpoint)."""
    import os

    try:
        with os.scandir(run_dir) as it:
            return tuple(sorted((e.name, e.stat(follow_symlinks=False).st_mtime_ns) for e in it if e.is_dir()))
    except OSError:
        return None


def step_label(status: str, step: int | None, max_steps: int | None) -> str:
    """The run folder's line in the checkpoints pane for the run on screen, from the header's own numbers:
    "running step 25/120", "stopped step 317/500"."""
    return status if step is None else f"{status} step {step}/{max_steps or '?'}"


@dataclass
class HeaderInfo:
    name: str = "no run"
    status: str = "none"
    step: int | None = None
    max_steps: int | None = None
    epoch: float | None = None
    elapsed_s: float | None = None
    eta_s: float | None = None
    seconds_per_it: float | None = None
    last_loss: float | None = None
    exit_code: int | None = None
    kind: str = ""  # sft | pt | rlhf/dpo | rlhf/grpo | deploy | export … (RunSource.kind)
    ended: str = ""  # how an ended run ended, in words (engine.status.exit_words): "stopped by you (SIGINT)"
    errors: int = 0  # error lines the console of a running run has shown so far, and the last one
    last_error: str = ""
    job: str = ""  # a deploy/merge/chat job: one line on what it serves or writes (engine.ops.jobs.summary)


@dataclass
class FailureInfo:
    """The record's side of a failed run (status, exit code) and the console's last traceback line; the diagnosis
    itself arrives as an engine.events.Failed (Update.failed)."""

    status: str
    exit_code: int | None
    line: str  # the console's last traceback line, or a note
    diagnosis: str | None = None


@dataclass
class Update:
    """What changed since the last poll."""

    header: HeaderInfo
    new_metrics: Sequence[Metrics] = field(default_factory=list)  # a NewRows view of the state's columns
    reset: bool = False  # the log/metrics started over (file replaced, or another run)
    log_lines: int = 0  # complete log lines that arrived (-1: the log was replaced)
    checkpoints: list | None = None  # list[RunFolder] when rescanned
    failure: FailureInfo | None = None
    source: RunSource | None = None
    has_eval: bool = False
    failed: Failed | None = None  # the engine's verdict on this run so far (sticky: the latest one)
    completions: list = field(default_factory=list)  # GRPO samples that arrived (engine.completions.Completion)
    job: list | None = None  # a deploy/merge/chat job: (what, value) rows (engine.ops.jobs.facts); None: training
    folder_label: tuple[str, str] | None = None  # (run folder, "running step 25/120"): the header's numbers


class RunWatch:
    """All file reading for one run: registry status, the run's observer (metrics, console lines, the verdict on a
    failure), checkpoints."""

    def __init__(self, source: RunSource | None, clock: Callable[[], float] = time.time):
        self.source = source
        self.clock = clock
        self.log = LogStore(source.console_log if source else None)
        cwd = Path(source.record.cwd) if source and source.record else None
        self.observer = RunObserver(console_log=source.console_log, run_dir=source.run_dir, cwd=cwd) \
            if source else None
        if self.observer is not None:  # a long history's columns are kept in a binary copy (engine.column_cache)
            self.observer.reader.column_cache = True
        self.failed: Failed | None = None
        self.error: ErrorLine | None = None  # the console's last error line so far
        rec = source.record if source else None
        # a deploy's API requests so far (uvicorn's access lines), (total, failed); None for anything else
        self.requests: tuple[int, int] | None = (0, 0) if rec is not None and rec.kind == "deploy" else None
        self._first = True
        self._kind: str | None = None
        self._last_scan = -math.inf
        self._scan_run_dir: str | None = None
        self._status: str | None = None
        self.force_scan = False  # set after a checkpoint was deleted or stripped, and by the refresh key
        self._folder_stamp: tuple | None = None  # folder_stamp of the run folder at the last poll
        self.completions: CompletionsTail | None = None
        self._has_eval = False  # sticky: logged steps are never taken back
        self._rows_mark: tuple | None = None  # the state's rows already handed out (engine.metric_columns.NewRows)
        # progress(bytes_read, bytes_total): called after each chunk while a long history is still being read (never
        # for a run read in one chunk), from poll's thread
        self.progress: Callable[[int, int], None] | None = None
        # preview(update): on the first poll of a long logging.jsonl (PREVIEW_BYTES), called once before the whole
        # history is read, with a reset Update made from a sample of the file (engine.ingest.sample_jsonl: the
        # whole history's shape, the last steps and the ETA); the poll's own Update then brings the exact rows.
        # Likewise for a long console log (TAIL_FROM): a reset Update whose log lines are the file's end
        # (LogStore.show_tail); the poll's own Update comes when the whole log is indexed (LogStore.take_index)
        self.preview: Callable[[Update], None] | None = None

    def poll(self) -> Update:
        if self.source is None:
            return Update(HeaderInfo(), reset=self._take_first())
        src = self.source = self.source.refreshed()
        first = self._take_first()
        self.observer.reader.emit_metrics = False  # new steps are read from the state's columns (NewRows)
        if first and self.preview is not None:
            self._preview_log(src)
            self._preview(src)
        saved, lines = False, 0
        while True:  # a long history in steps: one chunk of each file in memory at a time
            for ev in self.observer.poll(src.record, max_bytes=POLL_CHUNK):
                if isinstance(ev, ConsoleAppended):
                    if ev.restarted:
                        self.failed = self.error = None
                    if self.requests is not None:
                        got = jobs.count_requests(ev.data)
                        self.requests = (0, 0) if ev.restarted else self.requests
                        self.requests = (self.requests[0] + got[0], self.requests[1] + got[1])
                    added = self.log.add(ev)
                    lines = -1 if added < 0 or lines < 0 else lines + added
                elif isinstance(ev, (CheckpointSaved, Finished)):
                    saved = True
                elif isinstance(ev, Failed):
                    self.failed = ev
                elif isinstance(ev, ErrorLine):
                    self.error = ev
            if self.observer.caught_up:
                break
            if self.progress is not None:
                self.progress(*self.observer.reader.read_progress())
        if self.log.tail_shown:
            self.log.index_done()  # the pane shows the whole index from the Update below on
        if first:
            self.observer.reader.save_column_cache()  # the next open reads only what is appended after this
        state = self.observer.state
        new_metrics = NewRows.since(state.train, state.eval, self._rows_mark)
        self._rows_mark = new_metrics.mark()
        run_dir = state.run_dir or (str(src.run_dir) if src.run_dir else None)
        if run_dir and (self.completions is None or self.completions.path.parent != Path(run_dir)):
            self.completions = CompletionsTail(run_dir)
        completions = self.completions.poll() if self.completions else []
        checkpoints = None
        now = self.clock()
        forced, self.force_scan = self.force_scan, False
        changed = False
        if run_dir and not src.active:  # a live run is rescanned at each save (its folder changes as it trains)
            stamp = folder_stamp(Path(run_dir))
            changed, self._folder_stamp = stamp != self._folder_stamp, stamp
        if run_dir and (first or saved or forced or changed or src.status != self._status
                        or run_dir != self._scan_run_dir
                        or (src.active and now - self._last_scan >= CHECKPOINT_RESCAN_S)):  # sizes grow
            checkpoints = self._scan(Path(run_dir))
            self._last_scan, self._scan_run_dir = now, run_dir
        elif first:
            checkpoints = []
        self._status = src.status
        self._has_eval = self._has_eval or "eval_loss" in state.eval.cols
        header = self._header(src, now)
        job = self._job(src, header)
        label = (run_dir, step_label(header.status, header.step, header.max_steps)) if run_dir and not job else None
        return Update(header, new_metrics, reset=first, log_lines=lines,
                      checkpoints=checkpoints, failure=self._failure(src), source=src,
                      has_eval=self._has_eval, failed=self.failed,
                      completions=completions, job=job, folder_label=label)

    def _job(self, src: RunSource, header: HeaderInfo) -> list | None:
        """A deploy/merge/chat job's facts (and its line in the header); None for a training run."""
        if src.record is None or src.record.kind in TRAINING_KINDS:
            return None
        header.job = jobs.summary(src.record) + (f" · {self.requests[0]} requests" if self.requests else "")
        return jobs.facts(src.record, self.requests)

    def _preview_log(self, src: RunSource) -> None:
        """A long console log: its last lines on screen before the whole file is read."""
        try:
            if src.console_log is None or Path(src.console_log).stat().st_size < TAIL_FROM:
                return
        except OSError:
            return
        shown = self.log.show_tail()
        if shown:
            header = self._header(src, self.clock())
            job = self._job(src, header)
            self.preview(Update(header, reset=True, log_lines=shown, source=src, job=job))

    def _preview(self, src: RunSource) -> None:
        from engine.ingest import sample_jsonl

        run_dir = src.run_dir or self.observer.state.run_dir
        path = Path(run_dir) / "logging.jsonl" if run_dir else None
        try:
            if path is None or path.stat().st_size < PREVIEW_BYTES:
                return
        except OSError:
            return
        from engine import column_cache

        if column_cache.fits(path):  # read in a moment from the copy of its columns: no sample needed
            return
        sample = sample_jsonl(path, PREVIEW_POINTS, run_dir=str(run_dir))
        self.preview(Update(self._header(src, self.clock(), sample), NewRows.since(sample.train, sample.eval, None),
                            reset=True, source=src, has_eval="eval_loss" in sample.eval.cols))

    def _take_first(self) -> bool:
        first, self._first = self._first, False
        return first

    def _scan(self, run_dir: Path) -> list:
        from engine import checkpoints

        try:  # losses from the observer's columns: logging.jsonl is not read a second time
            return [checkpoints.scan_run(run_dir, logged=self.observer)] if run_dir.is_dir() else []
        except (checkpoints.CheckpointError, OSError):
            return []

    def _header(self, src: RunSource, now: float, state=None) -> HeaderInfo:
        state = state or self.observer.state
        p = state.progress
        last = next((m for m in reversed(state.metrics) if "loss" in m.values), None)
        rec = src.record
        elapsed = p.elapsed_s if p and p.elapsed_s is not None else None
        if elapsed is None and rec:
            elapsed = (now if rec.active else (rec.ended_at or now)) - rec.started_at
        eta = p.remaining_s if p and src.active else (0.0 if src.status == "finished" else None)
        from engine.status import exit_words

        err = self.error if src.active or src.record is None else None
        if self._kind in (None, "?"):
            self._kind = src.kind  # reads args.json for a bare folder: once it is there
        return HeaderInfo(
            kind=self._kind, ended=exit_words(src.status, rec.exit_code, bool(rec.stop_requested)) if rec else "",
            errors=err.count if err else 0, last_error=err.line if err else "",
            name=src.name, status=src.status, step=p.step if p else (last.step if last else None),
            max_steps=state.max_steps, epoch=p.epoch if p and p.epoch is not None else (
                last.values.get("epoch") if last else None),
            elapsed_s=elapsed, eta_s=eta, seconds_per_it=p.seconds_per_it if p else None,
            last_loss=last.values["loss"] if last else None, exit_code=rec.exit_code if rec else None)

    def _failure(self, src: RunSource) -> FailureInfo | None:
        rec = src.record
        if not rec or rec.status not in ("failed", "lost"):
            return None
        line = self.log.last_traceback_line
        if rec.status == "lost":
            line = line or "the run's processes are gone without an exit code (runner killed or host rebooted)"
        diagnosis = (self.failed.summary or self.failed.kind) if self.failed and not self.failed.live else None
        return FailureInfo(rec.status, rec.exit_code, line or "no traceback in the console log", diagnosis)
