"""Incremental readers for what `swift sft` writes: its console log and `<run>/logging.jsonl` -> engine.events.

Pure Python (no torch). Parsers take raw bytes in any chunking and give the same events for the same bytes
(a partial last segment waits for the next feed). `RunReader` tails both files and keeps a `RunState` snapshot.
Python-repr dicts on the console are read by a small regex tokenizer, never `eval`.
"""
from __future__ import annotations

import bisect
import functools
import itertools
import json
import math
import operator
import os
import re
from array import array
from operator import itemgetter
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Callable, Iterator

import orjson

from engine.events import CheckpointSaved, Event, Finished, Metrics, Progress, RunDirFound
from engine.metric_columns import Columns, MetricsView

SEGMENT_CAP = 64 * 1024  # only the last 64 KiB of a console segment (line or \r-update) is looked at
JSONL_LINE_CAP = 256 * 1024 * 1024  # a logging.jsonl line longer than this is skipped
READ_CHUNK = 2 * 1024 * 1024

TRAIN, EVAL = 0, 1  # metric kinds; a step is unique per (step, kind)
STEP_KEYS = {"global_step/max_steps", "global_step", "step", "percentage"}
TIME_KEYS = {"elapsed_time", "remaining_time"}


# ---------------------------------------------------------------- small parsers


_CLOCK_RE = re.compile(r"\d+(?::\d{1,2}){1,2}")
_UNIT_RE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([dhms])")
_UNITS = {"d": 86400, "h": 3600, "m": 60, "s": 1}


def parse_duration(text: str) -> float:
    """'1m 49s' | '2h 3m 4s' | '1d 2h 0m 1s' | '0s' (ms-swift) or '00:21' | '1:02:03' (tqdm) -> seconds."""
    text = text.strip()
    if _CLOCK_RE.fullmatch(text):
        total = 0
        for part in text.split(":"):
            total = total * 60 + int(part)
        return float(total)
    total, pos = 0.0, 0
    while pos < len(text):
        m = _UNIT_RE.match(text, pos)
        if not m:
            break
        total += float(m.group(1)) * _UNITS[m.group(2)]
        pos = m.end()
    if pos == 0 or pos != len(text):
        raise ValueError(f"not a duration: {text!r}")
    return total


@functools.lru_cache(maxsize=4096)  # the same few strings ('3s', '1m 9s') repeat all run long
def _duration(text: str) -> float | None:
    try:
        return parse_duration(text)
    except ValueError:
        return None


# A flat Python-repr dict, scanned pair by pair on bytes. Strings use unrolled loops (fast in `re`).
_STR = rb"'[^'\\\n]*(?:\\.[^'\\\n]*)*'|\"[^\"\\\n]*(?:\\.[^\"\\\n]*)*\""
_NUM = rb"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?|[-+]?(?:nan|inf)"
_VAL = _STR + rb"|" + _NUM + rb"|(?:np|numpy)\.\w+\((?:" + _NUM + rb")\)|None|True|False"
_PAIR_AT = re.compile(rb"\s*(" + _STR + rb")\s*:\s*(" + _VAL + rb")\s*(,?)")
_NP_RE = re.compile(rb"(?:np|numpy)\.\w+\((.*)\)")


def _unquote(token: bytes) -> str:
    if b"\\" not in token:
        return token[1:-1].decode("utf-8", errors="replace")
    import ast

    text = token.decode("utf-8", errors="replace")
    try:
        return ast.literal_eval(text)  # one string literal: safe
    except (ValueError, SyntaxError):  # a bad escape such as '\\N'
        return text[1:-1]


def _scalar(token: bytes):
    first = token[:1]
    if first in (b"'", b'"'):
        return _unquote(token)
    if token == b"None":
        return None
    if token in (b"True", b"False"):
        return token == b"True"
    if first == b"n" and token != b"nan":
        token = _NP_RE.fullmatch(token).group(1)
    return float(token)


def _scan_dicts(data: bytes) -> list[tuple[int, dict]]:
    """(offset, dict) for every flat Python-repr dict in `data`; anything else (nested values, calls) does not
    match and is never evaluated."""
    out = []
    pos = data.find(b"{")
    while pos >= 0:
        i, d = pos + 1, {}
        while m := _PAIR_AT.match(data, i):
            d[_unquote(m.group(1))] = _scalar(m.group(2))
            i = m.end()
            if not m.group(3):
                break
        while data[i:i + 1].isspace():
            i += 1
        if d and data[i:i + 1] == b"}":
            out.append((pos, d))
            pos = data.find(b"{", i + 1)
        else:
            pos = data.find(b"{", pos + 1)
    return out


def parse_repr_dicts(text: str | bytes) -> list[dict]:
    """Every flat Python-repr dict in `text`."""
    return [d for _, d in _scan_dicts(text.encode() if isinstance(text, str) else text)]


def _to_float(key: str, value) -> float | None:
    if isinstance(value, float):
        return value
    if isinstance(value, str):
        if key in TIME_KEYS:
            return _duration(value)
        try:
            return float(value)
        except ValueError:
            pass
        try:
            return float(value.rstrip("%"))
        except ValueError:
            return None
    if isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return None


_STEPS_RE = re.compile(r"\s*(\d+)\s*/\s*(-?\d+)\s*")


def record_step(rec: dict) -> tuple[int | None, int | None]:
    """(step, max_steps) of a log record: 'global_step/max_steps' 'N/M' (3.x/4.x), int 'global_step' (2.x),
    or 'step' (trainer_state log_history)."""
    gs = rec.get("global_step/max_steps")
    if isinstance(gs, str):
        m = _STEPS_RE.fullmatch(gs)
        if m:
            total = int(m.group(2))
            return int(m.group(1)), (total if total > 0 else None)
    for key in ("global_step", "step"):
        v = rec.get(key)
        if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
            return int(v), None
        if isinstance(v, str) and v.isdigit():
            return int(v), None
    return None, None


def record_values(rec: dict) -> dict[str, float]:
    """The numeric values of a log record as floats (time strings -> seconds, '12.5%' -> 12.5)."""
    out = {}
    for k, v in rec.items():
        if k in STEP_KEYS:
            continue
        if type(v) is float:  # the common case, fast
            out[k] = v
        elif (f := _to_float(k, v)) is not None:
            out[k] = f
    return out


