"""Long runs at scale (issue 9): the second open of a long run takes its columns from a binary copy under the data
dir and parses only what was appended since; a copy that no longer fits the file is never used."""
from __future__ import annotations

import json

from engine import column_cache
from engine.ingest import RunReader, metrics_table
from tests.test_scale import SAMPLE, write_run


def _open(run, monkeypatch):
    from engine.ops.runs import resolve
    from tui import model

    watch = model.RunWatch(resolve(str(run)), clock=lambda: 0.0)
    previews = []
    watch.preview = previews.append
    u = watch.poll()
    return watch, u, previews


def _fresh(run):
    return RunReader(run_dir=run).read_all()


def _same(state, other) -> None:
    assert metrics_table(state) == metrics_table(other)
    assert state.progress == other.progress and state.finished == other.finished


def test_a_second_open_reads_the_copy_and_only_the_appended_lines(tmp_path, monkeypatch):
    from tui import model

    monkeypatch.setenv("SWIFTDECK_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(column_cache, "MIN_BYTES", 64 * 1024)
    monkeypatch.setattr(model, "PREVIEW_BYTES", 64 * 1024)
    run = write_run(tmp_path / "v0-20260101-000000", steps=3000)
    jsonl = run / "logging.jsonl"
    first, u1, previews = _open(run, monkeypatch)
    assert first.observer.reader.cached_offset == jsonl.stat().st_size and len(previews) == 1
    assert column_cache.cache_file(jsonl).is_file() and str(tmp_path / "home") in str(column_cache.cache_file(jsonl))

    second, u2, previews = _open(run, monkeypatch)
    assert previews == []  # the copy is read at once: no sample first
    assert second.observer.reader.cached_offset == jsonl.stat().st_size
    _same(second.observer.state, _fresh(run))
    assert list(u2.new_metrics.train.steps) == list(range(1, 3001)) and u2.header == u1.header

    line = json.loads(SAMPLE.read_text().splitlines()[0])
    with open(jsonl, "a") as fh:  # the run goes on: two more steps, one cut mid-line
        fh.write(json.dumps({**line, "loss": 0.5, "global_step/max_steps": "3001/4000"}) + "\n")
        fh.write(json.dumps({**line, "loss": 0.25, "global_step/max_steps": "3002/4000"})[:40])
    u = second.poll()
    assert list(u.new_metrics) and [m.step for m in u.new_metrics] == [3001]
    third, _, _ = _open(run, monkeypatch)  # the copy (3000 steps) + the appended line; the cut one waits
    assert 0 < third.observer.reader.cached_offset < jsonl.stat().st_size
    _same(third.observer.state, _fresh(run))
    assert third.observer.state.train.steps[-1] == 3001


def test_a_copy_that_no_longer_fits_the_file_is_not_used(tmp_path, monkeypatch):
    monkeypatch.setenv("SWIFTDECK_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(column_cache, "MIN_BYTES", 64 * 1024)
    run = write_run(tmp_path / "v0-20260101-000000", steps=3000)
    jsonl = run / "logging.jsonl"
    _open(run, monkeypatch)
    copy = column_cache.cache_file(jsonl)
    good = copy.read_bytes()

    text = jsonl.read_text()  # rewritten in place, same size: other losses
    with open(jsonl, "r+") as fh:
        fh.write(text.replace('"loss": 4.9', '"loss": 3.9'))
    watch, _, _ = _open(run, monkeypatch)
    assert watch.observer.reader.cached_offset == jsonl.stat().st_size  # parsed again, copy rewritten
    copy_after = copy.read_bytes()
    assert copy_after != good
    _same(watch.observer.state, _fresh(run))

    copy.write_bytes(copy_after[:len(copy_after) // 2])  # a damaged copy
    assert column_cache.load(jsonl) is None
    watch, _, _ = _open(run, monkeypatch)
    _same(watch.observer.state, _fresh(run))

    jsonl.write_text("\n".join(text.splitlines()[:2000]) + "\n")  # replaced by a shorter file
    assert column_cache.load(jsonl) is None and not column_cache.fits(jsonl)
    watch, _, _ = _open(run, monkeypatch)
    _same(watch.observer.state, _fresh(run))
    assert watch.observer.state.train.steps[-1] < 2000


def test_copies_of_runs_whose_file_is_gone_are_pruned_on_the_next_save(tmp_path, monkeypatch):
    import shutil

    monkeypatch.setenv("SWIFTDECK_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(column_cache, "MIN_BYTES", 64 * 1024)
    old = write_run(tmp_path / "a" / "v0-20260101-000000", steps=3000)
    _open(old, monkeypatch)
    old_copy = column_cache.cache_file(old / "logging.jsonl")
    assert old_copy.is_file() and oct(old_copy.parent.stat().st_mode & 0o777) == "0o700"
    shutil.rmtree(old)
    new = write_run(tmp_path / "b" / "v0-20260101-000000", steps=3000)
    _open(new, monkeypatch)
    assert not old_copy.exists() and column_cache.cache_file(new / "logging.jsonl").is_file()
