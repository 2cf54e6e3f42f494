"""Real ms-swift with two ranks on CPU: `swiftdeck train --nproc 2` runs `swift sft` under torchrun (gloo) on the
demo model; both ranks are recorded, a graceful stop reaches both and saves a checkpoint, the resume keeps the
run's environment and goes on from that step with two ranks again, a force stop leaves nothing."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from test_engine_e2e import wait_for as e2e_wait_for

from engine import checkpoints, demo, ranks, runs, supervisor
from engine.ops import launch

pytestmark = [
    pytest.mark.slow,
    # Two real ms-swift ranks on 2 CPU cores hung once in 7 runs under heavy load (cause not found yet): run it on
    # demand (SWIFTDECK_TEST_TWO_RANKS=1) until that is understood, so one hang cannot block the whole suite.
    pytest.mark.skipif(os.environ.get("SWIFTDECK_TEST_TWO_RANKS") != "1",
                       reason="two real ranks on CPU: set SWIFTDECK_TEST_TWO_RANKS=1 (hung once in 7 runs)"),
    # each phase is bounded (below, ~1100 s in all) so that a stall fails inside the test with the run's state and
    # processes, before pytest-timeout (1200 s here, 900 s for the suite) kills it with nothing but the test's stack
    pytest.mark.timeout(1200),
]
TIMEOUT = 300  # per wait; 8 runs here took 30-80 s in all (2 cores shared with other test runs)
STOP_TIMEOUT = 120


def processes(rec: runs.RunRecord) -> str:
    """Each live process of the run: pid, state, where the kernel has it waiting, its command line (what a stall
    looked like)."""
    out = []
    for proc in supervisor.live_tree(rec):
        try:
            wchan = Path(f"/proc/{proc.pid}/wchan").read_text()
        except OSError:
            wchan = "?"
        try:
            out.append(f"{proc.pid} {proc.status()} wchan={wchan} cpu={proc.cpu_times().user:.1f}s "
                       f"{' '.join(proc.cmdline())[:160]}")
        except Exception as exc:  # gone meanwhile
            out.append(f"{proc.pid} {exc!r}")
    return "\n".join(out) or "no live process"


def wait_for(predicate, timeout: float, what: str):
    return e2e_wait_for(predicate, timeout, what, interval=0.5)


def logged_steps(rec: runs.RunRecord) -> list[int]:
    if not rec.run_dir or not (Path(rec.run_dir) / "logging.jsonl").exists():
        return []
    rows = [json.loads(line) for line in (Path(rec.run_dir) / "logging.jsonl").read_text().splitlines() if line]
    return [int(r["global_step/max_steps"].split("/")[0]) for r in rows if "loss" in r]


def training_with_two_ranks(run_id: str, steps: int) -> runs.RunRecord:
    def ready():
        rec = runs.load(run_id)
        return rec if len(logged_steps(rec)) >= steps and len(ranks.recorded(rec)) == 2 else None

    try:
        return wait_for(ready, TIMEOUT, f"{steps} logged steps with two ranks recorded")
    except AssertionError as exc:
        rec = runs.load(run_id)
        raise AssertionError(f"{exc}: {rec.status}, steps {logged_steps(rec)}, ranks {rec.meta.get('ranks')}, "
                             f"processes:\n{processes(rec)}\n"
                             f"console: {rec.console_log.read_text(errors='replace')[-3000:]}") from None


def test_two_ranks_on_cpu_graceful_stop_resume_force_stop(home, demo_assets, tmp_path):
    out = tmp_path / "output"
    args = demo.demo_sft_args(demo_assets, out, epochs=100, logging_steps=1, save_steps=1000)
    env = {**os.environ, "SWIFTDECK_HOME": str(home)}
    env.pop("CUDA_VISIBLE_DEVICES", None)
    proc = subprocess.run([sys.executable, "-m", "tui.cli", "train", "--nproc", "2", "--", *args], env=env,
                          capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "environment: NPROC_PER_NODE=2" in proc.stdout and "(DDP, 2 processes" in proc.stdout
    run_id = re.search(r"started run (\S+)", proc.stdout).group(1)
    try:
        _stop_resume_force(run_id, out)
    finally:  # a failing check leaves no rank behind
        for rec in runs.all_runs():
            if rec.active:
                supervisor.stop(rec, force=True, timeout_s=5)


def _stop_resume_force(run_id: str, out: Path) -> None:
    rec = training_with_two_ranks(run_id, 3)
    found = ranks.recorded(rec)
    assert [(r.rank, r.local_rank, r.world_size, r.gpu) for r in found] == [(0, 0, 2, "0"), (1, 1, 2, "1")]
    assert all("swift/cli/sft.py" in " ".join(p.cmdline()) for _, p in ranks.live(rec))
    assert [pid for pid, _ in ranks.recorded_agents(rec)] and rec.pid not in [r.pid for r in found]

    report = supervisor.stop(rec, timeout_s=STOP_TIMEOUT)
    assert report.clean, f"{report}\nprocesses:\n{processes(rec)}"
    assert report.steps[0] == f"SIGUSR1 → trainer rank 0 pid {found[0].pid}, rank 1 pid {found[1].pid}"
    rec = runs.load(run_id)
    assert rec.status == "stopped"
    (folder,) = checkpoints.scan(out)
    ckpt = folder.checkpoints[-1]
    assert ckpt.complete and ckpt.resumable and ckpt.step >= 3
    assert supervisor.live_tree(rec) == [] and not ranks.live(rec)

    cmd, changes = launch.plan_resume(rec, ckpt)
    assert "keeps the run's environment: NPROC_PER_NODE=2" in changes
    resumed = launch.start(launch.check_launch(cmd))
    assert resumed.env.get("NPROC_PER_NODE") == "2"
    resumed = training_with_two_ranks(resumed.id, 1)
    assert logged_steps(resumed)[0] == ckpt.step + 1  # it went on from the checkpoint the stop saved
    report = supervisor.stop(resumed, force=True)
    assert report.clean, report
    resumed = wait_for(lambda: (r := runs.load(resumed.id)) and not r.active and r, 60, "the resumed run to end")
    assert resumed.status == "stopped" and not ranks.live(resumed) and supervisor.live_tree(resumed) == []
