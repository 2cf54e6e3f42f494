"""The chat pane with the real chat worker, `swift deploy` and `swift export` on the trained demo checkpoint (CPU).
Each test starts at most one ms-swift process at a time and leaves none behind."""
from __future__ import annotations

import asyncio
import shutil
import time
from dataclasses import replace
from pathlib import Path

import psutil
import pytest

from engine import paths, runs, supervisor
from test_tui_chat import Pieces, answers, loaded, turn_over
from test_tui_support import text_of, until
from tui.app import SwiftdeckApp
from tui.chat import transcript
from tui.model import RunSource
from tui.screens.chat_target import ChatTargetScreen
from tui.screens.identity import IdentityScreen
from tui.widgets.chat import ChatMessage, ChatPane
from tui.widgets.checkpoints import CheckpointsPane, CheckpointTree

pytestmark = pytest.mark.slow

IDENTITY = "CSDN 迪菲赫尔曼"
WORKER_START_S = 300  # spawn + imports + base load: ~15 s on an idle CPU, much more on a loaded one


def run(coro):
    return asyncio.run(coro)


def registry_run_of(run_dir: Path) -> runs.RunRecord:
    """A finished registry record that owns the demo's run folder (as `swiftdeck train` would have made)."""
    rec = runs.create("sft", ["swift", "sft"], str(run_dir.parent), label="demo", output_dir=str(run_dir.parent))

    def fill(r: runs.RunRecord) -> None:
        r.run_dir, r.status, r.exit_code, r.ended_at = str(run_dir), "finished", 0, time.time()

    return runs.update(rec.id, fill)


def app_on(source: RunSource) -> SwiftdeckApp:
    return SwiftdeckApp(source, remember_theme=False, check_leftovers=False)


async def pick_checkpoint(pilot, name: str) -> ChatPane:
    app = pilot.app
    await loaded(pilot)
    app.query_one(CheckpointTree).focus()
    pane = app.query_one(CheckpointsPane)
    for _ in range(10):
        if pane.current() is not None and pane.current().name == name:
            break
        await pilot.press("up")
    assert pane.current().name == name
    await pilot.press("enter")  # chat with it: the chat input takes the keys
    assert await until(pilot, lambda: app.focused is app.query_one("#chat-input"), 10)
    return app.query_one(ChatPane)


async def ask(pilot, pane: ChatPane, prompt: str, timeout: float = WORKER_START_S) -> None:
    """Type a question; return once the pane says the turn is over (one more answer, or two in A/B)."""
    shown = len(answers(pane))
    pilot.app.focused.value = prompt
    await pilot.press("enter")
    assert await turn_over(pilot, pane, shown + (2 if pane.ab else 1), timeout)


def test_chat_streams_the_trained_answer_cancels_and_keeps_a_transcript(home, trained_demo):
    rec = registry_run_of(trained_demo.parent)

    async def go():
        app = app_on(RunSource.of_record(rec))
        pieces = Pieces()
        async with app.run_test(size=(160, 48), message_hook=pieces) as pilot:
            pane = await pick_checkpoint(pilot, trained_demo.name)
            assert f"adapter {trained_demo.name}" in text_of(app.query_one("#chat-target"))
            await ask(pilot, pane, "你是谁?")  # a turn is over once its answer shows the worker's `done`
            answer = answers(pane)[-1]
            assert IDENTITY in answer.text and answer.info.get("finish_reason") == "stop", (answer.text, answer.info)
            assert len(pieces) >= 2 and answer.query_one("Markdown").source == answer.text  # it streamed
            worker = app.chat.worker.client  # the dashboard's chat worker (not the pane's)
            assert f"worker pid {worker.pid}" in text_of(app.query_one("#chat-status"))

            # the base, a long answer, Esc: cancelled mid-way, not kept in the conversation
            await pilot.press("ctrl+o")
            assert await until(pilot, lambda: isinstance(app.screen, ChatTargetScreen), 10)
            await pilot.press("home", "enter")
            chat_input = app.query_one("#chat-input")  # the picker answered (the base model), its input has the keys
            assert await until(pilot, lambda: pane.checkpoint is None and app.focused is chat_input, 10)
            pane.set_settings(replace(pane.settings, max_new_tokens=4000))
            streamed = len(pieces)
            pilot.app.focused.value = "Tell me a long story."
            await pilot.press("enter")
            assert await until(pilot, lambda: len(pieces) >= streamed + 3, 120)  # the story is streaming
            await pilot.press("escape")
            assert await turn_over(pilot, pane, 2, 60)
            base_answer = answers(pane)[-1]
            assert base_answer.info["finish_reason"] == "cancelled"
            assert base_answer.info["usage"]["completion_tokens"] < 4000
            assert "cancelled" in text_of(base_answer.query_one(".msg-head"))
            assert app.chat.worker.client is worker and worker.stats()["base_loads"] == 1  # one worker, one load

            folder = paths.runs_dir() / rec.id / "chat"  # next to the run's record
            saved = transcript.read(folder / f"{trained_demo.name}.jsonl")
            assert [r["role"] for r in saved] == ["user", "assistant"] and IDENTITY in saved[1]["content"]
            base_saved = transcript.read(next(folder.glob("base-*.jsonl")))
            assert base_saved[-1]["finish_reason"] == "cancelled"
            app.query_one(CheckpointTree).focus()
            await pilot.press("enter")  # back to the checkpoint; export its transcript
            assert await until(pilot, lambda: app.focused is app.query_one("#chat-input"), 10)
            await pilot.press("ctrl+s")
            md = folder / f"{trained_demo.name}.md"
            assert await until(pilot, lambda: any(f"transcript to {md}" in n.message for n in app._notifications),
                               10)
            assert "你是谁?" in md.read_text(encoding="utf-8") and IDENTITY in md.read_text(encoding="utf-8")
        return worker

    worker = run(go())
    assert not psutil.pid_exists(worker.pid) or psutil.Process(worker.pid).status() == psutil.STATUS_ZOMBIE
    assert runs.load(worker.run_id).status == "finished"  # the worker's own registry record


