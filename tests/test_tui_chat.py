"""Chat pane without a live model: transcripts, targets, settings, the target picker, A/B plumbing, and a snapshot.

Answers here are replayed from tests/data/chat_session.json: token pieces and `done` events recorded from the real
chat worker on the trained demo checkpoint (temperature 0; the untrained base answers random bytes, cut at 24
tokens). The replay goes through the pane's real streaming path (thread worker → messages → Markdown stream) and
its real transcript writing; the live tests with the worker are in test_tui_chat_live.py.
"""
from __future__ import annotations

import asyncio
import json
import threading
from pathlib import Path

import pytest

from engine import paths, runs
from test_tui_support import fixed_clock, make_run, settled, text_of, until
from tui.app import SwiftdeckApp
from tui.chat import transcript
from tui.chat.backend import Reply
from tui.chat.settings import ChatSettings
from tui.chat.target import for_base, for_checkpoint
from tui.model import RunSource
from tui.widgets.chat import ChatMessage, ChatPane
from tui.widgets.checkpoints import CheckpointsPane, CheckpointTree

SESSION = json.loads((Path(__file__).parent / "data" / "chat_session.json").read_text(encoding="utf-8"))


class ReplayBackend:
    """Replays recorded answers (by prompt and base/adapter) in place of the worker; same interface."""

    kind = "worker"

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.asked: list[tuple[str, list[dict]]] = []

    def needs_load(self, target) -> bool:
        return False

    def ensure(self, target) -> str:
        return target.label

    def stream(self, target, messages, settings, reply: Reply):
        self.asked.append((target.label, messages))
        side = "base" if target.adapter is None else "checkpoint-300"
        rec = next(r for r in SESSION if r["target"] == side and r["prompt"] == messages[-1]["content"])
        yield from rec["pieces"]
        reply.info = dict(rec["done"])

    def describe(self) -> str:
        return "replay of a recorded worker session"

    def close(self) -> None:
        pass


def run(coro):
    return asyncio.run(coro)


def app_for(rec, **kw) -> SwiftdeckApp:
    kw.setdefault("remember_theme", False)
    return SwiftdeckApp(RunSource.of_record(rec), clock=fixed_clock, check_leftovers=False, **kw)


async def loaded(pilot) -> None:
    """The dashboard shows its run: the first poll and GPU reading are applied, the browser lists the checkpoints."""
    await settled(pilot)
    assert await until(pilot, lambda: pilot.app.query_one(CheckpointsPane).current() is not None)


def answers(pane: ChatPane) -> list[ChatMessage]:
    return [m for m in pane.query(ChatMessage) if m.role == "assistant"]


async def turn_over(pilot, pane: ChatPane, answered: int, timeout: float = 30.0) -> bool:
    """The pane says the turn is over (it takes the next message) with `answered` answers in its log."""
    return await until(pilot, lambda: pane.turn is None and len(answers(pane)) == answered, timeout)


class Pieces(list):
    """The answer pieces the dashboard handled (a run_test message hook): each one a Markdown stream write."""

    def __call__(self, message) -> None:
        if isinstance(message, ChatMessage.Piece):
            self.append(message.text)


# ---------------------------------------------------------------- no UI


def test_transcript_goes_next_to_the_run_record_and_exports_markdown(home, tmp_path, swift_fixtures):
    rec = make_run(swift_fixtures, tmp_path, "finished")
    ckpt = Path(rec.run_dir) / "checkpoint-24"
    assert transcript.run_id_for(ckpt) == rec.id
    path = transcript.transcript_path("checkpoint-24", ckpt, rec.id)
    assert path == paths.runs_dir() / rec.id / "chat" / "checkpoint-24.jsonl"
    loose = tmp_path / "elsewhere" / "v0-20261127-000000" / "checkpoint-5"
    assert transcript.run_id_for(loose) is None
    assert transcript.transcript_path("checkpoint-5", loose, None) == \
        paths.data_dir() / "chat" / "v0-20261127-000000-checkpoint-5.jsonl"

    transcript.append(path, {"role": "user", "target": "checkpoint-24", "content": "你是谁?"})
    transcript.append(path, {"role": "assistant", "target": "checkpoint-24", "content": "我是 **Swift-Robot**。",
                             "finish_reason": "stop", "usage": {"completion_tokens": 6}, "ttft_s": 0.25,
                             "tokens_per_s": 18.6, "settings": {"temperature": 0}})
    transcript.append(path, {"role": "clear", "target": "checkpoint-24"})
    transcript.append(path, {"role": "user", "target": "checkpoint-24", "content": "hi", "side": "B", "vs": "base x"})
    transcript.append(path, {"role": "assistant", "target": "checkpoint-24", "content": "",
                             "finish_reason": "cancelled", "side": "B", "vs": "base x"})
    with open(path, "a", encoding="utf-8") as fh:
        fh.write('{"torn line')  # a crash mid-write loses only that line
    assert [r["role"] for r in transcript.read(path)] == ["user", "assistant", "clear", "user", "assistant"]
    md = transcript.export_markdown(path, "checkpoint-24")
    assert md == path.with_suffix(".md")
    text = md.read_text(encoding="utf-8")
    assert "## Conversation 1" in text and "## Conversation 2" in text
    assert "我是 **Swift-Robot**。" in text and "temperature 0 · 6 tokens · first token 0.25 s · 18.6 tok/s" in text
    assert "**checkpoint-24** [B, vs base x] (cancelled)" in text
    with pytest.raises(FileNotFoundError, match="nothing to export"):
        transcript.export_markdown(path.with_name("empty.jsonl"), "x")


