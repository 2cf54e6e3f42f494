"""swiftdeck driving a real ms-swift 3.12.6 environment beside its own 4.6 one (`swiftdeck --swift PATH`).

Needs a 3.x venv: `make swift3` builds one at ~/.cache/swiftdeck/venv-swift3 (SWIFTDECK_TEST_SWIFT3=<the swift of
another> points elsewhere); without it every test here is skipped and says so. The `slow` tests run real
`swift sft|export|deploy` and the chat worker in that environment on the offline demo.
"""
from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from engine import checkpoints, deploy, runs, supervisor, swift_env
from engine import swift_args as sa
from engine.command import Command
from engine.ingest import RunReader, metrics_table
from engine.ops import launch
from test_swift_args import SYSTEM, tutorial
from test_tui_support import until, wait_for

REPO = Path(__file__).resolve().parents[1]
SWIFT3 = Path(os.environ.get("SWIFTDECK_TEST_SWIFT3") or Path.home() / ".cache/swiftdeck/venv-swift3/bin/swift")


def _env3() -> tuple[swift_env.SwiftEnv | None, str]:
    if not SWIFT3.is_file():
        return None, (f"no ms-swift 3.x environment at {SWIFT3}: `make swift3` builds one "
                      "(SWIFTDECK_TEST_SWIFT3=<its swift> points at another)")
    try:
        env = swift_env.at(SWIFT3)
        version = env.version
    except swift_env.SwiftEnvError as exc:
        return None, f"the ms-swift 3.x environment at {SWIFT3} cannot be used: {exc}"
    if not version.startswith("3."):
        return None, f"{SWIFT3} has ms-swift {version}, not 3.x"
    return env, ""


ENV3, WHY = _env3()
pytestmark = pytest.mark.skipif(ENV3 is None, reason=WHY)


def cli(*args: str, home: Path, cwd: Path = REPO, timeout: float = 900) -> subprocess.CompletedProcess:
    env = {**os.environ, "SWIFTDECK_HOME": str(home), "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "tui.cli", "--swift", str(SWIFT3), *args], capture_output=True,
                          text=True, env=env, cwd=cwd, timeout=timeout, stdin=subprocess.DEVNULL)


