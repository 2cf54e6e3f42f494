"""A real sweep on the demo model: run A through `swiftdeck train --wait` (its exit status is the run's), run B
resumed from A's checkpoint-10 with another learning rate. While B trains: `swiftdeck compare` joins B's curve to
A's at step 10 (the steps continue), `swiftdeck wait` times out with 124, prune keeps what B writes and what it was
started from. Then B is stopped: its own `train --wait` and a `swiftdeck wait` from another process both exit 1
and say so."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from engine import demo, runs
from engine.command import set_flag
from engine.ingest import RunReader

pytestmark = pytest.mark.slow
RUN_TIMEOUT = 420


def env(home: Path) -> dict[str, str]:
    return {**os.environ, "SWIFTDECK_HOME": str(home)}


def swiftdeck(*args: str, home: Path, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tui.cli", *args], env=env(home), capture_output=True, text=True,
                          timeout=timeout, cwd=cwd, stdin=subprocess.DEVNULL)


from test_engine_e2e import wait_for  # noqa: E402  (waits for a condition, names what it waited for)


def sweep_args(assets, out: Path, **kw) -> list[str]:
    args = demo.demo_sft_args(assets, out, save_steps=5, logging_steps=1, epochs=kw.pop("epochs"))
    args = set_flag(args, "--save_total_limit", ["10"])
    for flag, value in kw.items():
        args = set_flag(args, f"--{flag}", [value])
    return args


def test_a_resumed_run_continues_its_parent_and_scripts_are_told_how_runs_end(home, demo_assets, tmp_path):
    out = tmp_path / "output"
    a = swiftdeck("train", "--wait", "--label", "lr 3e-3", "--", *sweep_args(demo_assets, out, epochs=4),
                  home=home, cwd=tmp_path, timeout=RUN_TIMEOUT)
    run_a = re.search(r"started run (\S+)", a.stdout).group(1)
    rec_a = runs.load(run_a)
    assert (a.returncode, rec_a.status, rec_a.exit_code) == (0, "finished", 0), a.stdout[-2000:] + a.stderr
    parent_ckpt = Path(rec_a.run_dir) / "checkpoint-10"
    assert parent_ckpt.is_dir()

    b_args = sweep_args(demo_assets, out, epochs=100, learning_rate="1e-3",
                        resume_from_checkpoint=str(parent_ckpt))  # 500 steps: it is stopped long before
    launcher = subprocess.Popen([sys.executable, "-m", "tui.cli", "train", "--wait", "--label", "lr 1e-3 resumed",
                                 "--", *b_args], cwd=tmp_path, env=env(home), stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True)
    waiter = run_b = None
    try:
        run_b = wait_for(lambda: (m := re.search(r"started run (\S+)", launcher.stdout.readline())) and m.group(1),
                         60, "the resumed run to start")
        rec_b = wait_for(lambda: (r := runs.load(run_b)).run_dir and r, RUN_TIMEOUT, "B's run folder")
        run_dir_b = Path(rec_b.run_dir)
        reader = RunReader(console_log=rec_b.console_log)
        wait_for(lambda: reader.poll() is not None and (run_dir_b / "last-checkpoint").is_symlink()
                 and reader.state.metrics and reader.state.metrics[-1].step >= 16, RUN_TIMEOUT,
                 "B to save a checkpoint and log step 16")
        assert runs.load(run_b).active, "B ended before the checks"

        # a script that did not start B waits on it
        waiter = subprocess.Popen([sys.executable, "-m", "tui.cli", "wait", run_b], cwd=tmp_path, env=env(home),
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        timed = swiftdeck("wait", run_b, "--timeout", "1", home=home, cwd=tmp_path)
        assert timed.returncode == 124, timed.stdout + timed.stderr

        # compare while B trains: B continues A's curve at step 10
        cmp = json.loads(swiftdeck("compare", run_a, run_b, "--json", home=home, cwd=tmp_path).stdout)
        ra, rb = cmp["runs"]
        joined = [s for s, _ in rb["joined_loss"]]
        assert (rb["resume_step"], rb["resumed_from"], rb["parent"]) == (10, str(parent_ckpt), run_a)
        assert rb["loss"][0][0] == 11 and joined == list(range(1, joined[-1] + 1)) and joined[-1] >= 16
        assert rb["joined_loss"][:10] == ra["loss"][:10] and rb["joined_loss"][10:] == rb["loss"]
        assert cmp["differing"]["learning_rate"] == [0.003, 0.001]
        assert cmp["differing"]["num_train_epochs"] == [4.0, 100.0]
        assert "resume_from_checkpoint" not in cmp["differing"] and "output_dir" not in cmp["differing"]
        text = swiftdeck("compare", run_a, run_b, home=home, cwd=tmp_path).stdout
        assert re.search(r"^resumed from\s+-\s+#1/checkpoint-10\s*$", text, re.M), text

        # prune keeps what the live run writes or would resume from, and the checkpoint it was started from
        plan_b = json.loads(swiftdeck("prune", run_b, "--keep-last", "0", "--no-keep-best", "--dry-run", "--json",
                                      home=home, cwd=tmp_path).stdout)["plan"]
        newest = max(plan_b["items"], key=lambda i: i["step"])
        assert newest["action"] == "keep" and "in use" in " ".join(newest["reasons"]), plan_b
        plan_a = json.loads(swiftdeck("prune", run_a, "--keep-last", "0", "--no-keep-best", "--dry-run", "--json",
                                      home=home, cwd=tmp_path).stdout)["plan"]
        kept_a = {i["name"]: " ".join(i["reasons"]) for i in plan_a["items"] if i["action"] == "keep"}
        assert list(kept_a) == ["checkpoint-10"] and f"run {run_b} was started from" in kept_a["checkpoint-10"]

        stopped = swiftdeck("stop", run_b, home=home, cwd=tmp_path, timeout=300)
        assert stopped.returncode == 0, stopped.stdout + stopped.stderr
        rest, _ = launcher.communicate(timeout=RUN_TIMEOUT)
        assert launcher.returncode == 1 and f"run {run_b} stopped" in rest, rest[-2000:]
        told, _ = waiter.communicate(timeout=60)
        assert waiter.returncode == 1 and told.startswith(f"run lr 1e-3 resumed ({run_b}) stopped: step "), told
    finally:
        for proc in (launcher, waiter):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()
        if run_b is not None and runs.load(run_b).active:
            subprocess.run([sys.executable, "-m", "tui.cli", "stop", run_b, "--force"], env=env(home),
                           capture_output=True, timeout=120)
