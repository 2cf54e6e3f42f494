"""engine.checkpoints on the recorded run folder and on temp-dir variants of it."""
from __future__ import annotations

import json
import os
import shutil
import zipfile
from pathlib import Path

import pytest

from engine.checkpoints import NOT_LORA, CheckpointError, format_table, scan, scan_checkpoint, scan_run, to_json

RUN_NAME = "v2-20261127-174023"


def copy_run(src: Path, dst: Path) -> Path:
    """Writable copy (the fixture files are read-only; copy contents, not modes)."""
    for root, dirs, files in os.walk(src):
        target = dst / Path(root).relative_to(src)
        target.mkdir(parents=True, exist_ok=True)
        for name in files:
            shutil.copyfile(Path(root) / name, target / name)
    return dst


def records(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "logging.jsonl").read_text().splitlines() if line.strip()]


def write_records(run: Path, recs: list[dict]) -> None:
    (run / "logging.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))


def safetensors(path: Path, floats: int = 4) -> None:
    """A valid safetensors file holding one float32 tensor."""
    header = json.dumps({"w": {"dtype": "F32", "shape": [floats], "data_offsets": [0, 4 * floats]}}).encode()
    path.write_bytes(len(header).to_bytes(8, "little") + header + b"\0" * (4 * floats))


def torch_zip(path: Path) -> None:
    """A file in torch.save's zip layout (the format of optimizer.pt / scheduler.pt)."""
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("archive/data.pkl", b"\x80\x02}q\x00.")


def du(path: Path) -> int:
    return sum((Path(r) / f).stat().st_size for r, _, files in os.walk(path) for f in files)


@pytest.fixture
def run_copy(tmp_path, swift_fixtures) -> Path:
    return copy_run(swift_fixtures / "run-v2", tmp_path / "output" / RUN_NAME)


def complete(ckpt: Path) -> Path:
    """Give a checkpoint of the recorded run (saved without weights and optimizer) valid files."""
    safetensors(ckpt / "adapter_model.safetensors")
    for name in ("optimizer.pt", "scheduler.pt"):
        torch_zip(ckpt / name)
    return ckpt


def test_fixture_run(home, swift_fixtures):
    run_dir = swift_fixtures / "run-v2"
    (run,) = scan(run_dir)  # a path that is itself a run folder
    recs = records(run_dir)
    args = json.loads((run_dir / "args.json").read_text())
    assert run.path == run_dir and run.version is None and not run.empty and run.ended
    assert (run.model, run.model_type, run.template, run.tuner_type) == \
        (args["model"], args["model_type"], args["template"], args["tuner_type"])
    assert [c.step for c in run.checkpoints] == [20, 24]
    loss_at = {int(r["global_step/max_steps"].split("/")[0]): r["loss"] for r in recs if "loss" in r}
    for c in run.checkpoints:
        assert c.kind == "lora" and c.loss == loss_at[c.step] and c.loss_step == c.step and c.eval_loss is None
        adapter = json.loads((c.path / "adapter_config.json").read_text())
        assert c.lora_rank == adapter["r"] and c.lora_alpha == adapter["lora_alpha"]
        assert c.target_modules == sorted(adapter["target_modules"])
        assert c.base_model == adapter["base_model_name_or_path"]
        assert c.size_bytes == du(c.path)
        # the recording left out adapter weights and optimizer/scheduler states
        assert not c.complete and not c.resumable
        assert any("adapter_model" in n for n in c.notes) and any("optimizer.pt" in n for n in c.notes)
    # the final record names checkpoint-24 and reached max_steps, but without weights it is not a checkpoint to
    # use: not last, and the run is not called finished from its files alone
    assert Path(recs[-1]["last_model_checkpoint"]).name == "checkpoint-24"
    assert not any(c.is_last or c.is_best for c in run.checkpoints)
    assert run.final["global_step"] == recs[-1]["global_step"] and run.max_steps == 24 and run.last_step == 24
    assert run.state == "ended" and not run.finished
    json.dumps(to_json([run]))
    table = format_table([run])
    assert "checkpoint-24" in table and "[ended at step 24/24]" in table


def test_resumable_complete_and_best(home, run_copy):
    complete(run_copy / "checkpoint-20")
    recs = records(run_copy)
    recs[-1]["best_model_checkpoint"] = str(run_copy / "checkpoint-20")
    recs[-1]["best_metric"] = 6.08
    write_records(run_copy, recs)
    run = scan_run(run_copy)
    c20, c24 = run.checkpoints
    assert c20.resumable and c20.complete and c20.is_best and c20.notes == []
    # checkpoint-24 (named last by the final record) has no weights: the newest complete checkpoint is last
    assert not c24.resumable and not c24.complete and not c24.is_last and not c24.is_best
    assert c20.is_last
    complete(run_copy / "checkpoint-24")
    assert [c.name for c in scan_run(run_copy).checkpoints if c.is_last] == ["checkpoint-24"]
    assert run.final["best_metric"] == 6.08
    (run_copy / "checkpoint-20" / "rng_state.pth").unlink()
    assert not scan_checkpoint(run_copy / "checkpoint-20").resumable  # rng state is part of a resume


def test_last_from_symlink_when_no_final_record(home, run_copy):
    complete(run_copy / "checkpoint-20")
    complete(run_copy / "checkpoint-24")
    write_records(run_copy, [r for r in records(run_copy) if "last_model_checkpoint" not in r])
    (run_copy / "last-checkpoint").unlink()
    os.symlink("checkpoint-20", run_copy / "last-checkpoint")
    run = scan_run(run_copy)
    assert not run.finished
    assert [c.step for c in run.checkpoints if c.is_last] == [20]
    (run_copy / "last-checkpoint").unlink()  # no link, no final record: the newest checkpoint
    assert [c.step for c in scan_run(run_copy).checkpoints if c.is_last] == [24]


def test_merged_and_full_checkpoints(home, run_copy, tmp_path):
    complete(run_copy / "checkpoint-24")
    merged = run_copy / "checkpoint-24-merged"
    merged.mkdir()
    for name in ("config.json", "tokenizer.json"):
        (merged / name).write_text("{}")
    safetensors(merged / "model.safetensors")
    shutil.copyfile(run_copy / "args.json", merged / "args.json")
    run = scan_run(run_copy)
    assert [c.name for c in run.checkpoints] == ["checkpoint-20", "checkpoint-24", "checkpoint-24-merged"]
    m = run.checkpoints[-1]
    assert m.kind == "merged" and m.complete and not m.resumable and NOT_LORA in m.notes
    assert m.step == 24 and not m.is_last and m.lora_rank is None and m.model_type == "qwen2"
    assert run.checkpoints[1].is_last

    full = tmp_path / "full" / "v0-20260101-120000"
    ckpt = full / "checkpoint-5"
    ckpt.mkdir(parents=True)
    args = json.loads((run_copy / "args.json").read_text()) | {"tuner_type": "full"}
    (full / "args.json").write_text(json.dumps(args))
    for name in ("config.json", "rng_state.pth", "trainer_state.json"):
        (ckpt / name).write_text("{}")
    for name in ("model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"):
        safetensors(ckpt / name)
    (ckpt / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {
        "a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"}}))
    for name in ("optimizer.pt", "scheduler.pt"):
        torch_zip(ckpt / name)
    (f,) = scan_run(full).checkpoints
    assert f.kind == "full" and f.complete and f.resumable and NOT_LORA in f.notes
    shard = ckpt / "model-00002-of-00002.safetensors"  # a shard the index lists, cut short by a full disk
    shard.write_bytes(shard.read_bytes()[:-3])
    f = scan_checkpoint(ckpt, args)
    assert not f.complete and not f.resumable
    assert "incomplete: model-00002-of-00002.safetensors is cut short" in " ".join(f.notes)
    (ckpt / "model-00002-of-00002.safetensors").unlink()
    (ckpt / "model-00001-of-00002.safetensors").unlink()
    (ckpt / "model.safetensors.index.json").unlink()
    assert not scan_checkpoint(ckpt, args).complete


