"""Run registry: status stays right when swiftdeck's processes die or a pid is reused."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from engine import runs


def _dead_process() -> tuple[int, float]:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    ctime = psutil.Process(proc.pid).create_time()
    proc.wait()
    return proc.pid, ctime


def test_dead_pid_without_exit_code_is_lost(home):
    rec = runs.create("sft", ["swift", "sft"], "/tmp")
    pid, ctime = _dead_process()

    def running(r):
        r.status, r.pid, r.create_time, r.runner_pid, r.runner_create_time = "running", pid, ctime, pid, ctime

    runs.update(rec.id, running)
    rec = runs.load(rec.id)
    assert rec.status == "lost" and rec.exit_code is None
    assert "without an exit code" in rec.notes[-1]


def test_reused_pid_is_not_ours(home):
    rec = runs.create("sft", ["swift", "sft"], "/tmp")
    me = psutil.Process()

    def running(r):  # our own pid, but recorded with another start time: a reused pid
        r.status, r.pid, r.create_time = "running", me.pid, me.create_time() - 1000
        r.runner_pid, r.runner_create_time = me.pid, me.create_time() - 1000

    runs.update(rec.id, running)
    assert runs.load(rec.id).status == "lost"


def test_live_process_keeps_running_status(home):
    rec = runs.create("sft", ["swift", "sft"], "/tmp")
    me = psutil.Process()
    runs.update(rec.id, lambda r: (setattr(r, "status", "running"), setattr(r, "pid", me.pid),
                                   setattr(r, "create_time", me.create_time())))
    assert runs.load(rec.id).status == "running"


def test_finished_records_are_not_touched(home):
    rec = runs.create("sft", ["swift", "sft"], "/tmp")
    runs.update(rec.id, lambda r: (setattr(r, "status", "finished"), setattr(r, "exit_code", 0)))
    assert runs.load(rec.id).status == "finished"


def test_writes_are_atomic_and_resolve_by_prefix_and_folder(home, tmp_path):
    a = runs.create("sft", ["swift", "sft"], "/tmp")
    time.sleep(0.01)
    b = runs.create("deploy", ["swift", "deploy"], "/tmp")
    run_dir = tmp_path / "v0-20261127-120000"
    runs.update(a.id, lambda r: (setattr(r, "run_dir", str(run_dir)), setattr(r, "status", "finished")))
    assert not list(Path(home).rglob("*.tmp*"))
    assert runs.resolve(a.id).id == a.id
    assert runs.resolve("deploy-").id == b.id
    assert runs.resolve(str(run_dir)).id == a.id
    assert [r.id for r in runs.all_runs()] == [b.id, a.id]
    with pytest.raises(runs.UnknownRun, match="no swiftdeck run"):
        runs.resolve("nope")


def test_corrupt_record_is_skipped_not_fatal(home):
    good = runs.create("sft", ["swift", "sft"], "/tmp")
    bad = runs.runs_dir() / "sft-20260101-000000-0bad"
    bad.mkdir()
    (bad / "record.json").write_text("{not json")
    stray = runs.runs_dir() / "sft-broken"  # not a run id: not a run folder
    stray.mkdir()
    (stray / "record.json").write_bytes((good.folder / "record.json").read_bytes())
    assert [r.id for r in runs.all_runs()] == [good.id]
    assert sorted((b.path.parent.name, b.reason) for b in runs.scan()[1]) == [
        ("sft-20260101-000000-0bad", "not valid JSON (truncated?)"), ("sft-broken", "its folder name is not a run id")]


def test_concurrent_updates_lose_nothing(home):
    rec = runs.create("sft", ["swift", "sft"], "/tmp")
    code = ("import sys; from engine import runs\n"
            "for i in range(50): runs.update(sys.argv[1], lambda r: r.notes.append(sys.argv[2]))")
    env = {**os.environ, "SWIFTDECK_HOME": str(home)}
    procs = [subprocess.Popen([sys.executable, "-c", code, rec.id, tag], env=env) for tag in "ab"]
    for p in procs:
        assert p.wait(60) == 0
    notes = runs.load(rec.id).notes
    assert notes.count("a") == 50 and notes.count("b") == 50


def test_two_runs_that_draw_the_same_id_both_get_a_record(home, monkeypatch):
    """Two launches of one kind in one second can draw the same 4-hex suffix; the second gets another id."""
    drawn = iter(["sft-20261130-120000-abcd", "sft-20261130-120000-abcd", "sft-20261130-120000-beef"])
    monkeypatch.setattr(runs, "new_id", lambda kind: next(drawn))
    a = runs.create("sft", ["swift", "sft"], "/tmp")
    b = runs.create("sft", ["swift", "sft"], "/tmp")
    assert (a.id, b.id) == ("sft-20261130-120000-abcd", "sft-20261130-120000-beef")
    assert runs.load(b.id).id == b.id
