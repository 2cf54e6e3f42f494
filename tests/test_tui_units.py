"""The dashboard's pure parts (no Textual): log store, chart series, actions, run discovery, summaries."""
from __future__ import annotations

import json
import math
import shutil

import pytest

from tui import actions
from tui.logstore import BLOCK, RECENT, LogFilter, LogStore, collapse, level_of
from tui.model import RunSource, RunWatch, discover, fmt_duration, quick_summary, resolve, SourceError
from tui.series import Series, downsample, ema_debiased

from test_tui_support import make_run


# ---------------------------------------------------------------- log store


def watched(path) -> tuple[RunWatch, LogStore]:
    """A bare console log as the dashboard watches it: the run's observer reads, the log store indexes its events."""
    watch = RunWatch(RunSource(console_log=path), clock=lambda: 0.0)
    return watch, watch.log


def test_collapse_keeps_the_last_visible_carriage_return_update():
    assert collapse(b"Train:  1%|\rTrain:  50%|\r   \r") == "Train:  50%|"
    assert collapse(b"\x1b[31mred\x1b[0m text\r") == "red text"
    assert collapse("中文\tx".encode()) == "中文  x"


def test_store_reads_recorded_console_like_a_terminal(tmp_path, swift_fixtures):
    raw = (swift_fixtures / "sft-tiny-h200.stderr").read_bytes()
    path = tmp_path / "console.log"
    path.write_bytes(raw)
    watch, store = watched(path)
    assert watch.poll().log_lines == raw.count(b"\n")
    expected = [collapse(line) for line in raw.split(b"\n")[:-1]]
    assert [store.line(i) for i in range(store.complete)] == expected
    assert not any("\r" in store.line(i) for i in range(store.complete))
    assert watch.poll().log_lines == 0  # nothing new


def test_store_follows_appends_partial_lines_and_truncation(tmp_path):
    path = tmp_path / "console.log"
    path.write_bytes(b"one\ntw")
    watch, store = watched(path)
    assert watch.poll().log_lines == 1 and store.count == 2 and store.line(1) == "tw"  # live, unterminated line
    with open(path, "ab") as fh:
        fh.write(b"o\rtwo!\nthree\n")
    assert watch.poll().log_lines == 2
    assert [store.line(i) for i in range(store.count)] == ["one", "two!", "three"]
    path.write_bytes(b"new\n")  # replaced by a shorter file: start over
    assert watch.poll().log_lines == -1
    assert store.count == 1 and store.line(0) == "new"