def test_layouts_empty_folder_and_order(tmp_path, swift_fixtures):
    out = tmp_path / "output"
    copy_run(swift_fixtures / "run-v2", out / "tiny" / "v1-20261127-174023")  # ms-swift's output/<model>/vN-...
    (out / "tiny" / "v0-20261127-170000").mkdir()  # a launch that failed before training
    copy_run(swift_fixtures / "run-v2", out / "v0-20261128-090000")  # directly under output_dir
    (out / "notes.txt").write_text("x")
    (out / "other" / "not-a-run").mkdir(parents=True)
    runs = scan(out)
    assert [r.name for r in runs] == ["v0-20261127-170000", "v1-20261127-174023", "v0-20261128-090000"]
    empty = runs[0]
    assert empty.empty and empty.checkpoints == [] and "empty folder" in empty.notes[0]
    assert runs[1].version == 1 and runs[1].created.isoformat() == "2026-11-27T17:40:23"
    assert all(len(r.checkpoints) == 2 for r in runs[1:])
    table = format_table(runs, base=out)
    assert "tiny/v0-20261127-170000  [empty]" in table and "empty folder" in table
    json.dumps(to_json(runs))
    assert scan(out / "tiny" / "v0-20261127-170000")[0].empty  # an empty run folder given directly


