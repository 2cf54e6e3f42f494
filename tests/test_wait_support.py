"""Registry records of live jobs for the wait, prune and strip tests: a real process (a sleeping Python) stands for
the job, recorded with its pid and start time as engine.runner records ms-swift, so the registry derives `running`
from it and `lost` once it is gone."""
from __future__ import annotations

import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import psutil

from engine import runs


@contextmanager
def live_record(kind: str, argv: list[str], cwd: Path, *, run_dir: Path | None = None, label: str = "",
                meta: dict | None = None):
    """A registry record whose process is alive for the `with` block (then it is killed: the record reads `lost`
    unless the test ended it otherwise)."""
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    try:
        created = psutil.Process(holder.pid).create_time()
        rec = runs.create(kind, argv, str(cwd), label=label)

        def running(r: runs.RunRecord) -> None:
            r.status, r.pid, r.create_time = "running", holder.pid, created
            r.run_dir = str(run_dir) if run_dir else None
            r.meta.update(meta or {})

        yield runs.update(rec.id, running)
    finally:
        holder.kill()
        holder.wait()


def end(rec: runs.RunRecord, status: str, exit_code: int | None, **meta) -> runs.RunRecord:
    """Record the end of a run as engine.runner does."""
    import time

    def ended(r: runs.RunRecord) -> None:
        r.status, r.exit_code, r.ended_at = status, exit_code, time.time()
        r.meta.update(meta)

    return runs.update(rec.id, ended)