def _is_final(rec: dict) -> bool:
    return "last_model_checkpoint" in rec or "log_history" in rec


class _RecordInterpreter:
    """Shared by the console and jsonl parsers: one log record -> Metrics / Progress / Finished."""

    def __init__(self):
        self.finished: Finished | None = None
        self.last_step: int | None = None

    def finish(self, **changes) -> Finished:
        self.finished = replace(self.finished or Finished(), **changes)
        return self.finished

    def interpret(self, rec: dict, strict: bool) -> list[Event]:
        """`strict`: the record must carry its own step (console dicts can fall back on the last bar)."""
        if _is_final(rec):
            best = rec.get("best_metric")
            return [self.finish(
                last_checkpoint=_str_or_none(rec.get("last_model_checkpoint")),
                best_checkpoint=_str_or_none(rec.get("best_model_checkpoint")),
                best_metric=float(best) if isinstance(best, (int, float)) and not isinstance(best, bool) else None,
            )]
        step, max_steps = record_step(rec)
        known = "loss" in rec or "eval_loss" in rec or "train_runtime" in rec
        if step is None:
            if strict or not known or self.last_step is None:
                return []
            step = self.last_step
        values = record_values(rec)
        if not values:
            return []
        speed = values.get("train_speed(s/it)")
        if speed is None and values.get("train_speed(iter/s)"):
            speed = 1.0 / values["train_speed(iter/s)"]
        events: list[Event] = []
        if "train_runtime" in rec:
            events.append(self.finish(summary=values))
        elif known or "global_step/max_steps" in rec or "global_step" in rec:
            events.append(Metrics(step, values, max_steps))
        events.append(Progress(step, max_steps, values.get("epoch"), values.get("elapsed_time"),
                               values.get("remaining_time"), speed))
        self.last_step = step
        return events


def _str_or_none(v) -> str | None:
    return v if isinstance(v, str) and v and v != "None" else None


def metric_kind(m: Metrics) -> int:
    return EVAL if any(k.startswith("eval_") for k in m.values) else TRAIN


# ---------------------------------------------------------------- console


# All console matching runs on bytes (only matched parts are decoded); the patterns are ASCII.
_BAR_RE = re.compile(
    rb"(?:(?P<desc>[A-Za-z][\w ]*?):\s*)?(?P<pct>\d+)%\|[^|]*\|\s*(?P<n>\d+)/(?P<total>\d+)\s*"
    rb"\[(?P<el>[\d:]+)<(?P<rem>[\d:?]+),\s*(?P<rate>[\d.]+|\?)\s*(?P<unit>s/it|it/s)")
_RANK_RE = re.compile(rb"\s*\[rank(\d+)\]:\s?")
_OUTDIR_RE = re.compile(rb"\[INFO:swift\] output_dir: (.+?)\s*$")
_SAVE_RE = re.compile(rb"Saving model checkpoint to (.*?checkpoint-(\d+))\s*$")
_LASTBEST_RE = re.compile(rb"\b(last|best)_model_checkpoint: (.+?)\s*$")
_END_RE = re.compile(rb"End time of running main: (.+?)\s*$")
_MARKER_RE = re.compile(rb"\{|%\||output_dir: |Saving model checkpoint|_model_checkpoint: |End time of running main")


def _text(b: bytes) -> str:
    return b.decode("utf-8", errors="replace")


class ConsoleParser:
    """stdout+stderr of `swift sft` (one merged file) -> events. Segments end at `\\r` or `\\n`; only the last
    SEGMENT_CAP bytes of a segment are looked at, and a segment equal to the previous interesting one (tqdm
    redraws the same bar several times) is skipped."""

    def __init__(self):
        self._pending = b""
        self._last_seg = b""
        self._rec = _RecordInterpreter()
        self._last_progress: Progress | None = None
        self.end_time: str | None = None

    @property
    def finished(self) -> Finished | None:
        return self._rec.finished

    def feed(self, data: bytes) -> list[Event]:
        if not data:
            return []
        buf = self._pending + data
        last = max(buf.rfind(b"\n"), buf.rfind(b"\r"))
        if last < 0:
            self._pending = buf[-SEGMENT_CAP:]
            return []
        self._pending = buf[last + 1:][-SEGMENT_CAP:]
        events: list[Event] = []
        search = _MARKER_RE.search
        for seg in buf[:last].replace(b"\r", b"\n").split(b"\n"):
            if seg and seg != self._last_seg and search(seg):  # cheap filter before the full look
                self._segment(seg[-SEGMENT_CAP:], events)
        return events

    def flush(self) -> list[Event]:
        """Treat the unterminated tail as complete (the file ended)."""
        seg, self._pending = self._pending, b""
        events: list[Event] = []
        self._segment(seg, events)
        return events

    def _progress(self, p: Progress, events: list[Event]) -> None:
        if p != self._last_progress:
            self._last_progress = p
            events.append(p)

    def _finished(self, events: list[Event], **changes) -> None:
        before = self._rec.finished
        fin = self._rec.finish(**changes)
        if fin != before or before is None:
            events.append(fin)

    def _segment(self, seg: bytes, events: list[Event]) -> None:
        if not seg or seg == self._last_seg or not _MARKER_RE.search(seg):
            return
        self._last_seg = seg
        if b"[rank" in seg[:16] and (rank := _RANK_RE.match(seg)):
            if rank.group(1) != b"0":
                return
            seg = seg[rank.end():]
        found: list[tuple[int, object]] = []  # dicts and the bar, handled in text order
        if b"{" in seg:
            found += _scan_dicts(seg)
        if b"%|" in seg and (bar := _BAR_RE.search(seg)) and bar.group("desc") in (None, b"Train"):
            found.append((bar.start(), bar))
            found.sort(key=lambda f: f[0])
        for _, item in found:
            if isinstance(item, dict):
                for ev in self._rec.interpret(item, strict=False):
                    if isinstance(ev, Progress):
                        self._progress(ev, events)
                    else:
                        events.append(ev)
            else:
                self._bar(item, events)
        if b"output_dir: " in seg and (m := _OUTDIR_RE.search(seg)):
            events.append(RunDirFound(_text(m.group(1))))
        elif b"Saving model checkpoint" in seg and (m := _SAVE_RE.search(seg)):
            events.append(CheckpointSaved(int(m.group(2)), _text(m.group(1))))
        elif b"_model_checkpoint: " in seg and (m := _LASTBEST_RE.search(seg)):
            key = "last_checkpoint" if m.group(1) == b"last" else "best_checkpoint"
            self._finished(events, **{key: _str_or_none(_text(m.group(2)))})
        elif b"End time of running main" in seg and (m := _END_RE.search(seg)):
            self.end_time = _text(m.group(1))
            self._finished(events)

    def _bar(self, m: re.Match, events: list[Event]) -> None:
        n, total = int(m.group("n")), int(m.group("total"))
        try:
            rate = float(m.group("rate"))
        except ValueError:  # '?' (no rate yet) or a garbled number
            rate = 0.0
        spi = None
        if rate > 0:
            spi = rate if m.group("unit") == b"s/it" else 1.0 / rate
        rem = m.group("rem")
        self._rec.last_step = n
        self._progress(Progress(n, total or None, None, _duration(m.group("el").decode()),
                                None if b"?" in rem else _duration(rem.decode()), spi), events)


