"""engine.ops: one path per use case for the CLI and the dashboard. Real ms-swift introspection, real files, the
real `swiftdeck` CLI in a subprocess; no training here (see test_engine_e2e for the runs)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from engine import runs
from engine.command import Command, CommandError

REPO = Path(__file__).resolve().parents[1]


def swiftdeck(*args: str, home: Path, cwd: Path | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    env = {**os.environ, "SWIFTDECK_HOME": str(home)}
    return subprocess.run([sys.executable, "-m", "tui.cli", *args], env=env, capture_output=True, text=True,
                          timeout=timeout, cwd=cwd or REPO)


# ---------------------------------------------------------------- the command value (issue 8 item 13)


@pytest.mark.parametrize("line", [
    "swift sft --model m --dataset d.json",
    "CUDA_VISIBLE_DEVICES=0 NPROC_PER_NODE=2 swift sft --model m --dataset d.json",
    "-- swift sft --model m \\\n  --dataset d.json",
    "/opt/conda/bin/swift sft --model m --dataset d.json",
    "--model m --dataset d.json",
])
def test_a_pasted_tutorial_line_becomes_one_command(line, tmp_path):
    cmd = Command.parse(line, cwd=tmp_path)
    assert cmd.kind == "sft" and cmd.args == ("--model", "m", "--dataset", "d.json") and cmd.cwd == str(tmp_path)
    if "CUDA" in line:
        assert cmd.env == {"CUDA_VISIBLE_DEVICES": "0", "NPROC_PER_NODE": "2"}
        assert cmd.display().startswith("CUDA_VISIBLE_DEVICES=0 NPROC_PER_NODE=2 swift sft --model m")


@pytest.mark.parametrize("line,message", [
    ("swift infer --model m", "this is `swift infer`, not `swift sft`"),
    ("python train.py --model m", "unexpected 'python'"),
    ("swift sft --system 'unclosed", "cannot read the command line"),
])
def test_a_command_line_that_is_not_swift_sft_is_refused_in_one_line(line, message, tmp_path):
    with pytest.raises(CommandError, match=message):
        Command.parse(line, cwd=tmp_path)


def test_flags_are_edited_on_the_value_not_by_slicing(tmp_path):
    cmd = Command.parse("swift sft --model m --callbacks mine --output_dir out", cwd=tmp_path)
    graceful = cmd.with_graceful_exit()
    assert graceful.flags("--callbacks") == ["mine", "graceful_exit"]
    assert graceful.with_graceful_exit() == graceful
    assert cmd.output_dir == str(tmp_path / "out")
    assert cmd.with_extra(["--output_dir=o2", "--lora_rank", "4"]).args[-2:] == ("--lora_rank", "4")
    assert cmd.with_extra(["--output_dir=o2"]).flag("--output_dir") == "o2"


def test_train_accepts_the_pasted_line_with_its_environment(introspected_home, demo_assets, tmp_path):
    """Issue 8 item 13: `swiftdeck train -- CUDA_VISIBLE_DEVICES=0 swift sft ...` is the tutorial's line as is."""
    bad = tmp_path / "rows.jsonl"
    bad.write_text('{"messages": [{"role": "user", "content": "hi"}]}\n{not json\n')
    proc = swiftdeck("train", "--fix", "--", "CUDA_VISIBLE_DEVICES=0", "swift", "sft", "--model",
                     str(demo_assets.model), "--train_type", "lora", "--dataset", str(bad), home=introspected_home,
                     cwd=tmp_path)
    out = proc.stdout + proc.stderr
    assert "unexpected 'swift sft'" not in out and "environment: CUDA_VISIBLE_DEVICES=0" in out
    assert "--train_type is called --tuner_type" in out
    # issue 8 item 4: the dataset check runs before a CLI launch too, and its error blocks it
    assert proc.returncode == 2 and "not launched" in proc.stderr and "rows.jsonl" in out, out
    assert not list((introspected_home / "runs").glob("*/record.json"))


# ---------------------------------------------------------------- resolve / newest (issue 8 item 1)


def _fake_record(home: Path, run_dir: Path, started_at: float, output_dir: Path) -> runs.RunRecord:
    rec = runs.create("sft", ["swift", "sft", "--output_dir", str(output_dir)], str(home), output_dir=str(output_dir))
    return runs.update(rec.id, lambda r: (setattr(r, "status", "finished"), setattr(r, "exit_code", 0),
                                          setattr(r, "run_dir", str(run_dir)), setattr(r, "started_at", started_at)))


def test_output_dir_opens_the_newest_run_under_it(home, tmp_path, swift_fixtures):
    import shutil

    from engine.ops.runs import newest_run

    mine, demo = tmp_path / "mine", tmp_path / "demo-output"
    shutil.copytree(swift_fixtures / "run-v2", mine / "v0-20261127-000000", symlinks=True)
    shutil.copytree(swift_fixtures / "run-v2", demo / "v0-20261128-000000", symlinks=True)
    _fake_record(home, demo / "v0-20261128-000000", time.time(), demo)  # the newest of the registry: the demo
    assert newest_run(mine, under=True).run_dir == (mine / "v0-20261127-000000").resolve()
    assert newest_run(mine).record is not None  # without --output-dir: the newest run anywhere
    older = _fake_record(home, mine / "v0-20261127-000000", time.time() - 3600, mine)
    assert newest_run(mine, under=True).record.id == older.id  # a record claims it: the record is shown


