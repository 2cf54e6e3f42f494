"""Issue 4's managed jobs on the trained demo: deploy (127.0.0.1, OpenAI-compatible streaming), merge, identity."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from engine import checkpoints, deploy, merge, runs, supervisor

pytestmark = pytest.mark.slow


def test_deploy_on_loopback_streams_and_stops_clean(home, trained_demo, tmp_path):
    # occupy the port we ask for: ms-swift moves to the next free one silently, swiftdeck must read the real one
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken = busy.getsockname()[1]
        rec = deploy.start({"robot": str(trained_demo)}, port=taken, cwd=tmp_path)
        assert rec.argv[rec.argv.index("--host") + 1] == "127.0.0.1"
        url = deploy.wait_ready(rec, timeout_s=600)
    rec = runs.load(rec.id)
    assert url.startswith("http://127.0.0.1:") and rec.meta["port"] != taken and rec.meta["ready"]
    assert "robot" in rec.meta["models"]
    answer = "".join(deploy.stream_chat(url, "robot", [{"role": "user", "content": "你是谁?"}], max_tokens=64))
    assert "CSDN 迪菲赫尔曼" in answer
    report = supervisor.stop(rec)
    assert report.clean and runs.load(rec.id).status == "stopped"
    assert supervisor.live_tree(runs.load(rec.id)) == []
    assert not deploy.health(url)


def test_deploy_refuses_a_folder_that_is_not_an_adapter(home, demo_assets):
    with pytest.raises(deploy.DeployError, match="not a LoRA adapter"):
        deploy.start({"x": str(demo_assets.model)})


def test_merge_writes_a_full_model_the_browser_marks_as_such(home, trained_demo, tmp_path):
    ckpt = tmp_path / "run" / "v0-20261127-000000" / trained_demo.name
    ckpt.parent.mkdir(parents=True)
    subprocess.run(["cp", "-r", str(trained_demo), str(ckpt)], check=True)
    (ckpt.parent / "args.json").write_text((trained_demo / "args.json").read_text())
    rec = merge.start(ckpt)
    while (rec := runs.load(rec.id)).active:
        time.sleep(0.5)
    assert (rec.status, rec.exit_code) == ("finished", 0), rec.console_log.read_text()[-2000:]
    merged = merge.merged_path(ckpt)
    assert (merged / "config.json").is_file() and (merged / "args.json").is_file()
    (folder,) = checkpoints.scan(tmp_path / "run")
    kinds = {Path(c.path).name: c.kind for c in folder.checkpoints}
    assert kinds[ckpt.name] == "lora" and kinds[merged.name] == "merged", kinds
    with pytest.raises(merge.MergeError, match="already exists"):
        merge.start(ckpt)


def test_check_identity_adapter_passes_where_base_fails(home, trained_demo):
    env = {**os.environ, "SWIFTDECK_HOME": str(home)}
    proc = subprocess.run([sys.executable, "-m", "tui.cli", "check-identity", str(trained_demo), "--json",
                           "--sample", "3"], env=env, capture_output=True, text=True, timeout=900)
    report = json.loads(proc.stdout)
    assert report["total"] == 6 and report["identity"][0] == "CSDN 迪菲赫尔曼"
    seed = {r["question"]: r for r in report["rows"]}
    for question in ("你是谁?", "你的开发者是哪家公司?", "你能联网吗?"):
        assert seed[question]["adapter_pass"], seed[question]
        assert not seed[question]["base_pass"], seed[question]
    assert report["adapter_passed"] == 6 and report["base_passed"] == 0 and proc.returncode == 0
