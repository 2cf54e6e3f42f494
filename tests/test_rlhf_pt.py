"""Issue 11, `swift pt` as a first-class run: a real `swift pt` on the tiny demo model through `swiftdeck train
--kind pt --wait`, then `runs`, `metrics` and `checkpoints` say it is a pt run."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from engine import demo

REPO = Path(__file__).resolve().parents[1]


def swiftdeck(*args: str, home: Path, cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "SWIFTDECK_HOME": str(home), "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "tui.cli", *args], env=env, capture_output=True, text=True,
                          timeout=timeout, cwd=cwd)


@pytest.mark.slow
def test_real_pt_run_is_shown_as_pt(home, demo_assets, tmp_path):
    out = tmp_path / "output"
    args = demo.demo_sft_args(demo_assets, out, epochs=2, save_steps=10, logging_steps=1)  # 10 steps
    at = args.index("--system")
    del args[at:at + 2]  # plain-text pretraining takes no system prompt (refused by the check, test_rlhf_checks)
    proc = swiftdeck("train", "--kind", "pt", "--wait", "--", *args, home=home, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    run_id = re.search(r"started run (\S+)", proc.stdout).group(1)
    assert run_id.startswith("pt-")

    listed = json.loads(swiftdeck("runs", "--json", home=home, cwd=tmp_path).stdout)
    (row,) = [r for r in listed if r["id"] == run_id]
    assert row["kind"] == "pt" and row["status"] == "finished", row

    metrics = swiftdeck("metrics", run_id, home=home, cwd=tmp_path)
    assert metrics.returncode == 0 and metrics.stdout.startswith("kind: pt"), metrics.stdout[:500]
    assert re.search(r"^\s+10\s", metrics.stdout, re.M)  # the last step's row

    table = swiftdeck("checkpoints", str(out), home=home, cwd=tmp_path)
    assert table.returncode == 0 and " pt lora " in table.stdout.splitlines()[0], table.stdout
    assert "checkpoint-10" in table.stdout
