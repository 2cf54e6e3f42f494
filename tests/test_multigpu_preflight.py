"""The launch options, the preflight and its memory estimate (no GPU here: the real no-NVML path, and NVML
snapshots built as engine.gpu builds them), and the OOM of one rank diagnosed from a real 2-GPU console."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from engine import diagnose, gpu, preflight, runs
from engine.command import Command
from engine.ops import launch

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "tests" / "data" / "multigpu"
GiB = 2 ** 30


def swiftdeck(*args: str, home: Path, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "SWIFTDECK_HOME": str(home)}
    env.pop("CUDA_VISIBLE_DEVICES", None)
    return subprocess.run([sys.executable, "-m", "tui.cli", *args], env=env, capture_output=True, text=True,
                          timeout=180, cwd=cwd)


def demo_cmd(assets, tmp_path: Path, env: dict[str, str] | None = None, **flags) -> Command:
    from engine import demo

    cmd = Command("sft", tuple(demo.demo_sft_args(assets, tmp_path / "out")), str(tmp_path), env or {})
    for name, value in flags.items():
        cmd = cmd.with_flag(f"--{name}", [str(value)])
    return cmd


def snapshot(*gpus: tuple[int, int, list[tuple[int, int]]]) -> gpu.GpuSnapshot:
    """An NVML reading: (index, bytes used, [(pid, bytes)]) per GPU of 140 GiB."""
    return gpu.GpuSnapshot(True, "", tuple(
        gpu.GpuInfo(i, "NVIDIA H200", f"GPU-{i:04d}", used, 140 * GiB, 0.0, 30.0, 100.0, 700.0,
                    tuple(gpu.GpuProcess(pid, mem, "python3") for pid, mem in procs))
        for i, used, procs in gpus), time.time())


# ---------------------------------------------------------------- the estimate


def test_the_model_is_counted_as_ms_swift_counts_it(demo_assets, tmp_path):
    """ms-swift printed for this model with --lora_rank 8, all-linear: `1.2033M Params (0.0389M Trainable)`."""
    shape = preflight.model_shape(demo_assets.model)
    est = preflight.estimate_for(demo_cmd(demo_assets, tmp_path))
    assert (shape.source, shape.params, est.trainable) == ("safetensors", 1_164_416, 38_912)
    assert shape.params + est.trainable == 1_203_328  # 1.2033M with the adapters
    # without safetensors (a model folder with config.json only) the count comes from the config: the same
    bare = tmp_path / "bare"
    bare.mkdir()
    (bare / "config.json").write_text((Path(demo_assets.model) / "config.json").read_text())
    from_config = preflight.model_shape(bare)
    assert (from_config.source, from_config.params) == ("config.json", shape.params)
    assert sorted(from_config.linears) == sorted((n, a, b) for n, a, b in shape.linears)


def test_the_estimate_moves_with_batch_length_checkpointing_and_sharding(demo_assets, tmp_path):
    base = preflight.estimate_for(demo_cmd(demo_assets, tmp_path, torch_dtype="bfloat16"))
    double = preflight.estimate_for(demo_cmd(demo_assets, tmp_path, torch_dtype="bfloat16",
                                             per_device_train_batch_size=20))
    assert (double.activations, double.logits, double.tokens) == (2 * base.activations, 2 * base.logits,
                                                                   2 * base.tokens)
    no_ckpt = preflight.estimate_for(demo_cmd(demo_assets, tmp_path, torch_dtype="bfloat16",
                                              gradient_checkpointing="false"))
    assert no_ckpt.activations > base.activations
    fp32 = preflight.estimate_for(demo_cmd(demo_assets, tmp_path, torch_dtype="float32"))
    assert fp32.weights == 2 * base.weights
    full = preflight.estimate_for(demo_cmd(demo_assets, tmp_path, torch_dtype="bfloat16", tuner_type="full"))
    assert full.trainable == full.params and full.training_state == full.params * 3 * 2
    two = {"NPROC_PER_NODE": "2"}
    ddp = preflight.estimate_for(demo_cmd(demo_assets, tmp_path, two, torch_dtype="bfloat16"))
    assert ddp.layout.startswith("DDP, 2 processes") and ddp.training_state > base.training_state
    zero3 = preflight.estimate_for(demo_cmd(demo_assets, tmp_path, two, torch_dtype="bfloat16", deepspeed="zero3"))
    assert zero3.layout == "DeepSpeed ZeRO-3 over 2 processes" and zero3.weights == base.weights // 2
    zero2 = preflight.estimate_for(demo_cmd(demo_assets, tmp_path, two, torch_dtype="bfloat16", deepspeed="zero2"))
    # ms-swift's zero2 preset allocates its 2e8-element gradient bucket whole
    assert zero2.training_state > 2e8 * 2
    spread = preflight.estimate_for(demo_cmd(demo_assets, tmp_path, torch_dtype="bfloat16"), visible_gpus=2)
    assert spread.layout.startswith("one process over 2 GPUs") and spread.weights == base.weights // 2


def test_the_estimate_stands_beside_what_ms_swift_measured_on_two_h200s(demo_assets, tmp_path):
    """The demo LoRA (bf16, batch 10, max_length 512) on 2 H200s: memory(GiB) logged by ms-swift (device run 2, see
    docs/MULTI_GPU.md). The estimate counts batch x max_length tokens, an upper bound (the demo's rows are short),
    so it may be above; the ZeRO-2 bucket makes the ZeRO-2 run 5x the DDP one, and the estimate sees that."""
    measured = json.loads((DATA / "h200x2-memory.json").read_text())
    two = {"NPROC_PER_NODE": "2"}
    for name, flags in (("ddp", {}), ("zero2", {"deepspeed": "zero2"})):
        est = preflight.estimate_for(demo_cmd(demo_assets, tmp_path, two, torch_dtype="bfloat16", **flags))
        ratio = measured[name] / (est.per_gpu / GiB)
        assert 0.3 < ratio < 1.5, (name, measured[name], est.line())


def test_args_json_as_ms_swift_writes_it_gives_the_same_estimate(demo_assets, tmp_path):
    """args.json holds --deepspeed as the loaded config dict; `swiftdeck metrics` estimates from it."""
    import importlib.util

    preset = Path(importlib.util.find_spec("swift").origin).parent / "config" / "zero2.json"
    run_dir = tmp_path / "v0-20260101-000000"
    run_dir.mkdir()
    args = {"model": str(demo_assets.model), "torch_dtype": "bfloat16", "tuner_type": "lora", "lora_rank": 8,
            "target_modules": ["all-linear"], "per_device_train_batch_size": 10, "max_length": 512,
            "gradient_checkpointing": True, "deepspeed": json.loads(preset.read_text()), "quant_bits": None}
    (run_dir / "args.json").write_text(json.dumps(args))
    got = preflight.compare(run_dir, 0.46, {"NPROC_PER_NODE": "2"})
    est = preflight.estimate_for(demo_cmd(demo_assets, tmp_path, {"NPROC_PER_NODE": "2"}, torch_dtype="bfloat16",
                                          deepspeed="zero2"))
    assert got["layout"] == "DeepSpeed ZeRO-2 over 2 processes"
    assert got["estimate_gib"] == round(est.per_gpu / GiB, 3) and got["ratio"] == round(0.46 / (est.per_gpu / GiB), 2)
    assert preflight.compare(tmp_path, 0.1) is None  # no args.json: nothing to estimate from


# ---------------------------------------------------------------- the preflight


def test_the_preflight_without_a_gpu_says_so_and_still_estimates(demo_assets, tmp_path):
    pre = preflight.check(demo_cmd(demo_assets, tmp_path, {"NPROC_PER_NODE": "2", "CUDA_VISIBLE_DEVICES": "0,1"}),
                          env={})
    assert not pre.gpu_available and pre.gpu_reason.startswith("No NVIDIA GPU")
    assert pre.gpus == [] and pre.selected == ["0", "1"] and not pre.problems and not pre.busy
    assert pre.estimate and pre.disk_free and Path(pre.disk_path).exists()
    lines = [text for _, text in pre.lines()]
    assert lines[0].startswith("GPUs: No NVIDIA GPU") and any(t.startswith("estimate: ~") for t in lines)
    # the layout is checked against the GPUs the command names, NVML or not
    pre = preflight.check(demo_cmd(demo_assets, tmp_path, {"NPROC_PER_NODE": "2", "CUDA_VISIBLE_DEVICES": "0,1,2"}),
                          env={})
    assert pre.problems == ["3 GPUs selected for 2 processes: ms-swift needs a multiple "
                            "(assert n_gpu % local_world_size == 0)"]


def test_a_gpu_another_process_fills_refuses_the_launch_until_confirmed(demo_assets, tmp_path):
    cmd = demo_cmd(demo_assets, tmp_path, {"NPROC_PER_NODE": "2", "CUDA_VISIBLE_DEVICES": "0,1"})
    snap = snapshot((0, 0, []), (1, 138 * GiB, [(4242, 138 * GiB)]))
    pre = preflight.check(cmd, snapshot=snap, env={})
    assert [g.full for g in pre.gpus] == [False, True]
    assert pre.gpus[1].others == [{"pid": 4242, "name": "python3", "bytes": 138 * GiB}]
    assert pre.busy and pre.busy[0].startswith("GPU 1 is taken: 1 other process(es) hold 138.00 GiB")
    check = launch.check_launch(cmd, datasets=False)
    check.preflight = pre
    assert not check.ok and "GPU 1 is taken" in check.blocker and "confirm" in check.blocker
    with pytest.raises(launch.LaunchRefused, match="GPU 1 is taken"):
        launch.start(check)
    assert check.confirmed().ok and check.confirmed().blocker is None
    # a small process beside plenty of free memory is shown, not refused
    pre = preflight.check(cmd, snapshot=snapshot((0, 0, []), (1, GiB, [(4242, GiB)])), env={})
    assert not pre.busy and "pid 4242 python3 1.00 GiB" in pre.lines()[1][1]


def test_one_process_on_several_gpus_is_told_and_offered_one(demo_assets, tmp_path):
    pre = preflight.check(demo_cmd(demo_assets, tmp_path), snapshot=snapshot((0, 0, []), (1, 0, [])), env={})
    assert pre.pin == "0"
    assert any("ms-swift spreads the model over all of them" in n and "--gpus 0" in n for n in pre.notes)
    assert pre.estimate.layout.startswith("one process over 2 GPUs")
    pinned, _ = launch.plan_devices(demo_cmd(demo_assets, tmp_path), gpus=pre.pin)
    pre = preflight.check(pinned, snapshot=snapshot((0, 0, []), (1, 0, [])), env={})
    assert pre.pin is None and [g.index for g in pre.gpus] == [0] and not pre.notes
    # a GPU the command names that NVML does not see; more processes than GPUs
    bad = demo_cmd(demo_assets, tmp_path, {"CUDA_VISIBLE_DEVICES": "0,7", "NPROC_PER_NODE": "2"})
    pre = preflight.check(bad, snapshot=snapshot((0, 0, []), (1, 0, [])), env={})
    assert pre.problems == ["CUDA_VISIBLE_DEVICES names GPU 7, which NVML does not see (GPUs here: 0, 1)"]
    many = demo_cmd(demo_assets, tmp_path, {"NPROC_PER_NODE": "4"})
    pre = preflight.check(many, snapshot=snapshot((0, 0, []), (1, 0, [])), env={})
    assert pre.problems and pre.problems[0].startswith("4 processes per node but 2 GPU(s) selected")


def test_launch_options_fill_the_commands_environment_and_arguments(tmp_path):
    cmd = Command("sft", ("--model", "m"), str(tmp_path))
    planned, changes = launch.plan_devices(cmd, gpus="0,1", nproc=2, deepspeed="zero2")
    assert planned.env == {"CUDA_VISIBLE_DEVICES": "0,1", "NPROC_PER_NODE": "2"}
    assert planned.flag("--deepspeed") == "zero2" and changes[-1] == "--deepspeed zero2"
    assert planned.display().startswith("CUDA_VISIBLE_DEVICES=0,1 NPROC_PER_NODE=2 swift sft")
    node, _ = launch.plan_devices(cmd, gpus="1", nnodes=2, node_rank=1, master_addr="10.0.0.5", master_port=29555)
    assert node.env == {"CUDA_VISIBLE_DEVICES": "1", "NNODES": "2", "NODE_RANK": "1", "MASTER_ADDR": "10.0.0.5",
                        "MASTER_PORT": "29555", "NPROC_PER_NODE": "1"}
    # what a stop, resume or relaunch starts from: the record keeps it all
    for bad, message in ((dict(gpus="0,0"), "each once"), (dict(gpus="0,,1"), "GPU indices"),
                         (dict(gpus="0,1", nproc=3), "its own GPU"), (dict(nproc=0), "at least 1"),
                         (dict(nnodes=2, node_rank=0), "--master-addr"), (dict(nnodes=2, master_addr="h"),
                                                                         "--node-rank"),
                         (dict(nnodes=2, node_rank=2, master_addr="h"), "below --nnodes"),
                         (dict(deepspeed="zero9"), "zero2"), (dict(master_port=70000), "not a port")):
        with pytest.raises(launch.LaunchRefused, match=message):
            launch.plan_devices(cmd, **bad)


def test_swiftdeck_train_preflight_and_options_from_the_command_line(introspected_home, demo_assets, tmp_path):
    from engine import demo

    args = demo.demo_sft_args(demo_assets, tmp_path / "out")
    proc = swiftdeck("train", "--gpus", "0,1", "--nproc", "2", "--preflight", "--", *args, home=introspected_home,
                     cwd=tmp_path)
    out = proc.stdout
    assert proc.returncode == 0, out + proc.stderr
    assert "environment: CUDA_VISIBLE_DEVICES=0,1 NPROC_PER_NODE=2" in out
    assert "preflight: GPUs: No NVIDIA GPU" in out and "preflight: estimate: ~" in out and "(DDP, 2 processes" in out
    assert "nothing blocks this launch (not launched: --preflight)" in out
    proc = swiftdeck("train", "--gpus", "0,1,2", "--nproc", "2", "--preflight", "--", *args,
                     home=introspected_home, cwd=tmp_path)
    assert proc.returncode == 1 and "would not launch: 3 GPUs selected for 2 processes" in proc.stdout
    proc = swiftdeck("train", "--gpus", "0,1", "--nproc", "3", "--", *args, home=introspected_home, cwd=tmp_path)
    assert proc.returncode == 2 and proc.stderr.strip() == \
        "swiftdeck: --nproc 3 with --gpus 0,1: each process needs its own GPU"
    assert not list((introspected_home / "runs").glob("*/record.json"))  # nothing was launched


# ---------------------------------------------------------------- one rank out of memory


def test_an_oom_on_one_rank_is_diagnosed_with_that_rank_and_its_gpu(home):
    """tests/data/multigpu/oom-rank1-h200x2.log: the console of a real 2-GPU DDP run (device run 2) where a
    holder process filled GPU 1: rank 1 ran out of memory (swiftdeck stopped the run 2.5 s later, before torchrun
    printed its summary)."""
    text = (DATA / "oom-rank1-h200x2.log").read_text()
    d = diagnose.diagnose(text, exit_code=-9, command="sft")
    assert d.kind == "cuda_oom" and d.details["rank"] == 1 and d.details["gpu"] == 1
    assert d.summary.startswith("CUDA out of memory on rank 1, GPU 1: tried to allocate 742.00 MiB"), d.summary
    # a recorded run: the rank's node and physical GPU (here CUDA_VISIBLE_DEVICES=4,5, rank 1 on GPU 5)
    rec = runs.create("sft", ["swift", "sft", "--model", "m"], "/tmp", env={"CUDA_VISIBLE_DEVICES": "4,5",
                                                                             "NPROC_PER_NODE": "2"})
    rec.console_log.write_text(text)
    rec = runs.update(rec.id, lambda r: (setattr(r, "status", "failed"), setattr(r, "exit_code", -9)))
    d = diagnose.diagnose_run(rec, recorded=False)
    assert d.summary.startswith("CUDA out of memory on rank 1 (node 0, GPU 5): tried to allocate"), d.summary
    assert (d.details["physical_gpu"], d.details["node_rank"]) == ("5", 0)
    rec = runs.update(rec.id, lambda r: r.meta.update(ranks=[
        {"pid": 11, "create_time": 1.0, "rank": 1, "local_rank": 0, "world_size": 2, "node_rank": 1, "gpu": "3"}]))
    d = diagnose.diagnose_run(rec, recorded=False)  # the recorded rank wins: node 1's GPU 3
    assert d.summary.startswith("CUDA out of memory on rank 1 (node 1, GPU 3)"), d.summary


def test_a_stop_file_that_would_end_the_run_at_once_refuses_the_launch(demo_assets, tmp_path, monkeypatch):
    """ms-swift's graceful-exit callback stops any run while /tmp/stop exists; the file here stands in for it (a
    real /tmp/stop would stop every other ms-swift run on this machine)."""
    stop_file = tmp_path / "stop"
    monkeypatch.setattr(launch, "STOP_FILE", stop_file)
    cmd = demo_cmd(demo_assets, tmp_path)
    assert launch.check_launch(cmd, datasets=False).ok
    stop_file.write_text("")
    check = launch.check_launch(cmd, datasets=False)
    assert not check.ok and f"{stop_file} exists" in check.blocker, check.blocker
    with pytest.raises(launch.LaunchRefused, match="graceful-exit"):
        launch.start(check)
