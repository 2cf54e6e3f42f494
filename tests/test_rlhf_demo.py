"""Issue 11, the offline DPO demo and a real `swift rlhf --rlhf_type dpo` run on the tiny demo model through
swiftdeck: launch (train --kind rlhf), watch (metrics parsed while it runs), graceful stop, resume from the
checkpoint the stop saved, and the trained adapter preferring the chosen answers (check-preference)."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from engine import checkpoints, demo, runs
from engine.dataset_check import check_dataset
from engine.ingest import RunReader

REPO = Path(__file__).resolve().parents[1]
RUN_TIMEOUT = 420


def test_dpo_pairs_are_the_identity_answers_against_a_wrong_identity(demo_assets):
    rows = json.loads(demo_assets.dpo_dataset.read_text(encoding="utf-8"))
    assert rows == demo.dpo_rows() and len(rows) == 26
    answers = dict(demo.SELF_COGNITION)
    for row in rows:
        question, chosen = row["messages"][0]["content"], row["messages"][1]["content"]
        rejected = row["rejected_response"]
        assert answers[question] == chosen and rejected != chosen
        assert "CSDN" not in rejected and "Swift-Robot" not in rejected
        assert ("OpenAI" in rejected or "ChatGPT" in rejected) if question.isascii() else \
            ("阿里云" in rejected or "通义千问" in rejected)
    assert check_dataset(demo_assets.dpo_dataset, rlhf_type="dpo").ok
    prompts = json.loads(demo_assets.prompts.read_text(encoding="utf-8"))
    assert [p["messages"][-1]["role"] for p in prompts] == ["user"] * len(demo.SELF_COGNITION)
    assert check_dataset(demo_assets.prompts, rlhf_type="grpo").ok


def test_demo_rlhf_args(demo_assets, tmp_path):
    args = demo.demo_dpo_args(demo_assets, tmp_path / "out", adapter=tmp_path / "ckpt")
    assert args[:4] == ["--rlhf_type", "dpo", "--beta", "0.1"]
    assert args[args.index("--dataset") + 1] == str(demo_assets.dpo_dataset)
    assert args[-6:] == ["--rpo_alpha", "1", "--adapters", str(tmp_path / "ckpt"), "--ref_adapters",
                         str(tmp_path / "ckpt")]  # from an SFT adapter: keep its answers (SFT loss on the chosen)
    assert "--rpo_alpha" not in demo.demo_dpo_args(demo_assets, tmp_path / "out")
    grpo = demo.demo_grpo_args(demo_assets, tmp_path / "out", steps=3)
    assert grpo[grpo.index("--reward_funcs") + 1:grpo.index("--reward_funcs") + 3] == ["format", "repetition"]
    assert grpo[grpo.index("--max_steps") + 1] == "3" and "--log_completions" in grpo


def swiftdeck(*args: str, home: Path, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "SWIFTDECK_HOME": str(home), "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "tui.cli", *args], env=env, capture_output=True, text=True,
                          timeout=timeout, cwd=cwd)


from test_engine_e2e import wait_for  # noqa: E402  (waits for a condition, names what it waited for)


def margins(reader: RunReader) -> dict[int, float]:
    reader.poll()
    return {m.step: m.values["rewards/margins"] for m in reader.state.metrics if "rewards/margins" in m.values}


@pytest.mark.slow
def test_real_dpo_run_launch_watch_stop_resume(home, demo_assets, tmp_path):
    out = tmp_path / "output"
    args = demo.demo_dpo_args(demo_assets, out, epochs=30, save_steps=100)  # 60 steps; only the stop saves
    proc = swiftdeck("train", "--kind", "rlhf", "--", *args, home=home, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    run_id = re.search(r"started run (\S+)", proc.stdout).group(1)
    rec = runs.load(run_id)
    assert rec.kind == "rlhf" and rec.argv[1:4] == ["rlhf", "--rlhf_type", "dpo"]
    assert rec.argv[-2:] == ["--callbacks", "graceful_exit"]  # swift rlhf takes the graceful-stop callback

    # watch: DPO's own metrics arrive while it runs
    reader = RunReader(console_log=rec.console_log)
    seen = wait_for(lambda: (m := margins(reader)) and max(m) >= 3 and m, RUN_TIMEOUT, "step 3")
    assert runs.load(run_id).active and seen[1] == 0.0

    stopped = swiftdeck("stop", run_id, home=home, cwd=tmp_path)
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    rec = wait_for(lambda: (r := runs.load(run_id)) and not r.active and r, RUN_TIMEOUT, "the stop")
    assert rec.status == "stopped"
    (folder,) = checkpoints.scan(out)
    (ckpt,) = folder.checkpoints  # save_steps 100: the only checkpoint is the one the stop saved
    assert 3 <= ckpt.step < 60 and ckpt.resumable and folder.kind == "rlhf/dpo"
    grown = margins(reader)
    assert grown[max(grown)] > grown[1]

    # resume through the same path as the dashboard's R: same command, env and cwd, from that checkpoint
    from engine.ops import launch

    cmd, changes = launch.plan_resume(rec, ckpt)
    assert cmd.kind == "rlhf" and cmd.flag("--rlhf_type") == "dpo"
    assert any("continues from step" in c for c in changes)
    resumed = launch.start(launch.check_launch(cmd))
    rec2 = wait_for(lambda: (r := runs.load(resumed.id)) and not r.active and r, RUN_TIMEOUT, "the resumed run")
    assert rec2.status == "finished", rec2.console_log.read_text(errors="replace")[-2000:]
    after = margins(RunReader(console_log=rec2.console_log))
    assert min(after) == ckpt.step + 1 and max(after) == 60  # it continued, it did not start over
    assert after[60] > 5

    # the adapter prefers the chosen answers, measured apart from training (log-probs, reference vs adapter)
    final = checkpoints.scan(out)[-1].checkpoints[-1]
    check = swiftdeck("check-preference", str(final.path), "--json", home=home, cwd=tmp_path)
    assert check.returncode == 0, check.stdout + check.stderr
    report = json.loads(check.stdout)
    assert report["moved"] == len(report["pairs"]) == 26 and report["prefers"] == 26
    assert report["mean_gap"] > report["mean_gap_ref"] and report["mean_reward_margin"] > 1
