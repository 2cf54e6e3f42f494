"""Issue 14.4: a RUN argument reaches only records inside the registry: an id must have the id shape, a path must
be a run's folder. A record planted elsewhere is never read, written or acted on."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import psutil
import pytest

from engine import cli, runs


@pytest.fixture
def victim():
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"], start_new_session=True)
    yield proc
    proc.kill()
    proc.wait()


def _plant(folder, proc, run_id: str) -> str:
    """A record.json outside the registry that names a live process, as a registry record would."""
    folder.mkdir(parents=True, exist_ok=True)
    ctime = psutil.Process(proc.pid).create_time()
    record = {"id": run_id, "kind": "sft", "argv": ["swift", "sft"], "cwd": "/tmp",
              "status": "running", "pid": proc.pid, "pgid": proc.pid, "create_time": ctime,
              "runner_pid": proc.pid, "runner_create_time": ctime, "started_at": time.time()}
    text = json.dumps(record)
    (folder / "record.json").write_text(text)
    return text


@pytest.mark.parametrize("how", ["relative", "absolute"])
def test_stop_never_follows_a_path_to_a_planted_record(home, tmp_path, victim, capsys, how):
    planted = tmp_path / "some" / "dir"
    ref = os.path.relpath(planted, runs.runs_dir()) if how == "relative" else str(planted)
    text = _plant(planted, victim, ref)
    assert how == "absolute" or ref.startswith("../")

    assert cli.main(["stop", "--force", ref]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("swiftdeck: no swiftdeck run") and len(err.splitlines()) == 1
    assert victim.poll() is None  # not signalled
    assert sorted(p.name for p in planted.iterdir()) == ["record.json"]  # no .lock, no temp file
    assert (planted / "record.json").read_text() == text
    for call in (runs.load, runs.resolve, lambda r: runs.update(r, lambda rec: None)):
        with pytest.raises(runs.UnknownRun):
            call(ref)
    assert sorted(p.name for p in planted.iterdir()) == ["record.json"]


def test_ids_have_one_shape(home):
    rec = runs.create("sft", ["swift", "sft"], "/tmp")
    assert runs.valid_id(rec.id) and runs.load(rec.id).id == rec.id
    for bad in ("..", "../x", "sft-20260101-000000-ab/../..", "/etc", "sft-20260101-000000-AB", ""):
        assert not runs.valid_id(bad)
        with pytest.raises(runs.UnknownRun):
            runs.update(bad, lambda r: None)