# ---------------------------------------------------------------- logging.jsonl


def loads_json(line: bytes | str):
    """orjson, falling back to the stdlib for NaN/Infinity (Python's json.dumps writes them). Raises ValueError."""
    try:
        return orjson.loads(line)
    except orjson.JSONDecodeError:
        return json.loads(line)



class _Durations(dict):
    """'1m 49s' -> seconds, remembered (the same few strings repeat all run long); nan when not a duration."""

    def __missing__(self, text):
        v = _duration(text) if isinstance(text, str) else None
        v = math.nan if v is None else v
        if len(self) < 4096:
            self[text] = v
        return v


_DURATIONS = _Durations()


@dataclass
class MetricsBlock:
    """Consecutive train steps of logging.jsonl in one layout, by column (JsonlParser's fast path; RunReader
    stores it in RunState.train). Not an engine.events event: it never leaves the reader."""

    steps: array
    maxes: array
    cols: dict[str, array]
    progress: Progress

    def __len__(self) -> int:
        return len(self.steps)

    def metrics(self) -> Iterator[Metrics]:
        cols = self.cols.items()
        for i, step in enumerate(self.steps):
            yield Metrics(step, {k: c[i] for k, c in cols}, self.maxes[i] or None)


class _Layout:
    """The keys of a train record as ms-swift writes it each logging step: numbers, 'N/M' steps and time strings.
    `columns` turns many records of exactly these keys into arrays without a Python step per value."""

    def __init__(self, keys: frozenset, order: tuple, times: tuple):
        self.keys, self.order, self.times = keys, order, times  # order: every value key, as the record has them

    @classmethod
    def of(cls, rec: dict) -> "_Layout | None":
        if "loss" not in rec or not isinstance(rec.get("global_step/max_steps"), str) or _is_final(rec) \
                or "train_runtime" in rec or any(k.startswith("eval_") for k in rec):
            return None
        order, times = [], []
        for k, v in rec.items():
            if k == "global_step/max_steps":
                continue
            if isinstance(v, str) and k in TIME_KEYS:
                times.append(k)
            elif type(v) not in (float, int):
                return None
            order.append(k)
        return cls(frozenset(rec), tuple(order), tuple(times))

    def columns(self, recs: list[dict]) -> MetricsBlock | None:
        """None when some value does not fit (a string number, a bool, a bad step): the caller takes the slow path."""
        try:
            parts = "/".join(map(itemgetter("global_step/max_steps"), recs)).split("/")
            if len(parts) != 2 * len(recs) or not all(map(str.isdigit, parts[0::2])):
                return None
            try:  # every number in one orjson call: "12/500" -> 12, 500 (int() of each where JSON differs: "007")
                both = array("q", orjson.loads("[" + ",".join(parts) + "]"))
                steps, maxes = both[0::2], both[1::2]
            except (orjson.JSONDecodeError, TypeError):
                steps = array("q", map(int, parts[0::2]))
                maxes = array("q", map(int, parts[1::2]))
            # one pass over the records for all number keys (a flat array, row after row), then a strided slice
            # per key: C-speed throughout
            numbers = [k for k in self.order if k not in self.times]
            width = len(numbers)
            flat = array("d", list(itertools.chain.from_iterable(map(itemgetter(*numbers), recs)))) if width > 1 \
                else array("d", list(map(itemgetter(numbers[0]), recs))) if width else array("d")
            by_key = {k: flat[i::width] for i, k in enumerate(numbers)}
            for k in self.times:
                by_key[k] = array("d", map(_DURATIONS.__getitem__, map(itemgetter(k), recs)))
            cols = {k: by_key[k] for k in self.order}
        except (TypeError, ValueError, OverflowError):
            return None
        for k in self.times:
            if not math.isfinite(sum(cols[k])):  # a time string that is no duration: ms-swift never writes one
                return None
        if min(maxes) <= 0:
            maxes = array("q", (m if m > 0 else 0 for m in maxes))
        last = {k: c[-1] for k, c in cols.items()}
        speed = last.get("train_speed(s/it)")
        if speed is None and last.get("train_speed(iter/s)"):
            speed = 1.0 / last["train_speed(iter/s)"]
        progress = Progress(steps[-1], maxes[-1] or None, last.get("epoch"), last.get("elapsed_time"),
                            last.get("remaining_time"), speed)
        return MetricsBlock(steps, maxes, cols, progress)


