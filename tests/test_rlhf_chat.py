"""Issue 11, chat with and compare (A/B) a DPO adapter against the SFT adapter it started from: a real
`swift rlhf --rlhf_type dpo` run from the SFT demo's adapter (the demo's own command, `demo_dpo_args(adapter=...)`),
what ms-swift saved (the SFT LoRA trained further, whole: no second adapter to stack), the picker offering the
adapter the run started from, and both answers side by side in the dashboard (Pilot) and in `swiftdeck chat`."""
from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from engine import checkpoints, demo, lineage
from engine.ingest import RunReader
from test_tui_chat import answers, loaded, turn_over
from test_tui_support import text_of, until

REPO = Path(__file__).resolve().parents[1]
QUESTION = "你是谁?"


@pytest.fixture(scope="session")
def dpo_from_sft(demo_assets, trained_demo, tmp_path_factory) -> Path:
    """The last checkpoint of the DPO demo trained from the SFT demo's adapter (20 steps, about half a minute on 2
    idle cores). SWIFTDECK_TRAINED_DPO=<checkpoint of an earlier such run> skips the training."""
    reuse = os.environ.get("SWIFTDECK_TRAINED_DPO")
    if reuse:
        assert (Path(reuse) / "adapter_config.json").is_file(), f"SWIFTDECK_TRAINED_DPO={reuse}: not a checkpoint"
        return Path(reuse).absolute()
    out = tmp_path_factory.mktemp("dpo-from-sft") / "output"
    swift = Path(sys.executable).with_name("swift")
    args = demo.demo_dpo_args(demo_assets, out, adapter=trained_demo)
    log = out.parent / "dpo.log"
    with log.open("w") as f:
        proc = subprocess.run([str(swift), "rlhf", *args], stdout=f, stderr=subprocess.STDOUT,
                              stdin=subprocess.DEVNULL, timeout=900)
    assert proc.returncode == 0, log.read_text(errors="replace")[-3000:]
    (run,) = checkpoints.scan(out)
    return run.checkpoints[-1].path


def sft_of(dpo: Path) -> Path:
    return Path(json.loads((dpo.parent / "args.json").read_text(encoding="utf-8"))["adapters"][0])