def test_targets_come_from_args_json(home, tmp_path, swift_fixtures):
    rec = make_run(swift_fixtures, tmp_path, "finished")
    ckpt = Path(rec.run_dir) / "checkpoint-24"
    args = json.loads((ckpt / "args.json").read_text())
    t = for_checkpoint(ckpt)
    assert t.is_adapter and t.label == "checkpoint-24" and t.base["template"] == args["template"]
    assert t.base["torch_dtype"] == "float32"  # no GPU here: the worker forces it anyway
    merged = ckpt.with_name("checkpoint-24-merged")
    merged.mkdir()
    (merged / "args.json").write_text(json.dumps(args))
    m = for_checkpoint(merged)
    assert not m.is_adapter and m.base["model"] == str(merged) and m.base_key != t.base_key
    from engine.checkpoints import scan_run

    folders = [scan_run(Path(rec.run_dir))]
    b = for_base(args["model"], folders)
    assert b.base_key == t.base_key and b.label.startswith("base ")
    argv = ["--model", "/m/Qwen", "--model_type", "qwen2", "--template", "qwen2_5"]
    bare = for_base("/m/Qwen", [], argv)
    assert (bare.base["model_type"], bare.base["template"], bare.base["torch_dtype"]) == ("qwen2", "qwen2_5",
                                                                                           "float32")
    with pytest.raises(Exception, match="no args.json"):
        for_checkpoint(tmp_path)


