"""The chat worker is a supervised swiftdeck process: recorded in the registry, never orphaned."""
from __future__ import annotations

import os
import subprocess
import sys
import time

from engine import leftovers, runs, supervisor
from engine.chat_client import ChatClient

KILLED_CLIENT = ("import os\nfrom engine.chat_client import ChatClient\n"
                 "c = ChatClient.spawn()\nprint(c.run_id, flush=True)\nos.kill(os.getpid(), 9)\n")


def test_worker_is_recorded_and_closed(home):
    client = ChatClient.spawn()
    rec = runs.load(client.run_id)
    assert (rec.kind, rec.status, rec.pid) == ("chat", "running", client.pid)
    assert [p.pid for p in supervisor.live_tree(rec)] == [client.pid]
    assert client.close()
    rec = runs.load(client.run_id)
    assert rec.status == "finished" and rec.exit_code == 0 and not supervisor.live_tree(rec)


def test_worker_of_a_killed_client_exits_and_leaves_nothing(home):
    env = {**os.environ, "SWIFTDECK_HOME": str(home)}
    proc = subprocess.run([sys.executable, "-c", KILLED_CLIENT], env=env, capture_output=True, text=True, timeout=120)
    run_id = proc.stdout.strip()
    deadline = time.time() + 30
    while (rec := runs.load(run_id)).active and time.time() < deadline:
        time.sleep(0.2)
    assert rec.status == "finished", rec  # the worker saw its pipe close and recorded its own exit
    assert supervisor.live_tree(rec) == [] and leftovers.find() == []