class JsonlParser:
    """`<run>/logging.jsonl` -> events. Bad or oversized lines are skipped (counted in `skipped`)."""

    def __init__(self, blocks: bool = False):
        """`blocks`: runs of ordinary train records come as one MetricsBlock instead of a Metrics and a Progress
        each (RunReader)."""
        self.blocks = blocks
        self._pending: list[bytes] = []  # parts of the unterminated last line
        self._pending_len = 0
        self._skipping = False  # the current line passed JSONL_LINE_CAP: drop it up to its newline
        self._rec = _RecordInterpreter()
        self._layout: _Layout | None = None
        self.skipped = 0
        self.final_record: dict | None = None

    @property
    def finished(self) -> Finished | None:
        return self._rec.finished

    def feed(self, data: bytes) -> list[Event]:
        events: list[Event] = []
        cut = data.rfind(b"\n")
        if cut >= 0 and not self._skipping and self._pending_len + cut <= JSONL_LINE_CAP:
            # every complete line at once (no line can pass the cap): the columnar fast path
            body = b"".join((*self._pending, data[:cut])) if self._pending else data[:cut]
            self._pending, self._pending_len = [], 0
            self._lines(body.split(b"\n"), events)
            data = data[cut + 1:]
        *lines, tail = data.split(b"\n")
        for part in lines:
            line = b"".join((*self._pending, part))
            skipping = self._skipping or len(line) > JSONL_LINE_CAP
            self._pending, self._pending_len, self._skipping = [], 0, False
            if skipping:
                self.skipped += 1
            else:
                self._line(line, events)
        if tail and not self._skipping:
            self._pending.append(tail)
            self._pending_len += len(tail)
            if self._pending_len > JSONL_LINE_CAP:
                self._pending, self._pending_len, self._skipping = [], 0, True
        return events

    def flush(self) -> list[Event]:
        line, skipping = b"".join(self._pending), self._skipping
        self._pending, self._pending_len, self._skipping = [], 0, False
        events: list[Event] = []
        if skipping:
            self.skipped += 1
        else:
            self._line(line, events)
        return events

    def _lines(self, lines: list[bytes], events: list[Event]) -> None:
        """Complete lines, in order. Runs of train records of one layout (what ms-swift writes every logging step)
        become one MetricsBlock, a column per key made by C-speed passes; any other line goes through `_line`."""
        if not self.blocks:
            for line in lines:
                self._line(line, events)
            return
        try:
            recs = list(map(orjson.loads, lines))
        except (orjson.JSONDecodeError, RecursionError):  # a bad line, or NaN (Python's json writes it): per line
            recs = [_record(line) if line.strip() else None for line in lines]
        if self._layout is None:
            self._layout = next((lay for rec in recs if type(rec) is dict and (lay := _Layout.of(rec))), None)
        layout = self._layout
        same = None
        if layout is not None:
            if list(map(type, recs)).count(dict) == len(recs):
                # as many keys as the layout; which ones _block finds out as it takes them (cheaper than comparing)
                same = list(map(operator.eq, map(len, recs), itertools.repeat(len(layout.keys))))
            else:  # a line that is no object
                same = [type(rec) is dict and rec.keys() == layout.keys for rec in recs]
        self._runs(recs, lines, 0, same, events)

    def _runs(self, recs: list, lines: list[bytes], first: int, same: list[bool] | None, events: list[Event]) -> None:
        """`recs` (lines `first`... of `lines`) in order: each run of records flagged `same` (of the layout) as one
        block, any other record on its own."""
        start, n = 0, len(recs)
        while start < n:
            stop = n
            if same is not None:
                try:
                    stop = same.index(False, start)
                except ValueError:
                    pass
            else:
                stop = start
            if stop > start:
                self._block(recs[start:stop], lines, first + start, events)
            if stop < n:
                self._one(lines[first + stop], recs[stop], events)
            start = stop + 1

    def _block(self, recs: list[dict], lines: list[bytes], first: int, events: list[Event]) -> None:
        try:
            block = self._layout.columns(recs)
        except KeyError:  # a record with as many keys as the layout but other ones: compare each record's keys
            keys = self._layout.keys
            self._runs(recs, lines, first, [rec.keys() == keys for rec in recs], events)
            return
        if block is None:  # a value of another type than the layout's: one record at a time
            for k, rec in enumerate(recs):
                self._one(lines[first + k], rec, events)
            return
        events.append(block)
        self._rec.last_step = block.steps[-1]

    def _one(self, line: bytes, rec, events: list[Event]) -> None:
        """One parsed line the block path does not take."""
        if not isinstance(rec, dict):
            if line.strip():
                self.skipped += 1
            return
        if _is_final(rec):
            self.final_record = rec
        events.extend(self._rec.interpret(rec, strict=True))

    def _line(self, line: bytes, events: list[Event]) -> None:
        if not line.strip():
            return
        rec = _record(line)
        if rec is None:
            self.skipped += 1
            return
        if _is_final(rec):
            self.final_record = rec
        events.extend(self._rec.interpret(rec, strict=True))


def _record(line: bytes) -> dict | None:
    try:
        rec = loads_json(line)
    except (ValueError, RecursionError):
        return None
    return rec if isinstance(rec, dict) else None


def load_jsonl(path: Path) -> list[dict]:
    """All well-formed dict records of a jsonl file (missing file -> [])."""
    return list(JsonlRecords(path))


class JsonlRecords:
    """The well-formed dict records of a jsonl file, read a line at a time on each iteration (a missing or
    unreadable file has none): a million-step logging.jsonl is never a list of a million dicts."""

    def __init__(self, path: Path):
        self.path = Path(path)

    def __iter__(self) -> Iterator[dict]:
        try:
            fh = open(self.path, "rb")
        except OSError:
            return
        with fh:
            try:
                for line in fh:
                    if line.strip() and (rec := _record(line)) is not None:
                        yield rec
            except OSError:
                return

    def __bool__(self) -> bool:
        return next(iter(self), None) is not None


# ---------------------------------------------------------------- tailing


class FileTail:
    """Bytes appended to a file since the last call. A missing file reads as b"" (`error` says why); a truncated or
    replaced file (smaller than the offset, or another inode) restarts from 0 and bumps `generation`."""

    def __init__(self, path: Path | str):
        self.path = Path(path)
        self.offset = 0
        self.generation = 0
        self.error: str | None = None  # why the last read found no file to read
        self._ident: tuple[int, int] | None = None

    def read_new(self, max_bytes: int | None = None) -> bytes:
        try:
            f = open(self.path, "rb")
        except OSError as exc:
            self.error = exc.strerror or type(exc).__name__
            return b""
        self.error = None
        with f:
            st = os.fstat(f.fileno())
            ident = (st.st_dev, st.st_ino)
            if self._ident is not None and (ident != self._ident or st.st_size < self.offset):
                self.offset = 0
                self.generation += 1
            self._ident = ident
            if st.st_size <= self.offset:
                return b""
            f.seek(self.offset)
            data = f.read(-1 if max_bytes is None else max_bytes)
        self.offset += len(data)
        return data


