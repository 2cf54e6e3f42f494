"""Issue 14.10: a run whose registry folder was deleted while it runs: every engine call says so in one clear
line, and its processes (found by the run marker in their environment) are offered as leftovers and stopped."""
from __future__ import annotations

import shutil
import sys

import psutil
import pytest
from registry_support import gone

from engine import cli, leftovers, runs, supervisor
from engine.errors import SwiftdeckError

SLEEPER = "import time; time.sleep(300)"


def _delete(folder, trash) -> None:
    """Delete a run's folder at once, as `rm -rf` would (moved away first: its runner keeps writing into it)."""
    folder.rename(trash)
    shutil.rmtree(trash)


def test_a_run_whose_folder_is_gone_is_named_and_its_processes_can_be_stopped(home, tmp_path, capsys):
    rec = supervisor.launch_argv("sft", [sys.executable, "-c", SLEEPER], cwd=tmp_path)
    rec = runs.load(rec.id)
    ours = {rec.pid: rec.create_time, rec.runner_pid: rec.runner_create_time}
    _delete(rec.folder, tmp_path / "trash")
    try:
        for call in (lambda: supervisor.stop(rec), lambda: runs.update(rec.id, lambda r: None),
                     lambda: runs.load(rec.id), lambda: runs.resolve(rec.id)):
            with pytest.raises(runs.RunFolderGone) as exc:
                call()
            assert isinstance(exc.value, SwiftdeckError)
            assert str(exc.value).startswith(f"run {rec.id}'s registry folder is gone: {rec.folder}")
        assert all(not gone(pid, ctime) for pid, ctime in ours.items())  # nothing was signalled

        for ref in (rec.id, str(rec.folder)):
            assert cli.main(["stop", ref]) == 2
            err = capsys.readouterr().err
            assert err.count("\n") == 1 and "registry folder is gone" in err and "2 of its processes" in err
        assert cli.main(["stop", str(tmp_path)]) == 2  # a folder of no run: the leftovers hint
        assert "registry folder is gone still run: see `swiftdeck leftovers`" in capsys.readouterr().err

        found = leftovers.find()
        assert {(f.pid, f.run_id, f.run_status) for f in found} == {(pid, rec.id, "gone") for pid in ours}
        assert cli.main(["leftovers", "--stop"]) == 0
        assert "stopped" in capsys.readouterr().out
        assert all(gone(pid, ctime) for pid, ctime in ours.items())
        assert leftovers.find() == []
    finally:
        for pid, ctime in ours.items():
            if not gone(pid, ctime):
                psutil.Process(pid).kill()


def test_the_marker_of_another_data_dir_is_not_ours(home, tmp_path, monkeypatch):
    rec = supervisor.launch_argv("sft", [sys.executable, "-c", SLEEPER], cwd=tmp_path)
    try:
        _delete(rec.folder, tmp_path / "trash")
        other = tmp_path / "other-home"
        monkeypatch.setenv("SWIFTDECK_HOME", str(other))
        assert leftovers.find() == []
        monkeypatch.setenv("SWIFTDECK_HOME", str(home))
        assert len(leftovers.find()) == 2
    finally:
        for pid in (rec.pid, rec.runner_pid):
            psutil.Process(pid).kill()