def test_store_memory_is_bounded_and_old_lines_come_back_from_the_file(tmp_path):
    path = tmp_path / "console.log"
    n = RECENT * 5
    with open(path, "wb") as fh:
        for i in range(n):
            fh.write(f"line {i} ".encode() + b"x" * 200 + b"\n")
    watch, store = watched(path)
    assert watch.poll().log_lines == n
    # 8 bytes per line + a fixed number of decoded lines, not the ~1 MB of text
    assert store.memory_estimate() < n * 8 + (RECENT + 16 * BLOCK) * 220
    assert store.memory_estimate() < path.stat().st_size
    for i in (0, 1, BLOCK + 3, n // 2, n - 1):
        assert store.line(i).startswith(f"line {i} ")


def test_store_finds_the_traceback(tmp_path, swift_fixtures):
    raw = (swift_fixtures / "oom-h200.stderr").read_bytes()
    path = tmp_path / "console.log"
    path.write_bytes(raw)
    watch, store = watched(path)
    watch.poll()
    lines = raw.split(b"\n")
    first = next(i for i, line in enumerate(lines) if b"Traceback (most recent call last)" in line)
    assert store.first_traceback == first
    assert store.last_traceback_line.startswith("torch.OutOfMemoryError: CUDA out of memory")


def test_filter_by_text_and_level(tmp_path, swift_fixtures):
    raw = (swift_fixtures / "oom-h200.stderr").read_bytes()
    path = tmp_path / "console.log"
    path.write_bytes(raw)
    watch, store = watched(path)
    watch.poll()
    found = store.scan(LogFilter("output_dir"))
    assert len(found) == sum(1 for line in raw.split(b"\n")[:-1] if b"output_dir" in collapse(line).encode())
    errors = [store.line(i) for i in store.scan(LogFilter(level="error"))]
    assert any(line.startswith("Traceback") for line in errors)
    assert any("OutOfMemoryError" in line for line in errors)
    assert all(level_of(line) == "error" for line in errors)
    warnings = store.scan(LogFilter(level="warning"))
    assert len(warnings) > len(errors)
    assert level_of("2026-11-27 17:44:10,430 | WARNING | modelscope_hub.legacy_api | Repo unknown") == "warning"


# ---------------------------------------------------------------- series


def _tensorboard_smooth(values, weight):
    """TensorBoard's resampling-free smoothing, written out as in its scalar dashboard."""
    last, num_accum, out = 0.0, 0, []
    for next_val in values:
        last = last * weight + (1 - weight) * next_val
        num_accum += 1
        out.append(last / (1 - math.pow(weight, num_accum)))
    return out


def test_ema_matches_tensorboard_and_stays_incremental(swift_fixtures):
    records = [json.loads(line) for line in (swift_fixtures / "run-v2" / "logging.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in records if "loss" in r]
    for w in (0.0, 0.6, 0.95):
        assert ema_debiased(losses, w) == pytest.approx(_tensorboard_smooth(losses, w))
    s = Series(weight=0.6)
    for i, v in enumerate(losses):
        s.append(i, v)
    assert s.ema == pytest.approx(ema_debiased(losses, 0.6))
    s.set_weight(0.9)
    assert s.ema == pytest.approx(ema_debiased(losses, 0.9))
    assert ema_debiased([1.0, float("nan"), 3.0], 0.5)[1] != ema_debiased([1.0, float("nan"), 3.0], 0.5)[1]


def test_downsample_keeps_extremes_and_the_last_point():
    xs = list(range(100_000))
    ys = [math.sin(i / 500) for i in xs]
    ys[51_234] = 50.0  # a spike
    dx, dy = downsample(xs, ys, 200)
    assert len(dx) <= 202
    assert max(dy) == 50.0 and dx[-1] == xs[-1]
    assert dx == sorted(dx)
    assert downsample([1, 2], [1.0, float("inf")], 10) == ([1], [1.0])


# ---------------------------------------------------------------- actions


def test_launch_form_defaults_are_the_tutorial_preset():
    plan = actions.build_launch(actions.LaunchForm(model="/m", dataset="/d.json"), gpu=False)
    argv = list(plan.args)
    pairs = {argv[i]: argv[i + 1] for i in range(len(argv) - 1) if argv[i].startswith("--")}
    assert pairs["--lora_rank"] == "8" and pairs["--lora_alpha"] == "32"
    assert pairs["--target_modules"] == "all-linear" and pairs["--learning_rate"] == "1e-4"
    assert pairs["--num_train_epochs"] == "10" and pairs["--per_device_train_batch_size"] == "1"
    assert pairs["--gradient_accumulation_steps"] == "16" and pairs["--max_length"] == "2048"
    assert pairs["--torch_dtype"] == "float32"
    assert actions.build_launch(actions.LaunchForm(model="/m", dataset="/d"), gpu=True).args.count("bfloat16") == 1
    plan = actions.build_launch(actions.LaunchForm(model="/m", dataset="/d", visible_gpus="0,1",
                                                   extra="--lora_rank 16 --split_dataset_ratio 0.1"), gpu=True)
    assert plan.args.count("--lora_rank") == 1 and "16" in plan.args and "--split_dataset_ratio" in plan.args
    assert plan.env == {"CUDA_VISIBLE_DEVICES": "0,1"}
    assert plan.display().startswith("CUDA_VISIBLE_DEVICES=0,1 swift sft --model /m")


@pytest.mark.parametrize("form,message", [
    (actions.LaunchForm(dataset="/d"), "model is required"),
    (actions.LaunchForm(model="/m", dataset="/d", epochs="ten"), "epochs must be a number"),
    (actions.LaunchForm(model="/m", dataset="/d", extra="stray --x 1"), "must start with a --flag"),
    (actions.LaunchForm(model="/m", dataset="/d", extra="--system 'unclosed"), "extra arguments"),
])
def test_launch_form_bad_input_is_one_line(form, message):
    with pytest.raises(actions.ActionError, match=message):
        actions.build_launch(form, gpu=False)


def test_checkpoint_cleanup(tmp_path, swift_fixtures, home):
    from engine.ops import checkpoints as ops

    run = tmp_path / "v0-20261127-000000"
    shutil.copytree(swift_fixtures / "run-v2", run, symlinks=True)
    ckpt = run / "checkpoint-20"
    (ckpt / "optimizer.pt").write_bytes(b"\0" * 4096)
    (ckpt / "scheduler.pt").write_bytes(b"\0" * 100)
    before = {p.name for p in ckpt.iterdir()}
    names = {p.name for p in ops.optimizer_files(ckpt)}
    assert names == {"optimizer.pt", "scheduler.pt", "rng_state.pth"}
    freed = ops.strip_optimizer(ckpt)
    assert freed >= 4196
    assert {p.name for p in ckpt.iterdir()} == before - names
    assert (ckpt / "adapter_config.json").exists()
    with pytest.raises(ops.CheckpointRefused, match="not a checkpoint folder"):
        ops.delete_checkpoint(run)
    assert ops.delete_checkpoint(ckpt) > 0 and not ckpt.exists()


def test_resume_plan_keeps_the_runs_environment(tmp_path, swift_fixtures, home):
    from engine import checkpoints, runs
    from engine.ops import launch

    rec = make_run(swift_fixtures, tmp_path, "finished")
    rec = runs.update(rec.id, lambda r: r.env.update(CUDA_VISIBLE_DEVICES="1", NPROC_PER_NODE="1"))
    folder = checkpoints.scan_run(rec.run_dir)
    last = folder.checkpoints[-2]  # checkpoint-20 (checkpoint-24 is the run's last step: nothing to resume)
    with pytest.raises(launch.LaunchRefused, match="not resumable"):
        launch.plan_resume(rec, last)  # the recording left the optimizer state out
    for name in ("optimizer.pt", "scheduler.pt"):
        (last.path / name).write_bytes(b"\0")
    last = checkpoints.scan_run(rec.run_dir).checkpoints[-2]
    assert last.name == "checkpoint-20"
    cmd, changes = launch.plan_resume(rec, last)
    assert list(cmd.args[-2:]) == ["--resume_from_checkpoint", str(last.path)]
    assert list(cmd.args[:-2]) == rec.argv[2:]
    assert cmd.env == {"CUDA_VISIBLE_DEVICES": "1", "NPROC_PER_NODE": "1"} and cmd.cwd == rec.cwd
    assert cmd.display().startswith("CUDA_VISIBLE_DEVICES=1 NPROC_PER_NODE=1 swift sft ")
    assert "not set" in changes[0] and any("CUDA_VISIBLE_DEVICES=1" in c for c in changes)
    with pytest.raises(launch.LaunchRefused, match="not started by swiftdeck"):
        launch.plan_resume(None, last)


# ---------------------------------------------------------------- model


def test_discovery_order_and_resolve(tmp_path, swift_fixtures, home):
    older = make_run(swift_fixtures, tmp_path / "a", "finished")
    newer = make_run(swift_fixtures, tmp_path / "b", "failed")
    from engine import runs

    runs.update(newer.id, lambda r: setattr(r, "started_at", older.started_at + 10))
    out = tmp_path / "output"
    stray = out / "v5-20261128-120000"
    shutil.copytree(swift_fixtures / "run-v2", stray, symlinks=True)
    found = discover(out)
    assert [s.key for s in found] == [newer.id, older.id, str(stray.resolve())]
    assert found[2].status == "finished" and found[2].record is None
    assert resolve(older.id[:-2]).key == older.id
    assert resolve(str(stray)).run_dir == stray.resolve()
    with pytest.raises(SourceError, match="no swiftdeck run"):
        resolve("nope-nothing")


def test_watch_and_quick_summary_agree_with_the_recording(tmp_path, swift_fixtures, home):
    rec = make_run(swift_fixtures, tmp_path, "finished")
    records = [json.loads(line) for line in (swift_fixtures / "run-v2" / "logging.jsonl").read_text().splitlines()]
    losses = [r for r in records if "loss" in r]
    watch = RunWatch(RunSource.of_record(rec), clock=lambda: 0.0)
    u = watch.poll()
    assert u.reset and len(u.new_metrics) == len(losses)
    assert u.header.last_loss == losses[-1]["loss"] and u.header.max_steps == 24 and u.header.step == 24
    assert [c.name for c in u.checkpoints[0].checkpoints] == ["checkpoint-20", "checkpoint-24"]
    assert watch.poll().new_metrics == []  # incremental
    summary = quick_summary(RunSource.of_record(rec))
    assert (summary.step, summary.max_steps, summary.last_loss) == (24, 24, losses[-1]["loss"])
    assert fmt_duration(3725) == "1h 02m 05s" and fmt_duration(None) == "-"