_LINE_BREAK = re.compile(rb"[\r\n]")


class LineSplitter:
    """A byte stream fed in any chunking -> its complete lines, split on `\\r` and `\\n` (each tqdm redraw is a
    line of its own), decoded as UTF-8 with replacement; empty lines are dropped. The unterminated rest waits for
    the next feed, capped to its last SEGMENT_CAP bytes."""

    def __init__(self):
        self.pending = b""

    def feed(self, data: bytes) -> list[str]:
        if not data:
            return []
        *lines, rest = _LINE_BREAK.split(self.pending + data)
        self.pending = rest[-SEGMENT_CAP:]
        return [line.decode("utf-8", errors="replace") for line in lines if line]

    def flush(self) -> list[str]:
        """The unterminated rest as a last line (the writer ended)."""
        rest, self.pending = self.pending, b""
        return [rest.decode("utf-8", errors="replace")] if rest else []


class ConsoleTail:
    """A console log read incrementally as complete lines (`\\r` or `\\n` ends one): what a process watching a run
    needs (engine.runner's fatal-line watch, engine.deploy's readiness wait). One FileTail; a truncated or replaced
    file starts over from its first line."""

    LINES_PER_READ = 4 * 1024 * 1024  # bytes read per lines() call at most

    def __init__(self, path: Path | str):
        self.tail = FileTail(path)
        self._splitter = LineSplitter()
        self._generation = 0

    @property
    def path(self) -> Path:
        return self.tail.path

    def lines(self, max_bytes: int | None = LINES_PER_READ) -> list[str]:
        """The complete lines appended since the last call (at most `max_bytes` read per call)."""
        data = self.tail.read_new(max_bytes)
        if self.tail.generation != self._generation:
            self._generation = self.tail.generation
            self._splitter = LineSplitter()
        return self._splitter.feed(data)

    poll = lines  # engine.runner.ConsoleWatch's name for it

    def flush(self) -> list[str]:
        return self._splitter.flush()


@dataclass
class RunState:
    """Everything known about one run so far; rebuilt identically by a fresh RunReader over the same files.
    Logged steps are kept by column (engine.metric_columns): `train` and `eval` apart, each in step order."""

    run_dir: str | None = None
    progress: Progress | None = None
    checkpoints: dict[int, str] = field(default_factory=dict)  # step -> path as printed
    finished: Finished | None = None
    end_time: str | None = None  # 'End time of running main: ...' was printed
    metrics_source: str | None = None  # "logging.jsonl" | "console"
    train: Columns = field(default_factory=Columns, repr=False, compare=False)
    eval: Columns = field(default_factory=Columns, repr=False, compare=False)

    def __post_init__(self):
        self._view = MetricsView(self.train, self.eval)

    @property
    def metrics(self) -> MetricsView:
        """Logged steps in step order (train before eval at the same step), as Metrics made on demand."""
        return self._view

    @property
    def max_steps(self) -> int | None:
        if self.progress and self.progress.max_steps:
            return self.progress.max_steps
        best = None
        for cols in (self.train, self.eval):
            if len(cols) and cols.maxes[-1] and (best is None or cols.steps[-1] > best[0]):
                best = (cols.steps[-1], cols.maxes[-1])
        if best:
            return best[1]
        return next((m.max_steps for m in reversed(self.metrics) if m.max_steps), None)

    def _put(self, m: Metrics) -> bool:
        """Store; True when the (step, kind) is new."""
        return (self.eval if metric_kind(m) == EVAL else self.train).put(m.step, m.values, m.max_steps)


def _merge_progress(old: Progress | None, new: Progress) -> Progress:
    if old is None:
        return new
    if new.step < old.step:
        return old
    if new.step > old.step:
        return new if new.max_steps or not old.max_steps else replace(new, max_steps=old.max_steps)
    changes = {f.name: getattr(new, f.name) for f in fields(Progress) if getattr(new, f.name) is not None}
    return replace(old, **changes)


def _merge_finished(old: Finished | None, new: Finished, authoritative: bool = True) -> Finished:
    """`authoritative` (logging.jsonl, or the console while there is none): new values win; otherwise they
    only fill what is still unknown."""
    old = old or Finished()
    first, second = (new, old) if authoritative else (old, new)
    return Finished(
        last_checkpoint=first.last_checkpoint or second.last_checkpoint,
        best_checkpoint=first.best_checkpoint or second.best_checkpoint,
        best_metric=first.best_metric if first.best_metric is not None else second.best_metric,
        summary={**second.summary, **first.summary},
    )


class _Source:
    """One tailed file and its parser (a fresh parser when the file was truncated or replaced). `on_data(offset,
    data, restarted)`, when given, sees every chunk read, in order, before the parser does (and an empty one when
    the file restarted empty): other consumers of the same bytes need no tail of their own."""

    def __init__(self, path: Path, parser_cls, on_data: Callable[[int, bytes, bool], None] | None = None):
        self.tail = FileTail(path)
        self.parser_cls = parser_cls
        self.parser = parser_cls()
        self.on_data = on_data
        self.generation = 0
        self.caught_up = True

    def read(self, final: bool, max_bytes: int | None) -> list[Event]:
        events: list[Event] = []
        taken = 0
        self.caught_up = False
        while max_bytes is None or taken < max_bytes:
            want = READ_CHUNK if max_bytes is None else min(READ_CHUNK, max_bytes - taken)
            data = self.tail.read_new(want)
            restarted = self.tail.generation != self.generation
            if restarted:
                self.generation = self.tail.generation
                self.parser = self.parser_cls()
            if self.on_data is not None and (data or restarted):
                self.on_data(self.tail.offset - len(data), data, restarted)
            if not data:
                self.caught_up = True
                break
            taken += len(data)
            events += self.parser.feed(data)
            if len(data) < want:  # a short read is the end of the file: no second open to find that out
                self.caught_up = True
                break
        if final and self.caught_up:
            events += self.parser.flush()
        return events