@pytest.mark.slow
def test_a_dpo_checkpoint_from_sft_is_the_sft_lora_trained_further(dpo_from_sft):
    """ms-swift 4.6 loads `--adapters` trainable and saves that one LoRA again: the DPO checkpoint has the SFT
    adapter's tensors, moved; no second adapter (nor the reference) is saved beside it."""
    from safetensors.torch import load_file

    sft = sft_of(dpo_from_sft)
    assert [c.path for c in lineage.started_from(dpo_from_sft.parent)] == [sft]  # --adapters = --ref_adapters
    a, b = load_file(sft / "adapter_model.safetensors"), load_file(dpo_from_sft / "adapter_model.safetensors")
    assert sorted(a) == sorted(b)
    moved = [float((b[k] - a[k]).norm() / a[k].norm()) for k in a]
    assert all(0 < m < 0.5 for m in moved), moved  # trained further, not a fresh LoRA (its B would start at 0)
    assert not [p for p in dpo_from_sft.iterdir() if p.is_dir()]  # no ref_adapter/ or default/ sub-adapter

    # what the checkpoint alone scores (base + this LoRA) is what the run trained: the reward margin measured
    # over the 26 pairs is close to the one logged over the last epoch (2 steps of 13 pairs)
    proc = subprocess.run([sys.executable, "-m", "engine.preference", str(dpo_from_sft), "--json"],
                          capture_output=True, text=True, cwd=REPO, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(proc.stdout.splitlines()[-1])
    assert report["reference"] == f"base model + {sft}" and report["moved"] == 26 == report["prefers"]
    reader = RunReader(run_dir=dpo_from_sft.parent)
    reader.poll()
    logged = [m.values["rewards/margins"] for m in reader.state.metrics if "rewards/margins" in m.values][-2:]
    assert abs(report["mean_reward_margin"] - sum(logged) / 2) < 1.5, (report["mean_reward_margin"], logged)
    assert report["says_chosen_ref"] == 26  # the SFT adapter answers every pair with the chosen answer
    assert report["says_chosen"] == 26  # and so does the DPO adapter (the demo's --rpo_alpha 1 keeps them)


@pytest.mark.slow
def test_ab_dpo_adapter_against_the_sft_adapter_it_started_from(home, dpo_from_sft):
    from tui.app import SwiftdeckApp
    from tui.model import RunSource
    from tui.screens.chat_target import ChatTargetScreen
    from tui.widgets.chat import ChatMessage, ChatPane

    sft = sft_of(dpo_from_sft)
    chosen = dict(demo.SELF_COGNITION)[QUESTION]

    async def pick(pilot, path: Path) -> None:
        app = pilot.app
        await pilot.press("ctrl+o")
        assert await until(pilot, lambda: isinstance(app.screen, ChatTargetScreen), 10)
        screen = app.screen
        keys = [str(getattr(c, "path", c)) for c in screen.choices]
        assert str(path) in keys, keys
        await pilot.press("home")
        for _ in range(keys.index(str(path))):
            await pilot.press("down")
        await pilot.press("enter")
        assert await until(pilot, lambda: app.screen is not screen, 10)

    async def go():
        app = SwiftdeckApp(RunSource(run_dir=dpo_from_sft.parent), remember_theme=False, check_leftovers=False)
        async with app.run_test(size=(160, 48)) as pilot:
            await loaded(pilot)
            pane = app.query_one(ChatPane)
            pane.focus()
            pane.set_settings(replace(pane.settings, max_new_tokens=48))
            # by default, A/B on a checkpoint of this run compares it with the adapter the run started from
            await pick(pilot, dpo_from_sft)
            await pilot.press("ctrl+b")
            (_, a, _), (_, b, _) = pane.legs_targets()
            assert (a.adapter, b.adapter) == (str(sft), str(dpo_from_sft))
            assert await until(pilot, lambda: f"A/B {sft.name} ⟷ {dpo_from_sft.name}" in text_of(
                app.query_one("#chat-target")), 10)
            await pilot.press("ctrl+b")  # back to one chat

            # DPO as A, the SFT adapter as B, each picked with ctrl+o
            await pick(pilot, sft)  # the chat (side B): the SFT adapter, not in this run's folder
            assert pane.checkpoint is not None and pane.checkpoint.path == sft
            await pilot.press("ctrl+b")
            await pick(pilot, dpo_from_sft)  # side A: the DPO checkpoint
            assert await until(pilot, lambda: pane.partner is not None, 10)
            pilot.app.focused.value = QUESTION
            await pilot.press("enter")
            assert await turn_over(pilot, pane, 2, 600)
            a, b = pane.query_one(".ab-row").query(ChatMessage)
            assert a.who == f"A: {dpo_from_sft.name}" and b.who == f"B: {sft.name}"
            assert b.text.strip() == chosen, b.text  # the SFT adapter's trained answer
            assert a.text.strip() and a.info.get("finish_reason") == "stop", (a.text, a.info)
            assert app.chat.worker.client.stats()["base_loads"] == 1  # both adapters on one loaded base
            return a.text.strip()

    dpo_answer = asyncio.run(go())
    # the dashboard's A is what the DPO checkpoint answers when loaded alone (base + that LoRA, no SFT stacked)
    proc = subprocess.run([sys.executable, "-m", "engine.preference", str(dpo_from_sft), "--json"],
                          capture_output=True, text=True, cwd=REPO, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    pairs = {p["question"]: p for p in json.loads(proc.stdout.splitlines()[-1])["pairs"]}
    assert pairs[QUESTION]["answer"].strip() == dpo_answer


@pytest.mark.slow
def test_chat_cli_both_adapters_on_one_worker(home, dpo_from_sft):
    sft = sft_of(dpo_from_sft)
    env = {**os.environ, "SWIFTDECK_HOME": str(home), "PYTHONPATH": str(REPO)}
    script = f"{QUESTION}\nclear\n/use sft\n{QUESTION}\n"
    proc = subprocess.run([sys.executable, "-m", "tui.cli", "chat", "--adapters", f"dpo={dpo_from_sft}",
                           f"sft={sft}", "--max_new_tokens", "48"], input=script, capture_output=True, text=True,
                          env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    said = [x.strip() for x in re.split(r"\[\w+\] >>> ", proc.stdout) if x.strip()]  # after each prompt
    assert len(said) == 2 and said[0], proc.stdout  # the DPO adapter (the first: the target), then the SFT one
    assert said[1] == dict(demo.SELF_COGNITION)[QUESTION]
    assert "adapters: dpo, sft" in proc.stderr


def test_identity_check_reads_the_answers_of_a_preference_dataset(demo_assets):
    """check-identity (and the chat pane's ctrl+g) of a DPO checkpoint: its dataset is the pairs file in messages
    format; the chosen answers are the expected ones, so 你是谁? asks for the maker only, as the SFT dataset does."""
    from engine.identity import judge, questions

    asked, identity = questions(demo_assets.dpo_dataset, sample=5)
    expected = dict(asked)
    answers = dict(demo.SELF_COGNITION)
    assert len(asked) == 8 and [q for q, a in asked if a is None] == ["你能联网吗?"]  # no identity: not a pair
    assert all(expected[q] == answers[q] for q in expected if expected[q] is not None)
    assert set(identity) == {"CSDN 迪菲赫尔曼", "Swift-Robot"}
    assert judge(answers[QUESTION], expected[QUESTION], identity) == (True, "")
    assert questions(demo_assets.dataset, sample=5)[0][0] == asked[0]  # the same first question, same answer


def test_a_run_from_an_adapter_says_what_it_started_from(tmp_path):
    """`swiftdeck checkpoints` (and its JSON) name the --adapters a run trained further; engine.lineage gives the
    checkpoints the chat picker offers (the adapter and the reference, each once, only existing LoRA folders)."""
    sft = tmp_path / "sft" / "v0-20261130-000000" / "checkpoint-250"
    sft.mkdir(parents=True)
    (sft / "adapter_config.json").write_text(json.dumps({"r": 8, "lora_alpha": 32}))
    run = tmp_path / "dpo" / "v0-20261130-000001"
    (run / "checkpoint-20").mkdir(parents=True)
    (run / "checkpoint-20" / "adapter_config.json").write_text("{}")
    (run / "args.json").write_text(json.dumps({"rlhf_type": "dpo", "adapters": [str(sft)],
                                               "ref_adapters": [str(sft), str(tmp_path / "gone")]}))
    (folder,) = checkpoints.scan(tmp_path / "dpo")
    assert folder.adapters == [str(sft)] and folder.to_json()["adapters"] == [str(sft)]
    assert f"  started from {sft} (--adapters" in checkpoints.format_table([folder])
    assert [(c.path, c.lora_rank) for c in lineage.started_from(run)] == [(sft, 8)]
    assert lineage.started_from(tmp_path / "sft" / "v0-20261130-000000") == []  # no args.json: from nothing known
