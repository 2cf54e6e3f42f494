"""Issue 14.2: after a run's whole tree died unseen, a process that got one of its pids is not the run's.
Real pid reuse: the stranger is started with the dead run's pid (ns_last_pid), in its own session, so its process
group number is the run's too."""
from __future__ import annotations

import os
import signal
import sys
import time

import psutil
from registry_support import gone, spawn_with_pid, wait_for

from engine import cli, leftovers, runs, supervisor

WITH_WORKER = ("import subprocess, sys, time\n"
               "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(300)'])\n"
               "time.sleep(300)\n")


def _kill_whole_tree(rec: runs.RunRecord) -> float:
    """SIGKILL the runner, the run's process and its worker, as the OOM killer or a reboot would; wait until
    every pid is free again. Returns the time of the kill."""
    tree = [(rec.runner_pid, rec.runner_create_time), (rec.pid, rec.create_time),
            *((int(p), t) for p, t in rec.descendants)]
    killed_at = time.time()
    for pid, _ in tree:
        os.kill(pid, signal.SIGKILL)
    assert wait_for(lambda: all(not psutil.pid_exists(pid) or gone(pid) for pid, _ in tree))
    assert wait_for(lambda: not psutil.pid_exists(rec.pid))  # reaped: the number is free
    return killed_at


def test_a_stranger_with_the_lost_runs_pid_is_not_a_leftover(home, tmp_path, capsys):
    rec = supervisor.launch_argv("sft", [sys.executable, "-c", WITH_WORKER], cwd=tmp_path)
    assert wait_for(lambda: runs.load(rec.id).descendants)
    rec = runs.load(rec.id)
    killed_at = _kill_whole_tree(rec)

    stranger = spawn_with_pid(rec.pid, ["sleep", "300"], start_new_session=True)
    try:
        assert os.getpgid(stranger.pid) == rec.pgid  # the same process-group number as the dead run
        rec = runs.load(rec.id)
        assert rec.status == "lost"
        assert rec.ended_at <= killed_at  # the last time it was seen alive, not when someone first looked
        assert supervisor.live_tree(rec) == []
        assert leftovers.find() == []
        assert cli.main(["leftovers", "--stop"]) == 0
        assert "no leftover processes" in capsys.readouterr().out
        assert stranger.poll() is None
        assert supervisor.kill_tree(rec) == [] and stranger.poll() is None
    finally:
        stranger.kill()
        stranger.wait()