class RunReader:
    """Tails a console log and/or a run folder's logging.jsonl. `poll()` returns the new events.

    Metrics come from logging.jsonl once it exists (authoritative; console dicts are dropped then and any
    console-derived values in `state` are replaced); without it (a bare log file) from console dicts. Each
    (step, train|eval) is emitted once. Progress and Finished events carry the merged state, emitted on change.
    `cwd` resolves a relative output_dir printed by ms-swift (the cwd the run was started in).
    """

    def __init__(self, console_log: Path | None = None, run_dir: Path | None = None, cwd: Path | None = None,
                 on_console: Callable[[int, bytes, bool], None] | None = None):
        """`on_console(offset, data, restarted)` sees every chunk of the console log as it is read (see _Source)."""
        self.console_log = Path(console_log) if console_log else None
        self.run_dir = Path(run_dir) if run_dir else None
        self.cwd = Path(cwd) if cwd else None
        self.state = RunState(run_dir=str(self.run_dir) if self.run_dir else None)
        self._console = _Source(self.console_log, ConsoleParser, on_console) if self.console_log else None
        self._jsonl: _Source | None = None
        self._dir_announced = False
        # a Metrics event per new logged step; a reader of `state`'s columns (the dashboard) turns this off and is
        # spared a Python object per step
        self.emit_metrics = True
        # column_cache: a long logging.jsonl's columns are taken from engine.column_cache's copy when one fits, and
        # only the bytes after it are parsed (save_column_cache writes the copy); the dashboard turns this on
        self.column_cache = False
        self.cached_offset = 0  # the bytes of logging.jsonl that came from the copy

    @property
    def console_tail(self) -> FileTail | None:
        """The one tail of the console log (offset, generation, why it could not be read)."""
        return self._console.tail if self._console else None

    @property
    def caught_up(self) -> bool:
        """False when the last poll stopped at `max_bytes` with more to read."""
        return all(s.caught_up for s in (self._console, self._jsonl) if s is not None)

    def read_progress(self) -> tuple[int, int]:
        """(bytes read, bytes there now) over the files tailed: how far a first read of a long history is."""
        done = total = 0
        for src in (self._console, self._jsonl):
            if src is not None:
                done += src.tail.offset
                try:
                    total += max(os.stat(src.tail.path).st_size, src.tail.offset)
                except OSError:
                    total += src.tail.offset
        return done, total

    def _resolve(self, path: str) -> Path:
        p = Path(path)
        return p if p.is_absolute() or self.cwd is None else self.cwd / p

    def poll(self, final: bool = False, max_bytes: int | None = None) -> list[Event]:
        """New events since the last poll. `final=True` also takes an unterminated last line (process ended);
        `max_bytes` bounds the work per file and call (see `caught_up`)."""
        out: list[Event] = []
        st = self.state
        progress0, finished0 = st.progress, st.finished
        console = self._console.read(final, max_bytes) if self._console else []
        for ev in console:
            if isinstance(ev, RunDirFound) and not self._dir_announced:
                self._dir_announced = True
                out.append(ev)
                if self.run_dir is None:
                    self.run_dir = self._resolve(ev.path)
                    st.run_dir = str(self.run_dir)
        if self.run_dir is not None and self._jsonl is None and (self.run_dir / "logging.jsonl").exists():
            self._jsonl = _Source(self.run_dir / "logging.jsonl", functools.partial(JsonlParser, blocks=True))
            st.metrics_source = "logging.jsonl"
            if self.column_cache:
                self._load_column_cache()
        jsonl_active = self._jsonl is not None
        for ev in console:
            if isinstance(ev, Metrics):
                if not jsonl_active and st._put(ev):
                    st.metrics_source = "console"
                    if self.emit_metrics:
                        out.append(ev)
            elif isinstance(ev, Progress):
                st.progress = _merge_progress(st.progress, ev)
            elif isinstance(ev, CheckpointSaved):
                if ev.step not in st.checkpoints:
                    st.checkpoints[ev.step] = ev.path
                    out.append(ev)
            elif isinstance(ev, Finished):
                st.finished = _merge_finished(st.finished, ev, authoritative=not jsonl_active)
        if self._console and self._console.parser.end_time:
            st.end_time = self._console.parser.end_time
        if self._jsonl is not None:
            for ev in self._jsonl.read(final, max_bytes):
                if isinstance(ev, MetricsBlock):
                    if st.train.extend(ev.steps, ev.maxes, ev.cols):
                        if self.emit_metrics:
                            out.extend(ev.metrics())
                    else:  # steps out of order or logged again: one at a time
                        for m in ev.metrics():
                            if st._put(m) and self.emit_metrics:
                                out.append(m)
                    st.progress = _merge_progress(st.progress, ev.progress)
                elif isinstance(ev, Metrics):
                    if st._put(ev) and self.emit_metrics:
                        out.append(ev)
                elif isinstance(ev, Progress):
                    st.progress = _merge_progress(st.progress, ev)
                elif isinstance(ev, Finished):
                    st.finished = _merge_finished(st.finished, ev)
        if self._console is None and self.run_dir is not None:
            out += self._scan_checkpoints()
        if st.progress is not None and st.progress != progress0:
            out.append(st.progress)
        if st.finished is not None and st.finished != finished0:
            out.append(st.finished)
        return out

    def _load_column_cache(self) -> None:
        from engine import column_cache

        src = self._jsonl
        try:
            if os.stat(src.tail.path).st_size < column_cache.MIN_BYTES:
                return
        except OSError:
            return
        hit = column_cache.load(src.tail.path)
        if hit is None:
            return
        st = self.state
        st.train.__dict__.update(hit.train.__dict__)  # in place: views of the state's columns stay valid
        st.eval.__dict__.update(hit.eval.__dict__)
        if hit.progress is not None:
            st.progress = _merge_progress(st.progress, hit.progress)
        if hit.finished is not None:
            st.finished = _merge_finished(st.finished, hit.finished)
        src.tail.offset, src.tail._ident = hit.offset, hit.ident
        src.parser._rec.finished, src.parser.final_record = hit.finished, hit.final_record
        self.cached_offset = hit.offset

    def save_column_cache(self) -> bool:
        """Write engine.column_cache's copy of logging.jsonl's columns as read so far (complete lines), when the
        file is long and more of it was parsed than the copy held. True when written."""
        from engine import column_cache

        src = self._jsonl
        if src is None or src.parser._skipping or not self.caught_up:
            return False
        offset = src.tail.offset - src.parser._pending_len
        if offset < column_cache.MIN_BYTES or offset == self.cached_offset:
            return False
        st = self.state
        if column_cache.save(src.tail.path, offset, src.tail._ident, st.train, st.eval, st.progress,
                             src.parser.finished, src.parser.final_record):
            self.cached_offset = offset
            return True
        return False

    def _scan_checkpoints(self) -> list[Event]:
        """Without a console log, checkpoints are found on disk."""
        found = []
        try:
            names = os.listdir(self.run_dir)
        except OSError:
            return []
        for name in names:
            m = re.fullmatch(r"checkpoint-(\d+)", name)
            if m and int(m.group(1)) not in self.state.checkpoints and (self.run_dir / name).is_dir():
                found.append(CheckpointSaved(int(m.group(1)), str(self.run_dir / name)))
        found.sort(key=lambda e: e.step)
        for ev in found:
            self.state.checkpoints[ev.step] = ev.path
        return found

    def poll_all(self, final: bool = False) -> list[Event]:
        """poll() to the end of the files, READ_CHUNK at a time (the blocks of one chunk are stored before the next
        is read: a long history is never in memory twice)."""
        out: list[Event] = []
        while True:
            out += self.poll(final=final, max_bytes=READ_CHUNK)
            if self.caught_up:
                return out

    def read_all(self) -> RunState:
        """One-shot: read both files to their end (unterminated last lines included) and return the state (no
        Metrics events are made: the steps are in its columns)."""
        emit, self.emit_metrics = self.emit_metrics, False
        try:
            self.poll_all(final=True)
        finally:
            self.emit_metrics = emit
        return self.state