@pytest.fixture(scope="session")
def swift3_introspection(tmp_path_factory) -> Path:
    """engine.swift_args' cache of the 3.x environment, made once per session (one subprocess in that venv)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SWIFTDECK_HOME", str(tmp_path_factory.mktemp("introspected-3x-home")))
        sa.introspect("sft", "registry", env=ENV3)
        return sa.cache_dir(ENV3)


@pytest.fixture
def both_home(introspected_home, swift3_introspection) -> Path:
    """`home` with the introspection caches of both environments (4.6 and 3.12) in it."""
    shutil.copytree(swift3_introspection, introspected_home / "cache" / swift3_introspection.name)
    return introspected_home


@pytest.fixture
def workdir(tmp_path) -> Path:
    work = tmp_path / "work"
    work.mkdir()
    from engine.demo import dataset_rows

    (work / "self_cognition.json").write_text(json.dumps(dataset_rows(), ensure_ascii=False))
    return work


def test_each_environment_is_introspected_and_cached_per_its_version(both_home, swift3_introspection, monkeypatch):
    own = swift_env.own()
    assert sa.cache_dir(ENV3) == both_home / "cache" / f"ms-swift-{ENV3.version}" != sa.cache_dir(own)
    three = json.loads((sa.cache_dir(ENV3) / f"sft.v{sa.SCHEMA}.json").read_text())
    four = json.loads((sa.cache_dir(own) / f"sft.v{sa.SCHEMA}.json").read_text())
    assert three["class"] == "TrainArguments" and four["class"] == "SftArguments"  # each asked its own ms-swift
    assert "--train_type" in three["options"] and "--tuner_type" not in three["options"]
    assert "--tuner_type" in four["options"] and "--train_type" not in four["options"]
    assert three["callbacks"] == [] and "graceful_exit" in four["callbacks"]

    assert "--train_type" not in sa.valid_flags("sft")  # swiftdeck's own environment by default
    monkeypatch.setenv(swift_env.ENV_VAR, str(SWIFT3))  # what --swift sets
    assert swift_env.selected() == ENV3 and "--train_type" in sa.valid_flags("sft")
    registry = sa.introspect("registry")["registry"]
    assert registry["model_types"]["qwen2"]["candidate_templates"] == ["qwen"]  # 3.x: one template per type


def test_the_tutorial_line_launches_unchanged_on_3x_and_rewritten_on_4x(both_home, workdir, monkeypatch):
    line = ["swift", "sft", *tutorial("Qwen/Qwen2.5-7B-Instruct")]  # verbatim, for the tutorial's GPU box
    four = launch.check_launch(Command.parse(line, cwd=workdir), cuda=True)
    assert four.ok, four.blocker
    assert "--train_type is called --tuner_type since ms-swift 4.0; rewrote it" in four.args.notes
    assert four.command.flag("--tuner_type") == "lora" and four.command.flag("--train_type") is None

    monkeypatch.setenv(swift_env.ENV_VAR, str(SWIFT3))
    three = launch.check_launch(Command.parse(line, cwd=workdir), cuda=True)
    assert three.ok, three.blocker
    assert three.command.swift == str(SWIFT3) and three.args.env == ENV3
    assert not any("train_type" in note or "tuner_type" in note for note in three.args.notes)
    expected = [str(workdir / v) if v in ("self_cognition.json", "output") else v for v in tutorial("Qwen/Qwen2.5-7B-Instruct")]
    assert list(three.command.args) == expected  # only the relative paths made absolute
    assert not three.args.graceful_exit  # 3.12 has no --callbacks: no graceful_exit is added

    parsed = sa.swift_parse(list(three.command.args), "sft", env=ENV3)  # ms-swift 3.12's own parser
    assert parsed["remaining"] == [] and parsed["values"]["train_type"] == "lora"
    assert parsed["values"]["system"] == SYSTEM
    refused = sa.swift_parse(list(four.command.args), "sft", env=ENV3)  # why 3.x must not get the rewrite
    assert refused["remaining"] == ["--tuner_type", "lora"]


def test_4x_spelling_is_rewritten_for_3x(both_home, demo_assets, tmp_path, monkeypatch):
    """The demo and the launch form write --tuner_type; on 3.x it becomes --train_type, with a note."""
    from engine import demo

    monkeypatch.setenv(swift_env.ENV_VAR, str(SWIFT3))
    cmd = Command("sft", tuple(demo.demo_sft_args(demo_assets, tmp_path / "out")), str(tmp_path))
    check = launch.check_launch(cmd, datasets=False, cuda=False)
    assert check.ok, check.blocker
    assert f"--tuner_type is called --train_type before ms-swift 4.0 (this is ms-swift {ENV3.version}); " \
           "rewrote it" in check.args.notes
    assert check.command.flag("--train_type") == "lora" and check.command.flag("--tuner_type") is None


def test_launch_form_checks_against_the_environment_it_names(both_home, demo_assets):
    from textual.widgets import Input

    from tui.app import SwiftdeckApp
    from tui.screens.launch import LaunchScreen

    async def go():
        app = SwiftdeckApp(None, remember_theme=False)
        async with app.run_test(size=(120, 48)) as pilot:
            await pilot.press("n")
            assert await until(pilot, lambda: isinstance(app.screen, LaunchScreen))
            screen = app.screen
            field = screen.query_one("#f-swift", Input)
            assert str(swift_env.own().swift) in field.placeholder  # empty: swiftdeck's own environment
            screen.query_one("#f-model", Input).value = str(demo_assets.model)
            screen.query_one("#f-dataset", Input).value = str(demo_assets.dataset)
            field.value = str(SWIFT3)
            command = screen.query_one("#launch-command")
            assert await until(pilot, lambda: f"command: {SWIFT3} sft --model" in str(command.render()))
            await pilot.press("ctrl+k")
            check = screen.query_one("#launch-check")
            assert await until(pilot, lambda: "--train_type" in str(check.render()), timeout=120)
            text = str(check.render())
            assert f"--tuner_type is called --train_type before ms-swift 4.0 (this is ms-swift {ENV3.version})" in text
            assert "--model_type qwen2" in text and "--template" not in text.split("fix:")[-1]
    asyncio.run(go())


def test_model_settings_follow_the_environment(both_home, demo_assets, monkeypatch):
    """A local Qwen2 folder: 4.6 needs qwen2 + qwen2_5 (candidate templates); 3.12 needs only qwen2 and picks its
    one template (qwen) itself."""
    assert sa.model_settings(demo_assets.model) == ("qwen2", "qwen2_5")
    assert sa.model_settings(demo_assets.model, env=ENV3) == ("qwen2", None)
    monkeypatch.setenv(swift_env.ENV_VAR, str(SWIFT3))
    assert sa.model_settings(demo_assets.model) == ("qwen2", None)


LOAD = """
import json, sys, transformers
from transformers import AutoConfig, AutoTokenizer
tok = AutoTokenizer.from_pretrained(sys.argv[1])
cfg = AutoConfig.from_pretrained(sys.argv[1])
ids = tok.encode("<|im_start|>user\\n你是谁?<|im_end|>")
print(json.dumps({"transformers": transformers.__version__, "rope_theta": cfg.rope_theta, "first": ids[0],
                  "last": ids[-1], "eos": tok.eos_token, "pad": tok.pad_token}))
