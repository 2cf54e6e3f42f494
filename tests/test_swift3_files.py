"""ms-swift 3.x beside 4.x, without a 3.x environment: the files and console a real ms-swift 3.12.6 run wrote
(tests/data/ms-swift-3.12), the stop a run without graceful_exit gets, the command value that keeps the `swift` it
ran, the `--swift` option's errors, and the demo files both transformers read. tests/test_swift3_env.py drives a
real 3.12.6 environment."""
from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from engine import runs, supervisor
from engine.checkpoints import scan_run
from engine.command import Command
from engine.ingest import RunReader, metrics_table
from engine.ops import jobs
from engine.ops.launch import plan_resume
from test_tui_support import FIXED_START, fixed_clock, until, wait_for

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "tests" / "data" / "ms-swift-3.12"
SWIFT3 = "/opt/venv-swift3/bin/swift"  # the neutral path the recording names


def jsonl(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "logging.jsonl").read_text().splitlines()]


def cli(*args: str, home: Path, env: dict | None = None, cwd: Path = REPO) -> subprocess.CompletedProcess:
    environ = {**os.environ, "SWIFTDECK_HOME": str(home), "PYTHONPATH": str(REPO), **(env or {})}
    return subprocess.run([sys.executable, "-m", "tui.cli", *args], capture_output=True, text=True, env=environ,
                          cwd=cwd, timeout=120, stdin=subprocess.DEVNULL)


def copy_recording(run_dir: Path) -> None:
    """The recorded 3.x run folder; its checkpoints get an empty but whole adapter weights file (left out of the
    recording to keep it small; a checkpoint without weights is incomplete and never `last`)."""
    shutil.copytree(DATA / "run-v0", run_dir)
    for ckpt in run_dir.glob("checkpoint-*"):
        (ckpt / "adapter_model.safetensors").write_bytes((2).to_bytes(8, "little") + b"{}")


def recorded_run(where: Path) -> runs.RunRecord:
    """A finished registry record of the recorded 3.x run, as `swiftdeck --swift <3.x> train` made it."""
    out = where / "output"
    run_dir = out / "v0-20261130-121503"
    copy_recording(run_dir)
    args = json.loads((run_dir / "args.json").read_text())
    argv = [SWIFT3, "sft", "--model", args["model"], "--model_type", "qwen2", "--template", "qwen2_5",
            "--train_type", "lora", "--output_dir", str(out)]
    rec = runs.create("sft", argv, str(where), label="3.x", output_dir=str(out))
    rec.console_log.write_bytes((DATA / "sft-demo.stdout").read_bytes() + (DATA / "sft-demo.stderr").read_bytes())

    def fill(r: runs.RunRecord) -> None:
        r.run_dir, r.status, r.exit_code = str(run_dir), "finished", 0
        r.started_at, r.ended_at = FIXED_START, FIXED_START + 60
    return runs.update(rec.id, fill)


def test_recorded_3x_console_and_run_folder_read_like_4x(tmp_path):
    run_dir = tmp_path / "v0-20261130-121503"
    copy_recording(run_dir)
    records = jsonl(run_dir)
    train = [r for r in records if "loss" in r]
    evals = [r for r in records if "eval_loss" in r]

    console = tmp_path / "console.log"
    console.write_bytes((DATA / "sft-demo.stdout").read_bytes() + (DATA / "sft-demo.stderr").read_bytes())
    for reader in (RunReader(console_log=console), RunReader(console_log=console, run_dir=run_dir)):
        reader.poll()
        rows = metrics_table(reader.state)
        assert [r["step"] for r in rows if r.get("loss") is not None] == [2 * i or 1 for i in range(9)]
        assert [r["loss"] for r in rows if r.get("loss") is not None] == pytest.approx([r["loss"] for r in train])
        assert [(r["step"], r["eval_loss"]) for r in rows if r.get("eval_loss") is not None] == \
            [(10, pytest.approx(evals[0]["eval_loss"])), (16, pytest.approx(evals[1]["eval_loss"]))]
        assert reader.state.finished.summary["train_loss"] == pytest.approx(5.45884261)
        assert reader.state.progress.max_steps == 16
        assert set(reader.state.checkpoints) == {10, 16}

    folder = scan_run(run_dir)  # 3.x: args.json says train_type; no last-checkpoint link
    assert not (run_dir / "last-checkpoint").exists()
    assert folder.tuner_type == "lora" and (folder.model_type, folder.template) == ("qwen2", "qwen2_5")
    assert [c.name for c in folder.checkpoints] == ["checkpoint-10", "checkpoint-16"]
    last = folder.checkpoints[-1]
    assert last.is_last and last.lora_rank == 8 and last.loss == pytest.approx(train[-1]["loss"])


