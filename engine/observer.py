"""One observer per run: a single tail of `console.log` and one of `logging.jsonl`, turned into typed events.

`RunObserver.poll(record)` reads what the files gained and returns engine.events: Metrics, Progress,
CheckpointSaved, RunDirFound, Finished (engine.ingest.RunReader), ConsoleAppended (the new console bytes, for a log
view's line index: nobody needs a second tail) and Failed (engine.diagnose's verdict):

- a registry run that ended `failed` or `lost`: the diagnosis the runner recorded (`meta["diagnosis"]`), else the
  console diagnosed once, from the head and tail the observer keeps while reading (no second read of the file);
- a run still going whose console shows a fatal line (a CUDA OOM): at once, marked `live`;
- a bare console log (no record, no exit code): when the log itself shows a failure; a log that keeps growing is
  diagnosed again at most every REDIAGNOSE_S.

Per poll the work is proportional to the new bytes (plus one bounded diagnosis when the verdict is due); memory is
the reader's state plus HEAD_BYTES + TAIL_BYTES of console text.
"""
from __future__ import annotations

import math
import re
import time
from pathlib import Path
from typing import Callable

from engine import diagnose
from engine.command import swift_args_of
from engine.events import ConsoleAppended, ErrorLine, Event, Failed
from engine.ingest import SEGMENT_CAP, RunReader, RunState

LIVE_FATAL = ("cuda_oom",)  # a console line after which the run is stopped while still going (engine.runner)
FAILED_STATUSES = ("failed", "lost")
REDIAGNOSE_S = 5.0
HEAD, TAIL = diagnose.HEAD_BYTES, diagnose.TAIL_BYTES
SKIPPED = b"\n[... swiftdeck: middle of the log skipped ...]\n"  # how diagnose.read_bounded marks the cut
_LINE_BREAK = re.compile(r"[\r\n]")
ERROR_LINE_CAP = 1000  # bytes of an error line kept
ERROR_MARK = re.compile(rb"\[ERROR:[^\]\r\n]{1,40}\]|(?<![^\r\n])ERROR:")  # ms-swift's logger; Python's default


def shows_failure(d: diagnose.Diagnosis) -> bool:
    """Without an exit code (a bare log): does the diagnosis show a failure at all?"""
    if d.kind == "no_failure":
        return False
    return d.kind != "unknown" or "exception" in d.details


def fatal_line(data: bytes) -> tuple[str, str] | None:
    """(kind, line) of the first complete console line in `data` that is a LIVE_FATAL sign (diagnose.match_line),
    else None. One cheap test of the whole chunk first; lines are split only when it has a sign."""
    text = data.decode("utf-8", errors="replace")
    if diagnose.match_line(text) is None:
        return None
    for line in _LINE_BREAK.split(text):
        kind = diagnose.match_line(line)
        if kind in LIVE_FATAL:
            return kind, line
    return None


