"""Issue 11, watch: real `swift rlhf` DPO and GRPO output (tests/data/rlhf, recorded from the offline demos) read
into the same events as SFT, the kind named from a run's command or folder, GRPO's sample completions, and
`swiftdeck runs|metrics|checkpoints` showing the kind."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from engine import checkpoints, completions, kinds, runs
from engine.events import Metrics
from engine.ingest import ConsoleParser, RunReader
from engine.ops.runs import RunSource

DATA = Path(__file__).parent / "data" / "rlhf"
REPO = Path(__file__).resolve().parents[1]


def jsonl(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()]


def logged_steps(kind: str) -> dict[int, dict]:
    return {int(r["global_step/max_steps"].split("/")[0]): r for r in jsonl(DATA / kind / "logging.jsonl")
            if "loss" in r and "global_step/max_steps" in r}


@pytest.mark.parametrize("kind,keys,family", [
    ("dpo", ("rewards/chosen", "rewards/rejected", "rewards/margins", "rewards/accuracies", "logps/chosen",
             "logps/rejected"), "preference"),
    ("grpo", ("reward", "reward_std", "rewards/Format/mean", "rewards/RepetitionPenalty/mean", "kl",
              "completions/mean_length", "completions/clipped_ratio", "clip_ratio/region_mean"), "grpo"),
])
def test_real_rlhf_logs_parse_like_sft(kind, keys, family, tmp_path):
    expected = logged_steps(kind)
    run_dir = tmp_path / "v0-20261130-113532"
    shutil.copytree(DATA / kind, run_dir)

    state = RunReader(run_dir=run_dir).read_all()  # logging.jsonl
    train = [m for m in state.metrics if "loss" in m.values]
    assert [m.step for m in train] == sorted(expected)
    for m in train:
        for key in keys:
            assert m.values[key] == pytest.approx(expected[m.step][key]), (m.step, key)
        assert kinds.family(m.values) == family
    assert state.finished is not None and state.finished.last_checkpoint.endswith(f"checkpoint-{max(expected)}")
    assert state.max_steps == max(expected)

    # the console alone (a bare log file): the same steps and values, in any chunking
    data = (DATA / kind / "console.log").read_bytes()
    for size in (len(data), 4096, 97):
        parser = ConsoleParser()
        events = [e for i in range(0, len(data), size) for e in parser.feed(data[i:i + size])] + parser.flush()
        console = [e for e in events if isinstance(e, Metrics) and "loss" in e.values]
        assert [m.step for m in console] == sorted(expected), size
        for m in console:
            for key in keys:  # the console prints 4 significant digits
                assert m.values[key] == pytest.approx(expected[m.step][key], rel=2e-3, abs=1e-6), (size, key)
    assert parser.finished is not None and parser.end_time


def test_the_dpo_margin_grows_in_the_recorded_run():
    steps = logged_steps("dpo")
    first, last = steps[min(steps)], steps[max(steps)]
    assert first["rewards/margins"] == 0 and last["rewards/margins"] > 5
    assert last["rewards/accuracies"] == 1 and last["loss"] < 0.01 < first["loss"]


def test_kind_labels():
    assert kinds.label("sft") == "sft" and kinds.label("rlhf") == "rlhf/dpo"
    assert kinds.label_of_argv("rlhf", ["--model", "m", "--rlhf_type", "grpo"]) == "rlhf/grpo"
    assert kinds.label_of_args_json(json.loads((DATA / "dpo" / "args.json").read_text())) == "rlhf/dpo"
    assert kinds.label_of_args_json(json.loads((DATA / "grpo" / "args.json").read_text())) == "rlhf/grpo"
    # ms-swift stores --rlhf_type simpo as cpo with loss_type simpo; pt differs from sft by use_chat_template
    assert kinds.label_of_args_json({"rlhf_type": "cpo", "loss_type": "simpo"}) == "rlhf/simpo"
    assert kinds.label_of_args_json({"use_chat_template": False}) == "pt"
    assert kinds.label_of_args_json({"use_chat_template": True}) == "sft"
    assert kinds.family({"loss": 1.0, "token_acc": 0.5}) == "sft"
    assert kinds.family({"rewards/chosen": 1, "rewards/rejected": 0, "rewards/margins": 1, "kl": 0.1}) == "kto"
    assert kinds.reward_functions(["rewards/Format/mean", "rewards/Format/std", "reward"]) == ["Format"]


# ---------------------------------------------------------------- GRPO completions


def test_grpo_completions_are_read_per_sample(tmp_path):
    tables = jsonl(DATA / "grpo" / "completions.jsonl")
    samples = [c for t in tables for c in completions.parse_table(t)]
    assert len(samples) == sum(len(t["completion"]) for t in tables) == 9 * 4
    assert tables[-1] == tables[-2]  # ms-swift writes the last step's table again with the train summary
    read = completions.CompletionsTail(DATA / "grpo", keep=100).poll()
    assert read == samples[:-4] and [c.step for c in read] == [s for s in range(1, 9) for _ in range(4)]
    from engine.demo import SELF_COGNITION

    questions = {q for q, _ in SELF_COGNITION}
    assert all(c.prompt in questions for c in samples), [c.prompt for c in samples][:4]
    assert all(set(c.rewards) == {"Format", "RepetitionPenalty"} for c in samples)
    assert any(c.rewards["RepetitionPenalty"] < 0 for c in samples)  # the recorded run's nonzero rewards
    assert all(c.advantage is not None for c in samples)
    first = tables[0]
    assert samples[0].completion == first["completion"][0]

    # tailing: the file grows line by line (a partial last line waits); a replaced file starts over
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    lines = (DATA / "grpo" / "completions.jsonl").read_bytes().splitlines(keepends=True)
    target = run_dir / completions.FILE
    tail = completions.CompletionsTail(run_dir)
    assert tail.poll() == []
    target.write_bytes(lines[0][:50])
    assert tail.poll() == []
    with open(target, "ab") as f:
        f.write(lines[0][50:] + lines[1])
    assert [c.step for c in tail.poll()] == [1] * 4 + [2] * 4
    target.write_bytes(lines[2])
    assert [c.step for c in tail.poll()] == [3] * 4 and [c.step for c in tail.samples] == [3] * 4

    # a long history: the first read looks at the newest bytes only
    big = tmp_path / "big"
    big.mkdir()
    (big / completions.FILE).write_bytes(b"".join(lines) * 100)
    assert (big / completions.FILE).stat().st_size > completions.TAIL_BYTES
    tail = completions.CompletionsTail(big, keep=16)
    new = tail.poll()
    assert 0 < len(new) < 8 * 4 * 100 and [c.step for c in tail.samples][-4:] == [8] * 4


def test_last_turn_of_a_rendered_prompt():
    assert completions.last_turn("<|im_start|>system\nYou are x.<|im_end|>\n<|im_start|>user\n你是谁?<|im_end|>\n"
                                 "<|im_start|>assistant\n") == "你是谁?"
    assert completions.last_turn("plain prompt") == "plain prompt"


# ---------------------------------------------------------------- runs, metrics, checkpoints show the kind


def swiftdeck(*args: str, home: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "SWIFTDECK_HOME": str(home), "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "tui.cli", *args], env=env, capture_output=True, text=True,
                          timeout=120, cwd=REPO)


def test_runs_metrics_and_checkpoints_show_the_kind(home, tmp_path):
    out = tmp_path / "output"
    dpo_dir, grpo_dir = out / "v0-20261130-113532", out / "v1-20261130-113756"
    shutil.copytree(DATA / "dpo", dpo_dir)
    shutil.copytree(DATA / "grpo", grpo_dir)
    for folder, step in ((dpo_dir, 20), (grpo_dir, 8)):
        ckpt = folder / f"checkpoint-{step}"
        ckpt.mkdir()
        (ckpt / "adapter_config.json").write_text(json.dumps({"r": 8, "lora_alpha": 32}))
        (ckpt / "adapter_model.safetensors").write_bytes(b"0" * 16)

    argv = json.loads((DATA / "dpo" / "args.json").read_text())
    rec = runs.create("rlhf", ["swift", "rlhf", "--rlhf_type", "dpo", "--output_dir", str(out)], str(tmp_path),
                      label="dpo run", output_dir=str(out))
    runs.update(rec.id, lambda r: (setattr(r, "status", "finished"), setattr(r, "exit_code", 0),
                                   setattr(r, "run_dir", str(dpo_dir))))
    assert RunSource.of_record(runs.load(rec.id)).kind == "rlhf/dpo"
    assert RunSource(run_dir=grpo_dir).kind == "rlhf/grpo" and argv["rlhf_type"] == "dpo"

    listed = swiftdeck("runs", home=home)
    line = next(x for x in listed.stdout.splitlines() if x.startswith(rec.id))
    assert " rlhf/dpo " in line and "20/20" in line, listed.stdout
    rows = json.loads(swiftdeck("runs", "--json", home=home).stdout)
    assert [r["training"] for r in rows] == ["rlhf/dpo"]

    metrics = swiftdeck("metrics", str(grpo_dir), home=home).stdout.splitlines()
    assert metrics[0] == "kind: rlhf/grpo (charts: grpo)"
    header = metrics[1].split()
    assert header[:6] == ["step", "loss", "reward", "reward_std", "kl", "completions/mean_length"]
    assert {"rewards/Format/mean", "rewards/RepetitionPenalty/mean"} <= set(header)
    assert json.loads(swiftdeck("metrics", rec.id, "--json", home=home).stdout)["kind"] == "rlhf/dpo"

    table = swiftdeck("checkpoints", str(out), home=home).stdout
    assert "rlhf/dpo lora qwen2 qwen2_5" in table and "rlhf/grpo lora qwen2 qwen2_5" in table
    assert [r.kind for r in checkpoints.scan(out)] == ["rlhf/dpo", "rlhf/grpo"]