def test_dashboard_shows_a_3x_run(home, tmp_path):
    from tui.app import SwiftdeckApp
    from tui.model import RunSource
    from tui.widgets.checkpoints import CheckpointsPane
    from tui.widgets.header import RunHeader
    from tui.widgets.loss import LossPane

    rec = recorded_run(tmp_path)
    records = jsonl(Path(rec.run_dir))

    async def go():
        app = SwiftdeckApp(RunSource.of_record(rec), clock=fixed_clock, remember_theme=False)
        async with app.run_test(size=(160, 48)) as pilot:
            pane = app.query_one(CheckpointsPane)
            assert await until(pilot, lambda: app.query_one(LossPane).has_metrics and pane.folders)
            header = app.query_one(RunHeader).render_info().plain
            assert "finished" in header and "16/16" in header
            loss = app.query_one(LossPane)
            assert loss.loss.ys == [r["loss"] for r in records if "loss" in r]
            assert loss.eval.xs == [10, 16] and loss.best_eval()[0] == 10
            assert [[c.name for c in f.checkpoints] for f in pane.folders] == [["checkpoint-10", "checkpoint-16"]]
    asyncio.run(go())


def test_a_record_keeps_the_swift_it_ran_for_resume(home, tmp_path):
    rec = recorded_run(tmp_path)
    cmd = Command.of_record(rec)
    assert cmd.swift == SWIFT3 and cmd.flag("--train_type") == "lora"
    assert cmd.display().startswith(f"{SWIFT3} sft --model ")  # another environment's swift is named
    ckpt = Path(rec.run_dir) / "checkpoint-10"  # checkpoint-16 is the run's last step: a resume trains nothing
    for name in ("optimizer.pt", "scheduler.pt"):  # left out of the recording to keep it small
        (ckpt / name).write_bytes(b"state")
    [resumable] = [c for c in scan_run(Path(rec.run_dir)).checkpoints if c.resumable]
    resumed, _ = plan_resume(rec, resumable)
    assert resumed.swift == SWIFT3 and resumed.argv()[:2] == [SWIFT3, "sft"]
    from engine.ops.launch import check_launch  # that environment is not on this machine: refused in one line

    check = check_launch(resumed, datasets=False)
    assert not check.ok and check.blocker.endswith(f"the ms-swift environment of this command: no such file: "
                                                   f"{SWIFT3} (give the path of the `swift` command of an environment)")
    own = Command.parse(["swift", "sft", "--model", "m"], cwd=tmp_path)
    assert own.swift == "" and own.display() == "swift sft --model m"


def test_launch_form_names_another_environment(tmp_path):
    from tui.actions import LaunchForm, build_launch

    plan = build_launch(LaunchForm(model="/m", dataset="/d.json", swift="~/venvs/swift3/bin/swift"), gpu=False,
                        cwd=tmp_path)
    assert plan.swift == str(Path.home() / "venvs/swift3/bin/swift")
    assert plan.display().startswith(f"{plan.swift} sft --model /m")
    assert build_launch(LaunchForm(model="/m", dataset="/d.json"), gpu=False).swift == ""


def test_stop_words_say_what_a_stop_saves(home, tmp_path):
    rec = recorded_run(tmp_path)
    assert "no checkpoint is saved at the next step" in jobs.stop_words(rec)
    graceful = runs.create("sft", ["swift", "sft", "--callbacks", "graceful_exit"], str(tmp_path))
    assert jobs.stop_words(graceful) == "saves a checkpoint at the next step, then exits"


# A stand-in trainer at a path like ms-swift's (swift/cli/sft.py), so that stop() finds it as the trainer: it logs
# steps until a KeyboardInterrupt, as ms-swift 3.x does on SIGINT.
FAKE_TRAINER = textwrap.dedent("""\
    import signal, sys, time
    print("SIGINT disposition:", signal.getsignal(signal.SIGINT), flush=True)
    step = 0
    while True:
        step += 1
        print(f"step {step}", flush=True)
        time.sleep(0.2)
""")

