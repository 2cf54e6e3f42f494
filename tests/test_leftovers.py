"""Leftovers: processes of ended runs that are still alive are found (pid + start time) and stopped."""
from __future__ import annotations

import subprocess
import sys
import time

import psutil

from engine import leftovers, runs

ORPHAN = ("import subprocess, sys\n"
          "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)'])\n")


def test_orphaned_child_of_an_ended_run_is_found_and_stopped(home):
    parent = subprocess.Popen([sys.executable, "-c", ORPHAN], start_new_session=True)
    ctime = psutil.Process(parent.pid).create_time()
    assert parent.wait(30) == 0  # the run's main process exits, its child (same process group) lives on
    rec = runs.create("sft", ["swift", "sft"], "/tmp")

    def ended(r):
        r.pid, r.pgid, r.create_time, r.status, r.exit_code, r.ended_at = \
            parent.pid, parent.pid, ctime, "failed", 1, time.time()

    runs.update(rec.id, ended)
    found = leftovers.find()
    assert [(f.run_id, f.run_status) for f in found] == [(rec.id, "failed")]
    orphan = found[0]
    assert orphan.pid != parent.pid and orphan.rss > 0 and "sleep(120)" in orphan.cmdline
    assert leftovers.stop(found, grace_s=2) == []
    assert not psutil.pid_exists(orphan.pid) or psutil.Process(orphan.pid).status() == psutil.STATUS_ZOMBIE
    assert leftovers.find() == []


def test_active_runs_and_foreign_processes_are_not_leftovers(home):
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"], start_new_session=True)
    try:
        rec = runs.create("sft", ["swift", "sft"], "/tmp")
        me = psutil.Process()
        runs.update(rec.id, lambda r: (setattr(r, "status", "running"), setattr(r, "pid", me.pid),
                                       setattr(r, "create_time", me.create_time())))
        assert leftovers.find() == []
    finally:
        other.kill()
        other.wait()