@pytest.mark.parametrize("form,message", [
    (("warm", "", "512", "", True), "temperature: 'warm' is not a number"),
    (("3", "", "512", "", True), "temperature: 3 is outside 0..2"),
    (("0", "1.5", "512", "", True), "top_p: 1.5 is outside 0.01..1"),
    (("0", "", "-4", "", True), "max new tokens: '-4' is not a whole number"),
])
def test_settings_refuse_bad_input_with_one_line(form, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(")) as info:
        ChatSettings.parse(*form)
    assert "\n" not in str(info.value)


def test_settings_parse_and_describe():
    s = ChatSettings.parse("0.7", "0.9", "64", "You are a robot.", False)
    assert (s.temperature, s.top_p, s.max_new_tokens, s.system, s.history) == (0.7, 0.9, 64, "You are a robot.",
                                                                               False)
    assert s.describe() == "temp 0.7 · top_p 0.9 · max 64 · system: custom · history off"
    assert ChatSettings.parse("", "", "", " ", True) == ChatSettings()


# ---------------------------------------------------------------- the pane, replayed answers


def test_pane_streams_keeps_history_per_side_and_saves_transcripts(home, tmp_path, swift_fixtures):
    rec = make_run(swift_fixtures, tmp_path, "finished")

    async def go():
        app = app_for(rec)
        pieces = Pieces()
        async with app.run_test(size=(160, 48), message_hook=pieces) as pilot:
            await loaded(pilot)
            pane = app.query_one(ChatPane)
            replay = app.chat.worker = ReplayBackend()
            app.query_one(CheckpointTree).focus()
            await pilot.press("enter")  # the cursor starts on the newest checkpoint
            assert pane.checkpoint.name == "checkpoint-24"
            assert await until(pilot, lambda: app.focused.id == "chat-input")  # Enter on a checkpoint: chat with it
            app.focused.value = "你是谁?"
            await pilot.press("enter")
            assert await turn_over(pilot, pane, 1)
            answer = answers(pane)[-1]
            assert answer.text == "我是一个由 CSDN 迪菲赫尔曼 开发和维护的大语言模型。"
            assert len(pieces) == 5 and "".join(pieces) == answer.text  # five stream writes
            assert answer.query_one("Markdown").source == answer.text  # streamed into the Markdown widget
            assert "6 tokens" in text_of(answer.query_one(".msg-head"))
            assert app.focused.value == ""

            app.focused.value = "你能联网吗?"
            await pilot.press("enter")
            assert await turn_over(pilot, pane, 2)
            sent = replay.asked[-1][1]
            assert [m["content"] for m in sent] == ["你是谁?", "我是一个由 CSDN 迪菲赫尔曼 开发和维护的大语言模型。",
                                                     "你能联网吗?"]  # history is sent with the new message

            await pilot.press("ctrl+b")  # A/B: base vs checkpoint-24, histories start over
            assert "A/B base" in text_of(app.query_one("#chat-target"))
            app.focused.value = "你是谁?"
            await pilot.press("enter")
            assert await turn_over(pilot, pane, 4)
            a, b = pane.query(".ab-row").last().query(ChatMessage)  # side by side
            assert a.who.startswith("A: base ") and b.who == "B: checkpoint-24"
            assert a.text != b.text and "CSDN 迪菲赫尔曼" in b.text
            assert [len(messages) for _, messages in replay.asked[-2:]] == [1, 1]  # no history sent
            assert a.info["finish_reason"] == "length" and "cut at max tokens" in text_of(a.query_one(".msg-head"))

            folder = paths.runs_dir() / rec.id / "chat"
            ckpt_log = transcript.read(folder / "checkpoint-24.jsonl")
            assert [(r["role"], r.get("side")) for r in ckpt_log] == [
                ("user", None), ("assistant", None), ("user", None), ("assistant", None),
                ("user", "B"), ("assistant", "B")]
            assert ckpt_log[1]["usage"] == {"prompt_tokens": 21, "completion_tokens": 6}
            assert ckpt_log[1]["settings"]["temperature"] == 0
            base_log = transcript.read(next(folder.glob("base-*.jsonl")))
            assert [r["role"] for r in base_log] == ["user", "assistant"] and base_log[1]["side"] == "A"

            await pilot.press("ctrl+s")
            await settled(pilot)
            assert "CSDN 迪菲赫尔曼" in (folder / "checkpoint-24.md").read_text(encoding="utf-8")
            await pilot.press("ctrl+y")
            assert app.clipboard == b.text
            await pilot.press("ctrl+l")
            await settled(pilot)
            assert not pane.query(ChatMessage) and not pane.histories
            assert transcript.read(folder / "checkpoint-24.jsonl")[-1]["role"] == "clear"
    run(go())


def test_the_base_models_transcript_goes_next_to_the_run_shown(home, tmp_path, swift_fixtures):
    """Two runs of the same base model: chatting with the base writes next to the run shown, also after a switch
    of run (the path used to be remembered from the first run)."""
    first = make_run(swift_fixtures, tmp_path / "a", "finished")
    second = make_run(swift_fixtures, tmp_path / "b", "running")

    async def ask_the_base(pilot, answered: int) -> None:
        pane = pilot.app.query_one(ChatPane)
        assert await until(pilot, lambda: "base model" in text_of(pilot.app.query_one("#chat-target")))
        pilot.app.query_one("#chat-input").focus()
        pilot.app.query_one("#chat-input").value = "你是谁?"
        await pilot.press("enter")
        assert await turn_over(pilot, pane, answered)

    async def go():
        app = app_for(first)
        async with app.run_test(size=(160, 48)) as pilot:
            await loaded(pilot)
            app.chat.worker = ReplayBackend()
            await ask_the_base(pilot, 1)
            app.attach(RunSource.of_record(second))
            await settled(pilot)
            await ask_the_base(pilot, 2)
    run(go())
    for rec in (first, second):
        (saved,) = (paths.runs_dir() / rec.id / "chat").glob("base-*.jsonl")
        assert [r["role"] for r in transcript.read(saved)] == ["user", "assistant"], rec.id


def test_settings_screen_target_picker_and_refusals(home, tmp_path, swift_fixtures):
    rec = make_run(swift_fixtures, tmp_path, "finished")

    async def go():
        from tui.screens.chat_settings import ChatSettingsScreen
        from tui.screens.chat_target import ChatTargetScreen

        app = app_for(rec)
        async with app.run_test(size=(160, 48)) as pilot:
            await loaded(pilot)
            pane = app.query_one(ChatPane)
            app.chat.worker = ReplayBackend()
            await pilot.press("4")
            await pilot.press("ctrl+t")
            assert await until(pilot, lambda: isinstance(app.screen, ChatSettingsScreen))
            app.screen.query_one("#set-temperature").value = "hot"
            await pilot.press("enter")
            assert "temperature: 'hot' is not a number" in text_of(app.screen.query_one("#chat-settings-error"))
            app.screen.query_one("#set-temperature").value = "0.5"
            app.screen.query_one("#set-max-tokens").value = "4000"
            await pilot.press("enter")
            assert await until(pilot, lambda: "temp 0.5 · max 4000" in text_of(app.query_one("#chat-status")))
            assert not isinstance(app.screen, ChatSettingsScreen)
            assert (pane.settings.temperature, pane.settings.max_new_tokens) == (0.5, 4000)

            # the base alone cannot be compared with itself
            await pilot.press("ctrl+b")
            assert any("two different targets" in n.message for n in app._notifications)
            assert not pane.ab  # a failed ctrl+b leaves the chat as it was
            await pilot.press("ctrl+o")
            assert await until(pilot, lambda: isinstance(app.screen, ChatTargetScreen))
            assert [getattr(c, "name", c) for c in app.screen.choices] == ["base", "checkpoint-20", "checkpoint-24"]
            await pilot.press("down", "enter")
            assert await until(pilot, lambda: "adapter checkpoint-20" in text_of(app.query_one("#chat-target")))
            assert pane.checkpoint.name == "checkpoint-20"
            assert app.query_one(CheckpointsPane).chosen == str(pane.checkpoint.path)  # the browser mark follows
            await pilot.press("ctrl+b", "ctrl+o")
            assert await until(pilot, lambda: isinstance(app.screen, ChatTargetScreen))
            await pilot.press("down", "down", "enter")  # side A: checkpoint-24
            assert await until(pilot, lambda: "A/B checkpoint-24 ⟷ checkpoint-20" in text_of(app.query_one("#chat-target")))
            await pilot.press("ctrl+b", "ctrl+o")
            assert await until(pilot, lambda: isinstance(app.screen, ChatTargetScreen))
            await pilot.press("home", "enter")  # back to the base: the identity check refuses
            assert await until(pilot, lambda: "base model" in text_of(app.query_one("#chat-target")))
            assert pane.checkpoint is None
            await pilot.press("ctrl+g")
            assert any("compares the base with a LoRA checkpoint" in n.message for n in app._notifications)
            await pilot.press("ctrl+z")
            assert pane.is_maximized
            await pilot.press("escape")  # nothing streaming: Esc un-zooms
            assert not pane.is_maximized
    run(go())


def test_merge_asks_first_and_refuses_a_merged_model(home, tmp_path, swift_fixtures):
    rec = make_run(swift_fixtures, tmp_path, "finished")
    (Path(rec.run_dir) / "checkpoint-24-merged").mkdir()

    async def go():
        from tui.screens.confirm import ConfirmScreen

        app = app_for(rec)
        async with app.run_test(size=(160, 48)) as pilot:
            await loaded(pilot)
            app.query_one(CheckpointTree).focus()
            assert app.query_one(CheckpointsPane).current().name == "checkpoint-24-merged"
            assert "merged: full model" in str(app.query_one(CheckpointTree).cursor_node.label)
            await pilot.press("M")
            assert await until(pilot, lambda: any("not a LoRA adapter: nothing to merge" in n.message
                                                  for n in app._notifications))
            await pilot.press("up", "M")  # checkpoint-24: its -merged folder exists already
            assert await until(pilot, lambda: any("already exists" in n.message for n in app._notifications))
            assert not isinstance(app.screen, ConfirmScreen)
            await pilot.press("up", "M")  # checkpoint-20
            assert await until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
            assert "--merge_lora true" in text_of(app.screen.query_one("#dialog-body"))
            await pilot.press("n")
            assert not any(r.kind == "export" for r in runs.all_runs())
    run(go())


# ---------------------------------------------------------------- snapshot


def test_chat_pane_snapshot(_snapshot_dir, snap_compare, home, tmp_path, swift_fixtures):
    """The zoomed chat pane after one answer and one A/B turn, replayed from the recorded session."""
    rec = make_run(swift_fixtures, tmp_path / "work", "finished")
    app = SwiftdeckApp(RunSource.of_record(rec), clock=fixed_clock, poll_s=3600, gpu_s=3600, remember_theme=False,
                       check_leftovers=False)

    async def before(pilot):
        await loaded(pilot)
        pane = app.query_one(ChatPane)
        app.chat.worker = ReplayBackend()
        app.query_one("#chat-input").cursor_blink = False  # a blinking cursor would make the snapshot flaky
        app.query_one(CheckpointTree).focus()
        await pilot.press("enter")  # narrow: the Chat view, its input focused
        assert await until(pilot, lambda: app.focused is app.query_one("#chat-input"))
        await pilot.press("ctrl+z")
        await pane.send("你是谁?")
        assert await turn_over(pilot, pane, 1)
        await pilot.press("ctrl+b")
        await pane.send("你是谁?")
        assert await turn_over(pilot, pane, 3)
        app.clear_notifications()
        await settled(pilot)

    assert snap_compare(app, terminal_size=(110, 36), run_before=before)