# A swiftdeck started in the background by a shell: SIGINT ignored, as `cmd &` does.
BACKGROUND_LAUNCH = textwrap.dedent("""\
    import signal, sys
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    from engine import supervisor
    rec = supervisor.launch_argv("sft", [sys.executable, sys.argv[1]], cwd=sys.argv[2])
    print(rec.id)
""")


def test_stop_without_graceful_exit_interrupts_a_trainer_started_in_the_background(home, tmp_path):
    """ms-swift 3.x has no graceful_exit: a stop is SIGINT to the trainer. A swiftdeck started with `&` hands SIGINT
    down ignored; the runner gives ms-swift the default back, so the stop works at once instead of escalating."""
    trainer = tmp_path / "swift" / "cli" / "sft.py"
    trainer.parent.mkdir(parents=True)
    trainer.write_text(FAKE_TRAINER)
    env = {**os.environ, "SWIFTDECK_HOME": str(home), "PYTHONPATH": str(REPO)}
    out = subprocess.run([sys.executable, "-c", BACKGROUND_LAUNCH, str(trainer), str(tmp_path)], env=env,
                         capture_output=True, text=True, timeout=60, cwd=REPO)
    assert out.returncode == 0, out.stderr
    rec = runs.load(out.stdout.strip().splitlines()[-1])
    assert wait_for(lambda: "step 2" in rec.console_log.read_text(), timeout=30)
    assert "SIGINT disposition: <built-in function default_int_handler>" in rec.console_log.read_text()

    report = supervisor.stop(rec, timeout_s=20)
    assert report.steps[0].startswith("SIGINT → trainer [")
    assert len(report.steps) == 1 and report.clean, report.steps  # no escalation: the SIGINT was seen
    assert "KeyboardInterrupt" in rec.console_log.read_text()
    assert runs.load(rec.id).status == "stopped"


def test_swift_option_errors_are_one_line(home, tmp_path):
    bad = cli("--swift", str(tmp_path / "nope"), "runs", home=home)
    assert bad.returncode == 2 and bad.stdout == ""
    assert bad.stderr.strip() == f"swiftdeck: --swift {tmp_path / 'nope'}: no such file: {tmp_path / 'nope'} " \
                                 "(give the path of the `swift` command of an environment)"
    folder = cli("runs", "--swift", str(tmp_path), home=home)
    assert folder.returncode == 2 and "no `swift` command in" in folder.stderr
    assert len(folder.stderr.strip().splitlines()) == 1

    # an environment without ms-swift: a venv (no pip) with a `swift` script
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    (venv / "bin" / "swift").write_text(f"#!{venv / 'bin' / 'python'}\nprint('not ms-swift')\n")
    (venv / "bin" / "swift").chmod(0o755)
    empty = cli("--swift", str(venv / "bin" / "swift"), "runs", home=home)
    assert empty.returncode == 2
    assert empty.stderr.strip().endswith(f"ms-swift is not installed for {venv / 'bin' / 'python'} (the Python of "
                                         f"{venv / 'bin' / 'swift'})")

    # the same through the environment variable: train refuses in one line, nothing is recorded
    via_env = cli("train", "--", "--model", "m", home=home, env={"SWIFTDECK_SWIFT": str(tmp_path / "gone")})
    assert via_env.returncode == 2
    assert f"SWIFTDECK_SWIFT={tmp_path / 'gone'}: no such file" in via_env.stderr
    assert "Traceback" not in via_env.stderr + via_env.stdout
    assert not list((home / "runs").glob("*/record.json"))


def test_demo_files_carry_what_transformers_4_reads(demo_assets):
    """transformers 4.57 (ms-swift 3.12) fails on an `extra_special_tokens` list and ignores `rope_parameters`
    (it would use rope_theta 10000): the demo writes the 4.x keys too, with the same values."""
    tok = json.loads((demo_assets.model / "tokenizer_config.json").read_text())
    assert not isinstance(tok.get("extra_special_tokens"), list)
    assert tok["additional_special_tokens"] == ["<|im_start|>", "<|im_end|>"]
    cfg = json.loads((demo_assets.model / "config.json").read_text())
    assert cfg["rope_theta"] == cfg["rope_parameters"]["rope_theta"] == 1e6
    assert cfg["torch_dtype"] == cfg["dtype"] == "float32"
