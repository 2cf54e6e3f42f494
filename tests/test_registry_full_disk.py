"""Issue 14.8 and 14.12: a full or read-only volume under the data dir. Runs stay listed, every command answers
in one line, no temp file is left. Real tmpfs volumes (64 KB) mounted for the test."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import psutil
import pytest
from registry_support import fill, leftover_tmp_files, remount_read_only, tiny_volume

from engine import cli, paths, runs

REPO = Path(__file__).resolve().parents[1]


def _running(rec: runs.RunRecord, pid: int, ctime: float) -> None:
    runs.update(rec.id, lambda r: (setattr(r, "status", "running"), setattr(r, "pid", pid), setattr(r, "pgid", pid),
                                   setattr(r, "create_time", ctime), setattr(r, "runner_pid", pid),
                                   setattr(r, "runner_create_time", ctime)))


def test_a_full_registry_volume_keeps_runs_listed_and_stop_answers_in_one_line(tmp_path, monkeypatch, capsys):
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"], start_new_session=True)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead_ctime = psutil.Process(dead.pid).create_time()
    dead.wait()
    try:
        with tiny_volume(tmp_path / "vol", "2m") as vol:  # room for two runs, then filled to the last byte
            monkeypatch.setenv("SWIFTDECK_HOME", str(vol / "home"))
            died = runs.create("sft", ["swift", "sft"], "/tmp", label="died")  # its trainer died: lost on the next look
            _running(died, dead.pid, dead_ctime)
            alive = runs.create("sft", ["swift", "sft"], "/tmp", label="alive")
            runs.update(alive.id, lambda r: setattr(r, "started_at", died.started_at + 1))  # listed first
            _running(alive, sleeper.pid, psutil.Process(sleeper.pid).create_time())
            fill(vol)

            assert cli.main(["runs"]) == 0
            out = capsys.readouterr().out
            assert "no runs yet" not in out and died.id in out and alive.id in out
            assert [(r.id, r.status) for r in runs.all_runs()] == [(alive.id, "running"), (died.id, "lost")]

            for ref in (alive.id, str(alive.folder)):
                assert cli.main(["stop", "--force", ref]) == 2
                err = capsys.readouterr().err
                assert err == (f"swiftdeck: no space left on {vol} for the run registry "
                               f"({alive.folder / 'record.json'}); free some space and try again\n")
            with pytest.raises(paths.StorageError):
                runs.create("sft", ["swift", "sft"], "/tmp")
            assert sleeper.poll() is None  # nothing was done that could not be recorded
            assert leftover_tmp_files(vol) == []
            assert sorted(p.name for p in runs.runs_dir().iterdir()) == sorted([died.id, alive.id])
    finally:
        sleeper.kill()
        sleeper.wait()


def _train(home: Path, cwd: Path) -> subprocess.CompletedProcess:
    dataset = cwd / "data.jsonl"
    dataset.write_text('{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}\n')
    env = {**os.environ, "SWIFTDECK_HOME": str(home), "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "tui.cli", "train", "--fix", "--", "--model",
                           "Qwen/Qwen2.5-0.5B-Instruct", "--dataset", str(dataset)],
                          cwd=cwd, env=env, capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)


def test_train_on_an_empty_64k_home_answers_in_one_line(tmp_path):
    with tiny_volume(tmp_path / "vol") as vol:
        proc = _train(vol / "home", tmp_path)
        assert proc.returncode == 2, proc.stderr
        assert proc.stderr.startswith(f"swiftdeck: no space left on {vol} for the run registry")
        assert proc.stderr.count("\n") == 1
        assert leftover_tmp_files(vol) == []
        assert list((vol / "home" / "runs").iterdir()) == []  # no half-made run


def test_train_with_a_read_only_home_answers_in_one_line(tmp_path):
    with tiny_volume(tmp_path / "vol") as vol:
        (vol / "home").mkdir()
        remount_read_only(vol)
        proc = _train(vol / "home", tmp_path)
        assert proc.returncode == 2, proc.stderr
        assert proc.stderr == (f"swiftdeck: the run registry is on a read-only file system ({vol}): "
                               f"cannot write {vol / 'home' / 'runs'}\n")
