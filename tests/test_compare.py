"""Comparing runs without training: run folders written the way ms-swift writes them (args.json, logging.jsonl,
checkpoint-N/), the real `swiftdeck` CLI in a subprocess. The run list is about training runs (`runs --all` adds
the jobs). A real resumed demo run joined to its parent: test_compare_live."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from engine import runs
from engine.ops import compare
from engine.ops.runs import RunSource
from test_wait_support import end, live_record

REPO = Path(__file__).resolve().parents[1]


def swiftdeck(*args: str, home: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "SWIFTDECK_HOME": str(home)}
    return subprocess.run([sys.executable, "-m", "tui.cli", *args], env=env, capture_output=True, text=True,
                          timeout=60, cwd=REPO)


def write_run(path: Path, steps: range, *, total: int, loss0: float, resume: Path | None = None, saves=(),
              **args) -> Path:
    """A run folder as ms-swift 4.6 writes it: args.json, one logging.jsonl record per step, checkpoint-N/."""
    path.mkdir(parents=True)
    (path / "args.json").write_text(json.dumps({
        "model": "/models/tiny", "learning_rate": 3e-3, "lora_rank": 8, "dataset": ["/data/a.json"],
        "output_dir": str(path), "logging_dir": str(path / "runs"), "run_name": str(path), "hub_token": None,
        "resume_from_checkpoint": str(resume) if resume else None, **args}))
    lines = [json.dumps({"loss": round(loss0 - 0.1 * s, 4), "grad_norm": 1.0, "learning_rate": 1e-4,
                         "global_step/max_steps": f"{s}/{total}", "elapsed_time": "1s", "remaining_time": "1s"})
             for s in steps]
    (path / "logging.jsonl").write_text("\n".join(lines) + "\n")
    for s in saves:
        ckpt = path / f"checkpoint-{s}"
        ckpt.mkdir()
        (ckpt / "adapter_config.json").write_text(json.dumps({"r": 8, "lora_alpha": 32}))
        (ckpt / "adapter_model.safetensors").write_bytes(b"\0" * 64)
    return path


def test_join_continues_the_parent_at_the_resume_step():
    parent = [(1, 9.0), (2, 8.0), (3, 7.0), (4, 6.0)]
    assert compare.join(parent, [(3, 6.5), (4, 6.1)], 2) == [(1, 9.0), (2, 8.0), (3, 6.5), (4, 6.1)]
    # --resume_only_model counts from 1 again: shifted to continue at the resume step
    assert compare.join(parent, [(1, 6.5), (2, 6.1)], 2) == [(1, 9.0), (2, 8.0), (3, 6.5), (4, 6.1)]
    assert compare.join([], [(5, 1.0)], 4) == [(5, 1.0)]


def test_differing_arguments_leave_out_run_specific_ones_and_mask_secrets():
    a = {"learning_rate": 3e-3, "lora_rank": 8, "output_dir": "/o/v0", "run_name": "/o/v0", "hub_token": "hf_aaa",
         "dataset": ["/d/a.json"]}
    b = {**a, "learning_rate": 1e-3, "output_dir": "/o/v1", "run_name": "/o/v1", "hub_token": "hf_bbb"}
    assert compare.differing_args([a, b, {}]) == {"hub_token": ["***", "***", None],
                                                  "learning_rate": [3e-3, 1e-3, None]}
    assert compare.differing_args([a, {}]) == {}  # one run with args.json: nothing to compare it with


def test_a_chain_of_resumes_is_joined_and_a_loop_of_them_ends(tmp_path):
    out = tmp_path / "output"
    a = write_run(out / "v0-20261130-100000", range(1, 7), total=8, loss0=9.0, saves=(4, 6))
    b = write_run(out / "v1-20261130-110000", range(5, 9), total=8, loss0=8.0, resume=a / "checkpoint-4",
                  saves=(6, 8), learning_rate=1e-3)
    c = write_run(out / "v2-20261130-120000", range(7, 10), total=9, loss0=7.0, resume=b / "checkpoint-6",
                  lora_rank=16)
    result = compare.compare([RunSource(run_dir=a), RunSource(run_dir=c)])
    ra, rc = result.runs
    assert [s for s, _ in rc.joined_loss] == list(range(1, 10))
    assert rc.joined_loss[:4] == ra.loss[:4] and rc.joined_loss[6:] == rc.loss
    assert dict(rc.joined_loss)[5] == pytest.approx(8.0 - 0.5)  # steps 5-6 come from b, the parent in between
    assert (rc.resume_step, rc.resumed_from, rc.parent) == (6, str(b / "checkpoint-6"), str(b))  # b: not compared
    assert ra.parent is None and ra.joined_loss == ra.loss
    assert result.differing == {"lora_rank": [8, 16]}
    assert ra.best_checkpoint == str(a / "checkpoint-6") and "lowest train loss" in ra.best_checkpoint_reason
    assert ra.final_loss == pytest.approx(9.0 - 0.6) and (ra.best_loss_step, ra.step) == (6, 6)

    in_set = compare.compare([RunSource(run_dir=b), RunSource(run_dir=c)])
    assert in_set.runs[1].parent == in_set.runs[0].key  # the parent is one of the compared runs: named by its key

    args = json.loads((a / "args.json").read_text())
    (a / "args.json").write_text(json.dumps({**args, "resume_from_checkpoint": str(c / "checkpoint-8")}))
    looped = compare.compare([RunSource(run_dir=a), RunSource(run_dir=c)])  # a -> c -> b -> a: read once each
    assert [s for s, _ in looped.runs[1].joined_loss][-3:] == [7, 8, 9]


def test_compare_cli_prints_the_table_and_json(home, tmp_path):
    out = tmp_path / "output"
    a = write_run(out / "v0-20261130-100000", range(1, 5), total=4, loss0=9.0, saves=(2, 4))
    b = write_run(out / "v1-20261130-110000", range(3, 5), total=4, loss0=8.0, resume=a / "checkpoint-2",
                  saves=(4,), learning_rate=1e-3)
    text = swiftdeck("compare", str(a), str(b), home=home)
    assert text.returncode == 0, text.stderr
    lines = text.stdout.splitlines()
    assert lines[lines.index("arguments that differ (args.json):") + 1].split() == ["learning_rate", "0.003", "0.001"]
    assert next(ln for ln in lines if ln.startswith("resumed from")).split() == ["resumed", "from", "-",
                                                                                 "#1/checkpoint-2"]
    assert "#1, #2: no eval loss" in text.stdout
    data = json.loads(swiftdeck("compare", str(a), str(b), "--json", home=home).stdout)
    rb = data["runs"][1]
    assert [s for s, _ in rb["joined_loss"]] == [1, 2, 3, 4] and rb["resume_step"] == 2 and rb["parent"] == str(a)
    assert data["differing"] == {"learning_rate": [0.003, 0.001]}
    bare = json.loads(swiftdeck("compare", str(a), str(b), "--json", "--no-series", home=home).stdout)
    assert "joined_loss" not in bare["runs"][1] and bare["runs"][1]["final_loss"] == rb["final_loss"]


@pytest.mark.parametrize("args,message", [
    (["compare", "sft-nope", "sft-nope2"], "swiftdeck: no swiftdeck run 'sft-nope' (see `swiftdeck runs`)"),
    (["compare", "{a}"], "swiftdeck: give two or more runs to compare: swiftdeck compare RUN RUN ..."),
    (["compare", "{a}", "{a}"], "swiftdeck: run {a} is given twice"),
    (["prune", "{a}"], "swiftdeck: the following arguments are required: --keep-last (see `swiftdeck prune --help`)"),
    (["prune", "{a}", "--keep-last", "-1"], "swiftdeck: --keep-last must be 0 or more, not -1"),
    (["prune", "{tmp}", "--keep-last", "1"], "swiftdeck: {tmp} is not an ms-swift run folder "
                                             "(vN-YYYYMMDD-HHMMSS with checkpoint-N/)"),
    (["disk", "{tmp}/nope"], "swiftdeck: no such folder: {tmp}/nope"),
])
def test_bad_input_is_one_line(home, tmp_path, args, message):
    a = write_run(tmp_path / "output" / "v0-20261130-100000", range(1, 3), total=2, loss0=9.0, saves=(2,))
    other = tmp_path / "other"
    other.mkdir()
    fill = {"a": str(a), "tmp": str(other)}
    proc = swiftdeck(*[x.format(**fill) for x in args], home=home)
    assert proc.returncode == 2 and proc.stderr.strip() == message.format(**fill), proc.stderr


# ---------------------------------------------------------------- the run list


def test_runs_lists_training_runs_with_labels_and_jobs_only_with_all(home, tmp_path):
    sweep = end(runs.create("sft", ["swift", "sft", "--learning_rate", "1e-3"], str(tmp_path), label="lr 1e-3"),
                "finished", 0)
    merge = end(runs.create("export", ["swift", "export", "--adapters", "/x/checkpoint-4", "--merge_lora", "true"],
                            str(tmp_path), label="merge checkpoint-4"), "finished", 0)
    with live_record("chat", [sys.executable, "-m", "engine.chat_worker"], tmp_path, label="chat",
                     meta={"loaded": ["/x/checkpoint-4"]}) as chat:
        listed = json.loads(swiftdeck("runs", "--json", home=home).stdout)
        assert [(r["id"], r["label"], r["group"]) for r in listed] == [(sweep.id, "lr 1e-3", "run")]
        everything = json.loads(swiftdeck("runs", "--all", "--json", home=home).stdout)
        assert [(r["id"], r["group"]) for r in everything] == [(sweep.id, "run"), (chat.id, "job"), (merge.id, "job")]
        assert everything[1]["what"] == "/x/checkpoint-4"
        text = swiftdeck("runs", home=home).stdout.splitlines()
        assert text[0].split()[:3] == ["RUN", "LABEL", "KIND"] and text[1].split()[:4] == [sweep.id, "lr", "1e-3",
                                                                                            "sft"]
        assert text[-1] == "(2 chat/deploy/merge job(s) not shown: swiftdeck runs --all)"
        assert chat.id not in "\n".join(text) and merge.id not in "\n".join(text)
        text_all = swiftdeck("runs", "--all", home=home).stdout
        assert "jobs (chat workers, deploys, merges):" in text_all and chat.id in text_all and merge.id in text_all


def test_train_type_of_3x_and_tuner_type_of_4x_are_one_setting():
    """The real args.json of a 3.12.6 run (`train_type`) and of a 4.6 run (`tuner_type`): the same LoRA setting is
    not a difference; a different value is shown once, under the 4.x name."""
    data = Path(__file__).parent / "data"
    v3 = json.loads((data / "ms-swift-3.12" / "run-v0" / "args.json").read_text())
    v4 = json.loads((data / "ms-swift-4.6" / "run-v2" / "args.json").read_text())
    assert v3["train_type"] == v4["tuner_type"] == "lora" and "tuner_type" not in v3 and "train_type" not in v4
    differ = compare.differing_args([v3, v4])
    assert "train_type" not in differ and "tuner_type" not in differ
    assert "learning_rate" in differ or "num_train_epochs" in differ  # the other differences are still shown
    full = {**v4, "tuner_type": "full"}
    assert compare.differing_args([v3, full])["tuner_type"] == ["lora", "full"]