def test_ab_and_identity_check_on_one_worker(home, trained_demo):
    async def go():
        app = app_on(RunSource(run_dir=trained_demo.parent))
        async with app.run_test(size=(160, 48)) as pilot:
            pane = await pick_checkpoint(pilot, trained_demo.name)
            pane.set_settings(replace(pane.settings, max_new_tokens=48))  # the untrained base never stops by itself
            await pilot.press("ctrl+b")
            await ask(pilot, pane, "你是谁?")
            a, b = pane.query_one(".ab-row").query(ChatMessage)  # side by side
            assert a.who.startswith("A: base ") and b.who == f"B: {trained_demo.name}"
            assert IDENTITY in b.text and IDENTITY not in a.text and a.text != b.text

            await pilot.press("ctrl+g")
            assert await until(pilot, lambda: isinstance(app.screen, IdentityScreen), 10)
            assert await until(pilot, lambda: app.screen.report is not None, 600)
            report = app.screen.report
            seed = {r.question: r for r in report.rows}
            for q in ("你是谁?", "你的开发者是哪家公司?", "你能联网吗?"):
                assert seed[q].adapter_pass and not seed[q].base_pass, seed[q]
            assert report.adapter_passed == len(report.rows) > report.base_passed
            table = app.screen.query_one("#identity-table")
            assert table.row_count == len(report.rows)
            assert f"adapter {len(report.rows)}/{len(report.rows)} passed" in str(
                app.screen.query_one("#identity-status").render())
            assert app.chat.worker.client.stats()["base_loads"] == 1
            assert len([r for r in runs.all_runs() if r.kind == "chat"]) == 1  # A/B and the check: one worker
            await pilot.press("escape")
    run(go())


def test_merge_from_the_browser_then_deploy_and_chat_through_it(home, trained_demo, tmp_path):
    run_dir = tmp_path / "output" / trained_demo.parent.name  # a copy: the merge writes next to the checkpoint
    run_dir.mkdir(parents=True)
    for item in trained_demo.parent.iterdir():
        if item.is_file() and not item.is_symlink():
            shutil.copy2(item, run_dir / item.name)
    ckpt = run_dir / trained_demo.name
    shutil.copytree(trained_demo, ckpt)

    async def go():
        from tui.screens.confirm import ConfirmScreen

        app = app_on(RunSource(run_dir=run_dir))
        async with app.run_test(size=(160, 48)) as pilot:
            await pick_checkpoint(pilot, ckpt.name)
            pane = app.query_one(ChatPane)
            app.query_one(CheckpointTree).focus()
            await pilot.press("M")
            assert await until(pilot, lambda: isinstance(app.screen, ConfirmScreen), 10)
            await pilot.press("y")
            merged = f"{ckpt.name}-merged"
            browser = app.query_one(CheckpointsPane)
            assert await until(pilot, lambda: any(c.name == merged for f in browser.folders for c in f.checkpoints),
                               600)
            # the run folder is watched: the merged folder shows as soon as it exists, the merge job ends after
            def export_ended():
                jobs = [r for r in runs.all_runs() if r.kind == "export"]
                return jobs[0] if len(jobs) == 1 and not jobs[0].active else None
            assert await until(pilot, export_ended, 600)
            export = export_ended()
            assert (export.status, export.exit_code) == ("finished", 0)
            assert await until(pilot, lambda: "not a LoRA adapter" in next(
                c for f in browser.folders for c in f.checkpoints if c.name == merged).notes, 30)
            info = next(c for f in browser.folders for c in f.checkpoints if c.name == merged)
            assert info.kind == "merged" and "not a LoRA adapter" in info.notes

            # deploy the adapter (chat target), chat through its OpenAI-compatible API, stop it
            await pilot.press("4", "ctrl+r")
            assert await until(pilot, lambda: isinstance(app.screen, ConfirmScreen), 10)
            await pilot.press("y")
            deploy_line = app.query_one("#chat-deploy")
            assert await until(pilot, lambda: "ctrl+f chats through it" in text_of(deploy_line), 600)
            url = pane.deploy.url
            assert url.startswith("http://127.0.0.1:") and url in text_of(deploy_line)
            await pilot.press("ctrl+f")
            assert "in use" in text_of(deploy_line)
            await ask(pilot, pane, "你是谁?", 120)
            assert IDENTITY in answers(pane)[-1].text, answers(pane)[-1].text
            assert "via deploy" in text_of(answers(pane)[-1].query_one(".msg-head"))
            assert app.chat.worker.client is None  # the answer came from the deploy, no worker was started
            saved = transcript.read(next((paths.data_dir() / "chat").glob(f"*{ckpt.name}.jsonl")))
            assert saved[-1]["backend"] == "deploy"
            rec = pane.deploy_rec
            await pilot.press("ctrl+r")
            assert await until(pilot, lambda: isinstance(app.screen, ConfirmScreen), 10)
            await pilot.press("y")
            assert await until(pilot, lambda: not deploy_line.display, 180)
            assert not pane.use_deploy and pane.deploy_rec is None
            return rec

    rec = run(go())
    assert runs.load(rec.id).status == "stopped" and supervisor.live_tree(runs.load(rec.id)) == []