# ---------------------------------------------------------------- one CLI tree (issue 8 item 5)


def test_help_lists_every_command_and_the_dashboard_options(home):
    top = swiftdeck("--help", home=home)
    assert top.returncode == 0
    for word in ("serve", "attach", "demo", "chat", "--output-dir", "--theme", "--readonly", "train", "leftovers"):
        assert word in top.stdout, word
    attach = swiftdeck("attach", "--help", home=home)
    assert attach.returncode == 0 and "open a run in the dashboard" in attach.stdout.lower()
    for cmd in ("serve", "demo", "chat", "train", "stop", "deploy", "merge", "check-identity"):
        proc = swiftdeck(cmd, "--help", home=home)
        assert proc.returncode == 0 and proc.stdout.startswith(f"usage: swiftdeck {cmd}"), (cmd, proc.stderr)


# ---------------------------------------------------------------- model resolution (issue 8 item 2)


@pytest.mark.slow
def test_chat_with_a_local_folder_resolves_it_like_train(introspected_home, demo_assets):
    proc = swiftdeck("chat", "--model", str(demo_assets.model), "--once", "你是谁?", "--max_new_tokens", "4",
                     home=introspected_home, timeout=600)
    assert "Failed to automatically match" not in proc.stderr, proc.stderr[-2000:]
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "model_type" not in proc.stderr.split("\n")[-1]


def test_model_settings_match_the_training_proposal(introspected_home, demo_assets):
    from engine import swift_args

    assert swift_args.model_settings(demo_assets.model) == ("qwen2", "qwen2_5")
    assert swift_args.model_settings(demo_assets.model, model_type="qwen2", template="chatml") == ("qwen2", "chatml")
    assert swift_args.model_settings("Qwen/Qwen2.5-7B-Instruct") == (None, None)  # a hub id: ms-swift decides


# ---------------------------------------------------------------- checkpoints in use (issue 14 item 3)


def _ckpt(run_dir: Path, step: int, complete: bool = True) -> Path:
    path = run_dir / f"checkpoint-{step}"
    path.mkdir(parents=True)
    (path / "adapter_config.json").write_text("{}")
    if complete:
        (path / "adapter_model.safetensors").write_bytes(b"\0" * 64)
    return path


def test_a_live_runs_newest_and_half_written_checkpoints_are_never_deleted(home, tmp_path):
    from engine.ops import checkpoints as ops

    run_dir = tmp_path / "output" / "v0-20261130-000000"
    c5, c10, c20, c30 = _ckpt(run_dir, 5), _ckpt(run_dir, 10), _ckpt(run_dir, 20), _ckpt(run_dir, 30, complete=False)
    os.symlink("checkpoint-10", run_dir / "last-checkpoint")  # ms-swift is still writing 20 and 30
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        import psutil

        rec = runs.create("sft", ["swift", "sft"], str(tmp_path))
        runs.update(rec.id, lambda r: (setattr(r, "run_dir", str(run_dir)), setattr(r, "pid", holder.pid),
                                       setattr(r, "create_time", psutil.Process(holder.pid).create_time()),
                                       setattr(r, "status", "running")))
        for path, why in ((c30, "newest checkpoint"), (c20, "still writing it"), (c10, "would resume from")):
            with pytest.raises(ops.CheckpointRefused, match=why):
                ops.delete_checkpoint(path)
            with pytest.raises(ops.CheckpointRefused, match=why):
                ops.strip_optimizer(path)
            assert path.exists()
        assert ops.delete_checkpoint(c5) > 0 and not c5.exists()
    finally:
        holder.kill()
        holder.wait()
    assert ops.delete_checkpoint(c30) >= 0 and not c30.exists()  # the run has ended: allowed


def test_a_checkpoint_loaded_by_a_deploy_is_not_deleted(home, tmp_path):
    from engine.ops import checkpoints as ops

    ckpt = _ckpt(tmp_path / "out" / "v0-x", 5)
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        import psutil

        rec = runs.create("deploy", ["swift", "deploy", "--adapters", f"a={ckpt}"], str(tmp_path))
        runs.update(rec.id, lambda r: (setattr(r, "pid", holder.pid), setattr(r, "status", "running"),
                                       setattr(r, "create_time", psutil.Process(holder.pid).create_time())))
        with pytest.raises(ops.CheckpointRefused, match="loaded by deploy job"):
            ops.delete_checkpoint(ckpt)
    finally:
        holder.kill()
        holder.wait()


@pytest.mark.parametrize("argv,message", [
    (["checkpoints", "/etc/hostname"], "is a file: give the output folder"),
    (["metrics", "/etc"], "no logged step in /etc"),
    (["stop", "../../etc"], "no swiftdeck run"),
])
def test_bad_paths_are_one_line_not_a_traceback(argv, message, home):
    """Issue 14 item 12: each of these printed a traceback (or an empty table with exit 0)."""
    proc = swiftdeck(*argv, home=home)
    err = proc.stderr.strip()
    assert proc.returncode == 2 and err.startswith("swiftdeck: ") and message in err and "\n" not in err, err
    assert "Traceback" not in proc.stdout + proc.stderr