class RunObserver:
    """Everything read from one run's files, as events. `poll()` may run on any one thread at a time."""

    def __init__(self, console_log: Path | None = None, run_dir: Path | None = None, cwd: Path | None = None,
                 clock: Callable[[], float] = time.monotonic):
        self.reader = RunReader(console_log=console_log, run_dir=run_dir, cwd=cwd, on_console=self._console)
        self.clock = clock
        self.failed: Failed | None = None  # the verdict emitted last
        self._chunks: list[Event] = []  # console chunks of the poll under way
        self._reset_console()

    def _reset_console(self) -> None:
        self._head = bytearray()  # the first HEAD bytes of the console
        self._tail = bytearray()  # ... and the last TAIL bytes
        self._size = 0
        self._carry = b""  # the unterminated last line, for the fatal-line watch
        self._fatal: tuple[str, str] | None = None
        self.error_lines = 0  # console lines with an error mark (ERROR_MARK), and the last one
        self.last_error: str | None = None
        self._watch_fatal = False
        self._verdict_for: tuple | None = None  # the record state the verdict was made for
        self._dirty = True  # a bare log gained bytes since its last diagnosis
        self._diagnosed_at = -math.inf
        self.failed = None

    @property
    def state(self) -> RunState:
        return self.reader.state

    @property
    def caught_up(self) -> bool:
        return self.reader.caught_up

    @property
    def jsonl_read(self) -> bool:
        """The run folder's logging.jsonl is tailed and was read to its end: `state` stands for the file
        (engine.checkpoints.scan_run takes its losses from there instead of reading it again)."""
        src = self.reader._jsonl
        return src is not None and src.caught_up

    @property
    def final_record(self) -> dict | None:
        """ms-swift's final logging.jsonl record (last/best checkpoint), once read."""
        src = self.reader._jsonl
        return src.parser.final_record if src is not None else None

    # ------------------------------------------------------------ reading

    def poll(self, record=None, max_bytes: int | None = None) -> list[Event]:
        """New events since the last poll. `record`: the run's engine.runs.RunRecord as it is now (None for a bare
        log or run folder). `max_bytes` bounds the bytes read per file (see `caught_up`); a verdict is made only once
        the files are read to their end."""
        active = bool(record is not None and record.active)
        self._watch_fatal = active and self._fatal is None
        self._chunks = []
        events = self.reader.poll(final=not active, max_bytes=max_bytes)
        out, self._chunks = self._chunks, []
        out += events
        if self.reader.caught_up:
            failed = self._verdict(record, active)
            if failed is not None and failed != self.failed:
                self.failed = failed
                out.append(failed)
        return out

    def _console(self, offset: int, data: bytes, restarted: bool) -> None:
        """Every chunk of the console, from the reader's one tail: a ConsoleAppended event, the head and tail kept
        for a diagnosis, the fatal-line watch."""
        if restarted:
            self._reset_console()
        self._chunks.append(ConsoleAppended(offset, data, restarted))
        if not data:
            return
        self._dirty = True
        if len(self._head) < HEAD:
            self._head += data[:HEAD - len(self._head)]
        if len(data) >= TAIL:
            self._tail[:] = data[-TAIL:]
        else:
            self._tail += data
            if len(self._tail) > TAIL:
                del self._tail[:len(self._tail) - TAIL]
        self._size += len(data)
        region = self._carry + data if self._carry else data
        cut = max(region.rfind(b"\n"), region.rfind(b"\r"))
        if cut < 0:
            self._carry = region[-SEGMENT_CAP:]
            return
        self._carry = region[cut + 1:][-SEGMENT_CAP:]
        if b"ERROR" in region:
            self._error_lines(region, cut)
        if self._watch_fatal and self._fatal is None:
            self._fatal = fatal_line(region[max(0, cut - TAIL):cut])  # a first read of a long history: its end

    def _error_lines(self, region: bytes, cut: int) -> None:
        """Count the error lines among the complete lines of `region` (up to `cut`); an ErrorLine event with the last."""
        found, end, last = 0, -1, None
        for m in ERROR_MARK.finditer(region, 0, cut):
            if m.start() <= end:
                continue  # the same line
            start = max(region.rfind(b"\n", 0, m.start()), region.rfind(b"\r", 0, m.start())) + 1
            nl, cr = region.find(b"\n", m.end(), cut + 1), region.find(b"\r", m.end(), cut + 1)
            end = min(x for x in (nl, cr, cut) if x >= 0)
            found, last = found + 1, region[start:end]
        if found:
            self.error_lines += found
            self.last_error = last.strip()[:ERROR_LINE_CAP].decode("utf-8", errors="replace")
            self._chunks.append(ErrorLine(self.last_error, self.error_lines))

    def console_text(self) -> str:
        """The console as engine.diagnose.read_bounded would read the file now: whole when small, else its head and
        tail around a marker line."""
        if self._size <= HEAD + TAIL:
            rest = self._size - len(self._head)
            data = bytes(self._head) + bytes(self._tail[len(self._tail) - rest:] if rest else b"")
        else:
            data = bytes(self._head) + SKIPPED + bytes(self._tail)
        return data.decode("utf-8", errors="replace")

    # ------------------------------------------------------------ the verdict

    def _verdict(self, record, active: bool) -> Failed | None:
        if record is None:
            if self.reader.console_log is None or not self._dirty or \
                    self.clock() - self._diagnosed_at < REDIAGNOSE_S:
                return None
            self._dirty, self._diagnosed_at = False, self.clock()
            d = self._diagnose(None)
            return Failed.from_json(d.to_json()) if d is not None and shows_failure(d) else None
        if record.status in FAILED_STATUSES:
            key = (record.id, record.status, record.exit_code)
            if key == self._verdict_for:
                return None
            self._verdict_for = key
            meta = record.meta if isinstance(record.meta, dict) else {}
            recorded = Failed.from_json(meta.get("diagnosis"))
            if recorded is not None:
                return recorded
            d = self._diagnose(record)
            return Failed.from_json(d.to_json()) if d is not None else self._undiagnosable()
        if active and self._fatal is not None and (self.failed is None or not self.failed.live):
            kind, line = self._fatal
            d = self._diagnose(record)
            if d is not None and d.kind == kind:
                return Failed.from_json(d.to_json(), live=True)
            return Failed(kind, line.strip(), line.strip(), live=True)
        return None

    def _diagnose(self, record) -> diagnose.Diagnosis | None:
        """engine.diagnose on the console text kept; None when there is no console to diagnose. Never raises."""
        tail = self.reader.console_tail
        if tail is None or (self._size == 0 and tail.error):
            return None
        try:
            if record is None:
                return diagnose.diagnose(self.console_text())
            return diagnose.diagnose(self.console_text(), exit_code=record.exit_code, command=record.kind,
                                     args=swift_args_of(record))
        except Exception as exc:  # noqa: BLE001 - a diagnosis must never take the dashboard down
            return diagnose.Diagnosis("unknown", f"the console log could not be diagnosed ({type(exc).__name__}: "
                                                 f"{exc})")

    def _undiagnosable(self) -> Failed:
        tail = self.reader.console_tail
        why = tail.error if tail is not None and tail.error else "no console log"
        return Failed("unknown", f"the console log could not be diagnosed ({why})")
