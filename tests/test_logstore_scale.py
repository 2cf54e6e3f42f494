"""The log store on large logs: lines are indexed without decoding each one, and the filter only decodes lines that
can match; both give exactly what decoding every line gives (issue 9)."""
from __future__ import annotations

import random

from engine.events import ConsoleAppended
from tui import logstore
from tui.logstore import LogFilter, LogStore, collapse

PIECES = [b"[INFO:swift] step 12 loss 0.3", b"Train:  1%|\rTrain:  50%|", b"\x1b[31mER\x1b[0mROR: boom",
          b"Traceback (most recent call last):", b'  File "x.py", line 1', b"During handling of the above",
          b"ValueError: bad value", b"\tindented\twith tabs", "中文 Error: 错误".encode(), b"--api_key sk-123abc",
          b"[WARNING:swift] careful", b"UserWarning: x", b"| ERROR | hub", b"needle here", b"NeEdLe there",
          b"KeyboardInterrupt", b"", b"   ", b"x" * 9000 + b"needle", b"\xff\xfe bad utf8 needle"]
FILTERS = [LogFilter("needle"), LogFilter("error"), LogFilter("api_key"), LogFilter("***"), LogFilter("中文"),
           LogFilter("with tabs"), LogFilter(level="error"), LogFilter(level="warning"),
           LogFilter("step", "warning"), LogFilter("ERROR", "error")]


def _log(rng: random.Random, lines: int) -> bytes:
    return b"\n".join(rng.choice(PIECES) for _ in range(lines)) + b"\ntail without newline"


def _fed(path, data: bytes, rng: random.Random) -> LogStore:
    store, pos = LogStore(path), 0
    while pos < len(data):
        end = min(len(data), pos + rng.choice([1, 7, 100, 4096, 65536]))
        store.add(ConsoleAppended(pos, data[pos:end], False))
        pos = end
    return store


def _reference_tracebacks(raw_lines: list[bytes]) -> tuple[int | None, str | None]:
    first = last = None
    inside = False
    for i, raw in enumerate(raw_lines):
        text = collapse(raw)
        if logstore.TRACEBACK in text:
            first = i if first is None else first
            inside = True
        elif inside and text and not text.startswith((" ", "\t", "During ", "The above exception")):
            if ":" in text or text.endswith(("Error", "Exception", "Interrupt")):
                last = text
            inside = False
    return first, last


def test_index_and_filters_match_decoding_every_line(tmp_path):
    rng = random.Random(9)
    for _ in range(3):
        data = _log(rng, 3000)
        path = tmp_path / "console.log"
        path.write_bytes(data)
        raw_lines = data.split(b"\n")[:-1]
        store = _fed(path, data, rng)
        assert store.complete == len(raw_lines)
        shown = [store.line(i) for i in range(store.count)]
        assert shown == [collapse(r) for r in raw_lines] + ["tail without newline"]
        assert (store.first_traceback, store.last_traceback_line) == _reference_tracebacks(raw_lines)
        for flt in FILTERS:
            expected = [i for i, raw in enumerate(raw_lines) if flt.matches(collapse(raw))]
            assert list(store.scan(flt)) == expected, flt
            assert list(store.scan(flt, upto=1234)) == [i for i in expected if i < 1234], flt


def test_indexing_decodes_only_the_tail_and_tracebacks(tmp_path, monkeypatch):
    lines = [b"[INFO:swift] line %d" % i for i in range(50_000)]
    lines[100:103] = [b"Traceback (most recent call last):", b'  File "x.py", line 1', b"RuntimeError: boom"]
    data = b"\n".join(lines) + b"\n"
    path = tmp_path / "console.log"
    path.write_bytes(data)
    decoded = []
    monkeypatch.setattr(logstore, "collapse", lambda raw: decoded.append(raw) or collapse(raw))
    store = LogStore(path)
    store.add(ConsoleAppended(0, data, False))
    assert store.complete == 50_000 and store.first_traceback == 100
    assert store.last_traceback_line == "RuntimeError: boom"
    assert len(decoded) == 3  # the traceback's lines; the tail is decoded when shown
    assert store.line(49_999) == "[INFO:swift] line 49999" and len(decoded) == 4
    assert store.line(49_999) == "[INFO:swift] line 49999" and len(decoded) == 4  # decoded once
    decoded.clear()
    assert list(store.scan(LogFilter("line 4999"))) == [4999] + list(range(49990, 50000))
    assert len(decoded) < 100


def test_scan_reports_progress_and_stops_when_told(tmp_path, monkeypatch):
    data = b"".join(b"line %d needle\n" % i for i in range(20_000))
    path = tmp_path / "console.log"
    path.write_bytes(data)
    store = LogStore(path)
    store.add(ConsoleAppended(0, data, False))
    monkeypatch.setattr(logstore, "READ_CHUNK", 16 * 1024)  # many chunks
    seen: list[float] = []
    found = store.scan(LogFilter("needle"), progress=seen.append)
    assert list(found) == list(range(20_000))
    assert len(seen) > 10 and seen == sorted(seen) and seen[-1] == 1.0 and 0 < seen[0] < 0.1
    calls: list[float] = []
    partial = store.scan(LogFilter("needle"), progress=lambda done: calls.append(done) or len(calls) < 3)
    assert len(calls) == 3 and 0 < len(partial) < 20_000 and list(partial) == list(range(len(partial)))


def test_the_raw_tail_is_capped_like_a_decoded_line(tmp_path):
    bar = b"".join(b"\rTrain: %d%%|" % (i % 100) for i in range(100_000))  # one 1.3 MB tqdm line
    data = (bar + b"\n") * 20
    store = LogStore(tmp_path / "console.log")
    store.add(ConsoleAppended(0, data, False))
    assert store.complete == 20 and store.line(19) == collapse(bar) == "Train: 99%|"
    assert store.memory_estimate() < 20 * 9 * 1024