def test_loss_from_trainer_state_without_logging_jsonl(run_copy):
    (run_copy / "logging.jsonl").unlink()
    run = scan_run(run_copy)
    state = json.loads((run_copy / "checkpoint-20" / "trainer_state.json").read_text())
    expected = next(h["loss"] for h in state["log_history"] if h["step"] == 20)
    assert run.checkpoints[0].loss == expected and not run.finished
    assert any("no logging.jsonl" in n for n in run.notes)


def test_errors_and_bad_json(tmp_path, run_copy):
    with pytest.raises(CheckpointError, match="no such folder"):
        scan(tmp_path / "missing")
    (run_copy / "args.json").write_text("{not json")
    run = scan_run(run_copy)
    assert run.model is None and any("args.json unreadable" in n for n in run.notes)
    assert len(run.checkpoints) == 2  # the checkpoints' own args.json still tell the base model
    assert run.checkpoints[0].model_type == "qwen2"


def _step(rec: dict) -> int | None:
    gs = rec.get("global_step/max_steps")
    return int(gs.split("/")[0]) if isinstance(gs, str) else None


def _registry_record(run_dir: Path, status: str, **fields):
    from engine import runs

    rec = runs.create("sft", ["swift", "sft"], str(run_dir.parent))

    def ended(r):
        r.run_dir, r.status, r.exit_code = str(run_dir), status, fields.pop("exit_code", 0)
        for key, value in fields.items():
            setattr(r, key, value)

    return runs.update(rec.id, ended)


def test_a_stopped_run_is_labelled_stopped_not_finished(home, run_copy):
    """A graceful stop at step 20 of 24: ms-swift writes its final record there too."""
    complete(run_copy / "checkpoint-20")
    shutil.rmtree(run_copy / "checkpoint-24")
    recs = records(run_copy)
    final = dict(recs[-1], global_step=20, last_model_checkpoint=str(run_copy / "checkpoint-20"))
    write_records(run_copy, [r for r in recs if (_step(r) or 99) <= 20 and "train_runtime" not in r] + [final])
    out = run_copy.parent
    assert f"{RUN_NAME}  [ended at step 20/24]" in format_table(scan(out), base=out)  # no record: the files
    _registry_record(run_copy, "stopped", stop_requested="graceful")
    (run,) = scan(out)
    assert run.state == "stopped" and not run.finished and run.checkpoints[0].is_last
    assert f"{RUN_NAME}  [stopped step 20/24]" in format_table([run], base=out)
    assert to_json([run])[0]["state"] == "stopped"


def test_a_cuda_oom_before_the_first_step_is_not_finished(home, tmp_path, run_copy):
    """ms-swift writes its final record with global_step 0 when the first step dies of a CUDA OOM."""
    run = tmp_path / "oom" / "v0-20261130-100000"
    run.mkdir(parents=True)
    shutil.copyfile(run_copy / "args.json", run / "args.json")
    write_records(run, [{"last_model_checkpoint": None, "best_model_checkpoint": None, "best_metric": None,
                         "global_step": 0, "log_history": [], "memory": None}])
    assert "[ended at step 0/?]" in format_table(scan(run.parent))
    _registry_record(run, "failed", exit_code=1)
    assert "[failed step 0/?]" in format_table(scan(run.parent))


def test_a_final_checkpoint_cut_short_by_a_full_disk(home, run_copy):
    """The volume filled during the final save: ms-swift's final record still names checkpoint-24 at 24/24,
    but its weights are cut short. It is neither last nor resumable, the run is not finished by its files, and
    the registry record (failed) labels it."""
    complete(run_copy / "checkpoint-20")
    ckpt = complete(run_copy / "checkpoint-24")
    weights = ckpt / "adapter_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:20])  # inside the header: 5 KB checkpoints, no weights
    optimizer = ckpt / "optimizer.pt"
    optimizer.write_bytes(optimizer.read_bytes()[:30])
    (run,) = scan(run_copy.parent)
    c20, c24 = run.checkpoints
    assert not c24.complete and not c24.is_last and not c24.resumable
    assert any("adapter_model.safetensors is cut short" in n for n in c24.notes)
    assert c20.is_last and c20.resumable and run.state == "ended"
    assert "[ended at step 24/24]" in format_table([run])
    _registry_record(run_copy, "failed", exit_code=1)
    (run,) = scan(run_copy.parent)
    assert run.label == "failed step 24/24"
    optimizer = run_copy / "checkpoint-20" / "optimizer.pt"  # whole weights, optimizer state cut short
    optimizer.write_bytes(optimizer.read_bytes()[:-10])
    c20 = scan_checkpoint(run_copy / "checkpoint-20")
    assert c20.complete and not c20.resumable
    assert any(n.startswith("not resumable: optimizer.pt is cut short") for n in c20.notes)