# ---------------------------------------------------------------- a quick look at a long history


SAMPLE_LINE_PROBE = 4096  # bytes read at each sampled offset (a logging.jsonl line is ~250 B)
SAMPLE_TAIL = 64 * 1024  # the end of the file, read whole: the last steps, progress and ETA


def sample_jsonl(path: Path | str, points: int = 2000, run_dir: str | None = None) -> RunState:
    """A RunState from about `points` lines of a logging.jsonl spread evenly over the file (a line from each of
    `points` evenly spaced byte offsets) plus every complete line of its last 64 KiB: the whole history's shape
    and the latest step, loss and ETA, read in milliseconds whatever the file's size. A preview only (a step
    between the samples is absent); RunReader gives the exact state."""
    state = RunState(run_dir=run_dir, metrics_source="logging.jsonl")
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return state
    lines: list[bytes] = []
    try:
        size = os.fstat(fd).st_size
        tail_start = max(0, size - SAMPLE_TAIL)
        last_end = 0  # lines are taken in file order, each once
        for k in range(points if tail_start > 0 else 0):
            off = max(last_end, tail_start * k // points)
            if off >= tail_start:
                break
            data = os.pread(fd, SAMPLE_LINE_PROBE, off)
            start = 0 if off == 0 or (off == last_end and off) else data.find(b"\n") + 1
            if start == 0 and off and off != last_end:
                continue  # no line break in the probe (a giant line): nothing here
            end = data.find(b"\n", start)
            if end < 0:
                continue
            if off + start >= tail_start:
                break
            lines.append(data[start:end])
            last_end = off + end + 1
        tail = os.pread(fd, size - tail_start, tail_start)
    except OSError:
        return state
    finally:
        os.close(fd)
    first = max(last_end, tail_start)
    cut = tail.rfind(b"\n")
    if cut >= 0:
        body = tail[first - tail_start:cut]
        if last_end < tail_start and tail_start > 0:  # the tail may begin inside a line: skip that part
            body = body[body.find(b"\n") + 1:] if b"\n" in body else b""
        lines.extend(body.split(b"\n"))
    parser = JsonlParser()
    for ev in parser.feed(b"\n".join(lines) + b"\n"):
        if isinstance(ev, Metrics):
            state._put(ev)
        elif isinstance(ev, Progress):
            state.progress = _merge_progress(state.progress, ev)
        elif isinstance(ev, Finished):
            state.finished = _merge_finished(state.finished, ev)
    return state


# ---------------------------------------------------------------- views


def _json_float(v: float) -> float | None:
    return v if math.isfinite(v) else None


ROW_BLOCK = 8192  # rows made at once by metrics_row_blocks


def _row(state: RunState, ti: int | None, ei: int | None) -> dict:
    """One output row: the train row `ti` and/or the eval row `ei` of one step (the first value of a key wins)."""
    row: dict = {"step": state.train.steps[ti] if ti is not None else state.eval.steps[ei]}
    for cols, i in ((state.train, ti), (state.eval, ei)):
        if i is not None:
            for k, col in cols.cols.items():
                if k not in row and cols.has(k, i):
                    row[k] = _json_float(col[i])
    return row


def _segments(state: RunState) -> Iterator[tuple[str, object]]:
    """The output rows in step order: ('row', dict) one at a time, or ('rows', (a, b)) for train rows a..b that are
    plain (no eval row at their steps, every key logged, every value finite) and can be made in bulk."""
    t, e = state.train, state.eval
    ti = ei = 0
    nt, ne = len(t), len(e)
    bulk = not t.absent and "step" not in t.cols
    while ti < nt or ei < ne:
        if ei < ne and (ti >= nt or e.steps[ei] <= t.steps[ti]):
            same = ti < nt and e.steps[ei] == t.steps[ti]
            yield "row", _row(state, ti if same else None, ei)
            ti, ei = ti + same, ei + 1
            continue
        stop = nt if ei >= ne else bisect.bisect_left(t.steps, e.steps[ei], ti)
        stop = min(stop, ti + ROW_BLOCK)
        if bulk and all(math.isfinite(sum(c[ti:stop])) for c in t.cols.values()):
            yield "rows", (ti, stop)
        else:
            for i in range(ti, stop):
                yield "row", _row(state, i, None)
        ti = stop


STREAM_WINDOW = 65536  # train rows a streaming read keeps back: a step logged again or late within these is placed


def stream_states(reader: RunReader, window: int = STREAM_WINDOW, late: list | None = None,
                  chunk: int = READ_CHUNK) -> Iterator[RunState]:
    """Read `reader`'s files to their end a chunk at a time and yield RunStates that together hold every logged
    row once, in step order: each holds the rows older than the newest `window` train rows, taken out of
    `reader.state` (so memory stays flat in the number of steps), the last one the rest. A step logged again
    replaces its row (the later line wins) and a late step is put in its place as long as it is within the window;
    a line for a step older than that comes after its rows were handed on and is left out, its step appended to
    `late` (the caller says so). `reader.state` keeps the run-level facts (progress, checkpoints, final record)."""
    st = reader.state
    reader.emit_metrics = False
    frontier = None  # every row with a step below this was handed on
    while True:
        reader.poll(max_bytes=chunk)
        done = reader.caught_up
        if done:
            reader.poll(final=True)  # an unterminated last line
        if frontier is not None:
            for cols in (st.train, st.eval):
                n = bisect.bisect_left(cols.steps, frontier)
                if n:
                    gone = cols.take_front(n)
                    if late is not None:
                        late.extend(gone.steps)
        if done:
            cut = None
        elif len(st.train) > window:
            cut = st.train.steps[len(st.train) - window]
        else:
            continue
        nt = len(st.train) if cut is None else bisect.bisect_left(st.train.steps, cut)
        ne = len(st.eval) if cut is None else bisect.bisect_left(st.eval.steps, cut)
        front = RunState(run_dir=st.run_dir, metrics_source=st.metrics_source,
                         train=st.train.take_front(nt), eval=st.eval.take_front(ne))
        yield front
        if done:
            return
        frontier = cut


def metrics_row_blocks(state: RunState) -> Iterator[list[dict]]:
    """The rows of iter_metrics_rows a block at a time (plain train rows are made by C-speed passes)."""
    t = state.train
    keys = ("step", *t.cols)
    for kind, item in _segments(state):
        if kind == "row":
            yield [item]
        else:
            a, b = item
            yield list(map(dict, map(functools.partial(zip, keys),
                                     zip(t.steps[a:b], *(c[a:b] for c in t.cols.values())))))


def metrics_json_text(state: RunState, sep: bytes) -> Iterator[bytes]:
    """The rows of iter_metrics_rows as the JSON orjson writes for each, a block of rows at a time (joined by
    `sep`); plain train rows are written straight from the columns (engine.metrics_text), no dict per row."""
    from engine.metrics_text import json_rows

    t = state.train
    for kind, item in _segments(state):
        if kind == "row":
            yield orjson.dumps(item)
        else:
            a, b = item
            yield json_rows(t.steps[a:b], {k: c[a:b] for k, c in t.cols.items()}, sep)


def metrics_csv_text(state: RunState, keys: list[str]) -> Iterator[bytes]:
    """The lines csv.writer writes for the rows of iter_metrics_rows under `keys` ('' where a step did not log
    a key), a block at a time."""
    from engine.metrics_text import csv_rows

    t = state.train
    for kind, item in _segments(state):
        if kind == "row":
            yield (",".join("" if item.get(k) is None else repr(item[k]) for k in keys) + "\n").encode()
        else:
            a, b = item
            yield csv_rows(t.steps[a:b], {k: c[a:b] for k, c in t.cols.items()}, keys)


def iter_metrics_rows(state: RunState) -> Iterator[dict]:
    """One dict per logged step, in step order, made a block at a time (a million-step run is never a list of
    dicts): {'step': N, 'loss': ..., 'eval_loss': ...}; train and eval rows of the same step are merged (the
    first value of a key wins). Non-finite values become None (JSON-safe)."""
    for block in metrics_row_blocks(state):
        yield from block


def metrics_keys(state: RunState) -> list[str]:
    """Every logged key ('step' first, then the train keys, then the eval ones): the columns of a CSV."""
    return list(dict.fromkeys(("step", *state.train.cols, *state.eval.cols)))


def metrics_table(state: RunState) -> list[dict]:
    """iter_metrics_rows as a list (small runs, tests)."""
    return list(iter_metrics_rows(state))


def last_value(cols: Columns, key: str) -> tuple[int, float] | None:
    """(step, value) of the last row of `cols` that logged `key`."""
    i = cols.last_with(key)
    return None if i is None else (cols.steps[i], cols.cols[key][i])


def metrics_summary(state: RunState) -> dict:
    """Run-level facts for `swiftdeck metrics` (JSON-safe)."""
    t = state.train
    last = last_value(t, "loss")
    loss = t.series("loss")[1] if "loss" in t.cols else array("d")
    finite = loss if math.isfinite(sum(loss)) else [v for v in loss if math.isfinite(v)]
    last_eval = last_value(state.eval, "eval_loss")
    fin = state.finished
    p = state.progress
    steps = [c.steps[-1] for c in (t, state.eval) if len(c)]
    return {
        "run_dir": state.run_dir,
        "metrics_source": state.metrics_source,
        "logged_steps": len(state.metrics),
        "step": p.step if p else (max(steps) if steps else None),
        "max_steps": state.max_steps,
        "last_loss": _json_float(last[1]) if last else None,
        "min_loss": min(finite) if len(finite) else None,
        "last_eval_loss": _json_float(last_eval[1]) if last_eval else None,
        "checkpoints": [state.checkpoints[s] for s in sorted(state.checkpoints)],
        "finished": fin is not None and bool(fin.summary or fin.last_checkpoint),
        "last_checkpoint": fin.last_checkpoint if fin else None,
        "best_checkpoint": fin.best_checkpoint if fin else None,
        "best_metric": fin.best_metric if fin else None,
        "train_summary": {k: _json_float(v) for k, v in fin.summary.items()} if fin else {},
        "end_time": state.end_time,
    }
