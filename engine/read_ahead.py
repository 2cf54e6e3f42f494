"""engine.ingest.stream_states run in a forked child process: the child parses logging.jsonl and sends each part's
columns over a pipe (raw arrays, engine.column_cache's format) while this process writes the previous part out.
Parsing a million lines and writing a million rows then take about as long as the longer of the two, not the sum,
where there are two cores. Where there is no fork (or one core, or the fork fails) the parts are read here.

The pipe holds a line of JSON per message, then its bytes: `{"part": {...}}` and the part's columns, and last
`{"end": n}` with n bytes of pickle (the run-level facts and the late steps) or `{"error": n}` (the child's
exception, raised here). Only this process's own child writes to the pipe.
"""
from __future__ import annotations

import os
import pickle
import signal
import sys
from typing import Iterator

import orjson

from engine.column_cache import columns_meta, read_columns, write_columns
from engine.errors import SwiftdeckError
from engine.ingest import RunState, stream_states

FORK_BYTES = 16 * 1024 * 1024  # smaller files are read here: a part only leaves the reader after 65,536 steps
FACTS = ("run_dir", "progress", "checkpoints", "finished", "end_time", "metrics_source")


class ReaderGone(SwiftdeckError):
    """The child that read the file ended without saying how (killed, out of memory)."""


def _child(reader, late: list, fd: int, kw: dict) -> None:
    with os.fdopen(fd, "wb", buffering=1 << 20) as out:
        try:
            for part in stream_states(reader, late=late, **kw):
                out.write(orjson.dumps({"part": {"run_dir": part.run_dir, "metrics_source": part.metrics_source,
                                                 "train": columns_meta(part.train),
                                                 "eval": columns_meta(part.eval)}}) + b"\n")
                write_columns(out, part.train)
                write_columns(out, part.eval)
                out.flush()  # all of it now: the parent writes this part out while the next one is parsed
            kind, tail = "end", pickle.dumps(({k: getattr(reader.state, k) for k in FACTS}, late))
        except Exception as exc:  # noqa: BLE001 - handed to the parent, which raises it
            try:
                kind, tail = "error", pickle.dumps(exc)
            except Exception:  # noqa: BLE001 - an exception that does not pickle
                kind, tail = "error", pickle.dumps(RuntimeError(f"{type(exc).__name__}: {exc}"))
        out.write(orjson.dumps({kind: len(tail)}) + b"\n" + tail)


def _size(reader) -> int:
    total = 0
    for path in (reader.console_log, reader.run_dir / "logging.jsonl" if reader.run_dir else None):
        try:
            total += os.stat(path).st_size if path else 0
        except OSError:
            pass
    return total


def read_ahead_states(reader, late: list, min_bytes: int | None = None, **kw) -> Iterator[RunState]:
    """What stream_states(reader, late=late, **kw) yields, read by a child process when the files are `min_bytes`
    (FORK_BYTES) or more; at the end `reader.state` holds the run-level facts (progress, checkpoints, finished, ...)
    and `late` the late steps, as stream_states leaves them."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if not hasattr(os, "fork") or cores < 2 or _size(reader) < (FORK_BYTES if min_bytes is None else min_bytes):
        yield from stream_states(reader, late=late, **kw)
        return
    sys.stdout.flush()
    sys.stderr.flush()
    r, w = os.pipe()
    try:
        pid = os.fork()
    except OSError:
        os.close(r)
        os.close(w)
        yield from stream_states(reader, late=late, **kw)
        return
    if pid == 0:  # the child: parse, send, and leave without running the parent's exit handlers
        code = 1
        try:
            os.close(r)
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            _child(reader, late, w, kw)
            code = 0
        finally:
            os._exit(code)
    os.close(w)
    running = True  # the child may still be running: stopped and waited for in the end
    try:
        with os.fdopen(r, "rb", buffering=1 << 20) as fh:
            while True:
                line = fh.readline()
                if not line:
                    _, status = os.waitpid(pid, 0)
                    running = False
                    raise ReaderGone(f"the process reading {reader.run_dir or reader.console_log} ended early "
                                     f"(wait status {status})")
                head = orjson.loads(line)
                if "part" in head:
                    meta = head["part"]
                    yield RunState(run_dir=meta["run_dir"], metrics_source=meta["metrics_source"],
                                   train=read_columns(fh, meta["train"]), eval=read_columns(fh, meta["eval"]))
                elif "error" in head:
                    exc = pickle.loads(fh.read(head["error"]))
                    os.waitpid(pid, 0)
                    running = False
                    raise exc
                else:
                    facts, child_late = pickle.loads(fh.read(head["end"]))
                    os.waitpid(pid, 0)
                    running = False
                    for k, v in facts.items():
                        setattr(reader.state, k, v)
                    late.extend(child_late)
                    return
    finally:
        if running:
            try:
                os.kill(pid, signal.SIGTERM)  # our own child, not yet waited for (its pid cannot be reused yet)
            except OSError:
                pass
            os.waitpid(pid, 0)
