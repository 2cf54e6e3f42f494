"""The supervisor reacts to a CUDA OOM on the console: the whole tree is stopped, the run is diagnosed.

The process here replays the real OOM traceback recorded on an H200 (tests/data/ms-swift-4.6), with a child that
holds on like a dataloader worker, then would hang forever: only swiftdeck's clean-up ends it.
"""
from __future__ import annotations

import sys
import time

from engine import runs, supervisor

HOLD_ON = r"""
import os, subprocess, sys, time
worker = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])  # like a dataloader worker
time.sleep(1.0)
sys.stdout.write(open(sys.argv[1]).read()[:4000]); sys.stdout.flush()  # the run's start-up output
time.sleep(0.5)
open(sys.argv[3], "w").write(repr(time.time()))
sys.stdout.write(open(sys.argv[2]).read()); sys.stdout.flush()  # the real OOM traceback
time.sleep(600)
"""


def test_oom_on_the_console_stops_the_whole_tree(home, swift_fixtures, tmp_path):
    written = tmp_path / "oom_written_at"
    argv = [sys.executable, "-c", HOLD_ON, str(swift_fixtures / "oom-h200.stdout"),
            str(swift_fixtures / "oom-h200.stderr"), str(written)]
    rec = supervisor.launch_argv("sft", argv, cwd=tmp_path)
    deadline = time.time() + 60
    while (rec := runs.load(rec.id)).active and time.time() < deadline:
        time.sleep(0.2)
    assert rec.status == "failed", rec
    clean = rec.meta["clean_up"]
    assert clean["kind"] == "cuda_oom" and clean["left"] == []
    assert len(clean["tree_pids"]) >= 2  # the main process and its worker were both seen and stopped
    assert clean["detected_at"] - float(written.read_text()) < 5  # measured well under 1 s when idle
    assert rec.meta["diagnosis"]["kind"] == "cuda_oom"
    assert "process 2727 holds 133.79 GiB" in rec.meta["diagnosis"]["summary"]
    assert supervisor.live_tree(rec) == []
