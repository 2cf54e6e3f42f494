"""Waiting on a run that may have been started by another process: the registry is read at most twice a second
(its status is re-derived from the processes on every read, so a run whose processes vanished reads as `lost`)
until the run ends, the time is up or the caller cancels. One exit status for scripts, shared by `swiftdeck wait`
and `swiftdeck train --wait`: 0 finished, 1 failed / stopped / lost, 124 timed out (like coreutils' timeout)."""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

from engine import runs
from engine.runs import RunRecord

MIN_POLL_S = 0.5  # never read the registry faster than ~2/s
EXIT_FINISHED, EXIT_ENDED_BADLY, EXIT_TIMEOUT = 0, 1, 124


def exit_status(rec: RunRecord) -> int:
    """0 for a finished run, 1 for any other end (failed, stopped, lost)."""
    return EXIT_FINISHED if rec.status == "finished" else EXIT_ENDED_BADLY


@dataclass
class Waited:
    record: RunRecord  # the last record read: ended, or still active when timed out / cancelled
    timed_out: bool = False
    cancelled: bool = False

    @property
    def exit_status(self) -> int:
        return EXIT_TIMEOUT if self.timed_out else exit_status(self.record)


def wait(rec: RunRecord, *, timeout_s: float | None = None, poll_s: float = MIN_POLL_S,
         cancelled: Callable[[], bool] = lambda: False,
         changed: Callable[[RunRecord], None] | None = None) -> Waited:
    """Until `rec` ends (or `timeout_s` passes, or `cancelled()`). `changed` is told each new status."""
    poll_s = max(poll_s, MIN_POLL_S)
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    rec = runs.load(rec.id)
    status = rec.status
    while rec.active:
        if cancelled():
            return Waited(rec, cancelled=True)
        now = time.monotonic()
        if deadline is not None and now >= deadline:
            return Waited(rec, timed_out=True)
        time.sleep(poll_s if deadline is None else min(poll_s, max(0.0, deadline - now)))
        rec = runs.load(rec.id)
        if changed is not None and rec.status != status:
            changed(rec)
        status = rec.status
    return Waited(rec)