"""


def test_demo_model_loads_in_the_3x_transformers(demo_assets):
    proc = subprocess.run([ENV3.python, "-c", LOAD, str(demo_assets.model)], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert got["transformers"].startswith("4.")
    assert got["rope_theta"] == 1e6  # not transformers 4's default of 10000
    assert (got["first"], got["last"], got["eos"], got["pad"]) == (3001, 3002, "<|im_end|>", "<|endoftext|>")


# ---------------------------------------------------------------- real ms-swift 3.12 runs


@pytest.fixture(scope="session")
def trained_demo3(tmp_path_factory) -> Path:
    """The demo trained by `swiftdeck --swift <3.x> demo` (the demo's own recipe, about a minute on 2 cores);
    returns its final checkpoint. SWIFTDECK_TRAINED_DEMO3=<checkpoint of an earlier 3.x demo run> skips it."""
    reuse = os.environ.get("SWIFTDECK_TRAINED_DEMO3")
    if reuse:
        return Path(reuse).absolute()
    home = tmp_path_factory.mktemp("demo3-home")
    proc = cli("demo", home=home)  # no terminal: follows the run until it ends
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    [rec] = [r for r in _records(home) if r.kind == "sft"]
    assert rec.argv[0] == str(SWIFT3) and rec.status == "finished"
    found = checkpoints.scan_run(Path(rec.run_dir)).checkpoints
    return Path(max(found, key=lambda c: c.step).path)


def _records(home: Path) -> list[runs.RunRecord]:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SWIFTDECK_HOME", str(home))
        return runs.all_runs()


@pytest.mark.slow
def test_tutorial_trains_on_3x_and_the_dashboard_reads_its_files(home, demo_assets, tmp_path):
    from tui.app import SwiftdeckApp
    from tui.model import RunSource
    from tui.widgets.checkpoints import CheckpointsPane
    from tui.widgets.header import RunHeader
    from tui.widgets.loss import LossPane

    work = tmp_path / "work"
    work.mkdir()
    shutil.copy(demo_assets.dataset, work / "self_cognition.json")
    line = ["swift", "sft", *tutorial(str(demo_assets.model))]  # verbatim but for the local model
    proc = cli("train", "--fix", "--wait", "--label", "tutorial on 3.x", "--", *line, home=home, cwd=work)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "train_type is called" not in proc.stdout  # 3.x keeps its own flag
    [rec] = runs.all_runs()
    assert rec.argv[:2] == [str(SWIFT3), "sft"] and rec.status == "finished"
    assert rec.argv[rec.argv.index("--train_type") + 1] == "lora"
    assert "--tuner_type" not in rec.argv and "--callbacks" not in rec.argv
    assert launch.NO_GRACEFUL_STOP in rec.notes
    assert f"runs in another environment: ms-swift {ENV3.version} ({SWIFT3})" in rec.notes
    assert f"/{SWIFT3.parent.parent.name}/" in rec.console_log.read_text().splitlines()[0]  # run sh: <3.x python>

    metrics = json.loads(cli("metrics", rec.id, "--json", home=home).stdout)
    rows = [r for r in metrics["metrics"] if r.get("loss") is not None]
    assert rows and rows[0]["step"] == 1 and metrics["summary"]["train_loss"] > 0
    listed = json.loads(cli("checkpoints", str(work / "output"), "--json", home=home).stdout)
    [folder] = listed
    assert folder["tuner_type"] == "lora" and folder["checkpoints"][-1]["is_last"]

    records = [json.loads(x) for x in (Path(rec.run_dir) / "logging.jsonl").read_text().splitlines()]

    async def go():
        app = SwiftdeckApp(RunSource.of_record(rec), remember_theme=False)
        async with app.run_test(size=(160, 48)) as pilot:
            pane = app.query_one(CheckpointsPane)
            assert await until(pilot, lambda: app.query_one(LossPane).has_metrics and pane.folders)
            assert "finished" in app.query_one(RunHeader).render_info().plain
            assert app.query_one(LossPane).loss.ys == [r["loss"] for r in records if "loss" in r]
            assert [c.name for c in pane.folders[0].checkpoints] == [c["name"] for c in folder["checkpoints"]]
    asyncio.run(go())


@pytest.mark.slow
def test_chat_and_check_identity_run_in_the_3x_environment(home, trained_demo3):
    proc = cli("check-identity", str(trained_demo3), "--json", "--sample", "3", home=home)
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(proc.stdout)
    assert report["adapter_passed"] == report["total"] == 6
    [worker] = [r for r in runs.all_runs() if r.kind == "chat"]
    assert worker.argv[0] == ENV3.python  # the worker ran with the 3.x environment's Python
    log = Path(worker.meta["log"]).read_text()
    assert "Create the default_template for the infer_engine" in log  # ms-swift 3.x's PtEngine said so

    chat = cli("chat", "--adapters", str(trained_demo3), "--once", "你是谁?", home=home)
    assert chat.returncode == 0, chat.stderr[-2000:]
    assert "CSDN 迪菲赫尔曼" in chat.stdout


@pytest.mark.slow
def test_3x_worker_answers_questions_asked_back_to_back(home, trained_demo3, monkeypatch):
    """ms-swift 3.x reported an answer done before its event loop stopped; the next answer asked at once hung
    ("This event loop is already running"). The worker gives each answer its own loop."""
    from engine.chat_client import ChatClient

    monkeypatch.setenv(swift_env.ENV_VAR, str(SWIFT3))
    with ChatClient.start(adapters={"robot": trained_demo3}) as client:
        assert client.base["model_type"] == "qwen2"
        answers = [client.ask("你是谁?", conv=f"c{i}", temperature=0, max_new_tokens=24, timeout=60,
                              target="robot" if i % 2 else "base") for i in range(24)]
    assert all("CSDN 迪菲赫尔曼" in a for a in answers[1::2]), answers


@pytest.mark.slow
def test_stop_interrupts_a_3x_run_and_resume_continues_it_there(home, demo_assets, tmp_path, monkeypatch):
    """3.12 has no graceful_exit: the stop is SIGINT to the trainer (no new checkpoint), then a resume from the last
    saved one runs in the same 3.x environment, even when swiftdeck itself drives 4.6 again."""
    from engine import demo

    monkeypatch.setenv(swift_env.ENV_VAR, str(SWIFT3))
    cmd = Command("sft", tuple(demo.demo_sft_args(demo_assets, tmp_path / "out", epochs=300, save_steps=20)),
                  str(tmp_path), label="long 3.x")
    rec = launch.start(launch.check_launch(cmd, datasets=False))
    reader = RunReader(console_log=rec.console_log, cwd=tmp_path)

    def saved() -> bool:
        reader.poll()
        return bool(reader.state.checkpoints)

    assert wait_for(saved, timeout=300), rec.console_log.read_text()[-2000:]
    before = {p.name for p in Path(runs.load(rec.id).run_dir).glob("checkpoint-*")}
    proc = cli("stop", rec.id, "--timeout", "60", home=home)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "no checkpoint is saved at the next step" in proc.stdout
    assert "SIGINT → trainer [" in proc.stdout and "still running after" not in proc.stdout
    rec = runs.load(rec.id)
    assert rec.status == "stopped" and supervisor.live_tree(rec) == []
    assert "KeyboardInterrupt" in rec.console_log.read_text()
    folder = checkpoints.scan_run(Path(rec.run_dir))
    assert {c.name for c in folder.checkpoints} <= before | {f"checkpoint-{max(reader.state.checkpoints)}"}

    monkeypatch.delenv(swift_env.ENV_VAR)  # swiftdeck drives its own 4.6 again: the run keeps its 3.x swift
    last = max((c for c in folder.checkpoints if c.resumable), key=lambda c: c.step)
    plan, _ = launch.plan_resume(rec, last)
    check = launch.check_launch(plan, datasets=False)
    assert check.ok, check.blocker
    resumed = launch.start(check)
    assert resumed.argv[:2] == [str(SWIFT3), "sft"] and "--train_type" in resumed.argv
    again = RunReader(console_log=resumed.console_log, cwd=tmp_path)

    def past_checkpoint() -> bool:
        again.poll()
        return any(m.step > last.step for m in again.state.metrics)

    try:
        assert wait_for(past_checkpoint, timeout=300), resumed.console_log.read_text()[-2000:]
        assert min(m.step for m in again.state.metrics) > last.step  # continued, not restarted
    finally:
        supervisor.stop(runs.load(resumed.id), force=True)


@pytest.mark.slow
def test_merge_and_deploy_run_in_the_3x_environment(home, trained_demo3, tmp_path):
    ckpt = tmp_path / "run" / "v0-20261130-000000" / trained_demo3.name
    ckpt.parent.mkdir(parents=True)
    shutil.copytree(trained_demo3, ckpt)
    shutil.copy(trained_demo3.parent / "args.json", ckpt.parent / "args.json")
    merged = cli("merge", str(ckpt), "--wait", home=home)
    assert merged.returncode == 0, merged.stdout + merged.stderr
    [job] = [r for r in runs.all_runs() if r.kind == "export"]
    assert job.argv[:2] == [str(SWIFT3), "export"]
    assert (ckpt.with_name(ckpt.name + "-merged") / "config.json").is_file()

    served = cli("deploy", "--adapters", f"robot={ckpt}", "--timeout", "600", home=home, cwd=tmp_path)
    [rec] = [r for r in runs.all_runs() if r.kind == "deploy"]
    try:
        assert served.returncode == 0, served.stdout + served.stderr
        assert rec.argv[:2] == [str(SWIFT3), "deploy"]
        ready = next(line for line in served.stdout.splitlines() if line.startswith("ready: "))
        url = ready.split()[1].removesuffix("/v1")
        assert "models: tiny-qwen2, robot" in ready  # what the deploy reported, read after it was ready
        answer = "".join(deploy.stream_chat(url, "robot", [{"role": "user", "content": "你是谁?"}], max_tokens=64))
        assert "CSDN 迪菲赫尔曼" in answer
    finally:
        report = supervisor.stop(runs.load(rec.id))
    assert report.clean
