"""Long runs at scale (issue 9): the folder of column copies (engine.column_cache) stays under its cap; a save
evicts the least recently used copies, never the one just written, and an eviction that fails fails nothing."""
from __future__ import annotations

import os
import time

from engine import column_cache
from engine.ingest import RunReader
from tests.test_scale import write_run

HOUR = 3600 * 10**9


def _save(run) -> bool:
    reader = RunReader(run_dir=run)
    reader.read_all()
    return reader.save_column_cache()


def _age(path, hours: int) -> None:
    t = time.time_ns() - hours * HOUR
    os.utime(path, ns=(t, t))


def _setup(tmp_path, monkeypatch, names):
    monkeypatch.setenv("SWIFTDECK_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(column_cache, "MIN_BYTES", 64 * 1024)
    runs = {n: write_run(tmp_path / n / "v0-20260101-000000", steps=3000) for n in names}
    return runs, {n: column_cache.cache_file(r / "logging.jsonl") for n, r in runs.items()}


def test_a_save_evicts_the_least_recently_used_copies_down_to_the_cap(tmp_path, monkeypatch):
    runs, copies = _setup(tmp_path, monkeypatch, "abc")
    assert _save(runs["a"]) and _save(runs["b"])
    size = copies["a"].stat().st_size
    _age(copies["a"], 3)  # a: written first ...
    _age(copies["b"], 2)
    assert column_cache.load(runs["a"] / "logging.jsonl") is not None  # ... but read last: now the newest
    monkeypatch.setattr(column_cache, "MAX_BYTES", 2 * size + size // 2)  # room for two copies
    assert _save(runs["c"])
    assert copies["a"].is_file() and copies["c"].is_file() and not copies["b"].exists()
    total = sum(p.stat().st_size for p in copies["a"].parent.glob("*.bin"))
    assert total <= column_cache.MAX_BYTES

    monkeypatch.setattr(column_cache, "MAX_BYTES", 1 << 30)
    monkeypatch.setattr(column_cache, "MAX_COPIES", 1)  # a count cap as well
    _age(copies["c"], 1)
    assert _save(runs["b"])
    assert [p.name for p in copies["a"].parent.glob("*.bin")] == [copies["b"].name]


def test_the_copy_just_written_stays_even_alone_over_the_cap(tmp_path, monkeypatch):
    runs, copies = _setup(tmp_path, monkeypatch, "ab")
    assert _save(runs["a"])
    _age(copies["a"], 1)
    monkeypatch.setattr(column_cache, "MAX_BYTES", 1)
    assert _save(runs["b"])
    assert copies["b"].is_file() and not copies["a"].exists()
    assert column_cache.load(runs["b"] / "logging.jsonl") is not None


def test_an_eviction_that_fails_does_not_fail_the_save(tmp_path, monkeypatch):
    runs, copies = _setup(tmp_path, monkeypatch, "ab")
    assert _save(runs["a"])
    stuck = copies["a"].parent / ("0" * 40 + ".bin")
    stuck.mkdir()  # not a file: unlink fails (root included)
    (stuck / "x").write_bytes(b"x" * 4096)
    _age(stuck, 5)
    _age(copies["a"], 4)
    monkeypatch.setattr(column_cache, "MAX_BYTES", 1)
    assert _save(runs["b"])  # the save counts, though one old entry could not be deleted
    assert stuck.is_dir() and not copies["a"].exists() and copies["b"].is_file()
    assert [p.name for p in column_cache.evict(copies["b"].parent, keep=copies["b"])] == []
