"""Pilot tests (App.run_test) of each pane against the recorded ms-swift 4.6 run (tests/data/ms-swift-4.6)."""
from __future__ import annotations

import asyncio
import json
import subprocess
import sys

import psutil
import pytest

from engine import runs
from engine.gpu import GpuSampler
from test_tui_support import fixed_clock, make_run, settled, text_of, until
from tui import settings
from tui.app import SwiftdeckApp
from tui.model import RunSource
from tui.series import ema_debiased
from tui.widgets.chat import ChatPane
from tui.widgets.checkpoints import CheckpointsPane, CheckpointTree
from tui.widgets.gpu import GpuPane
from tui.widgets.header import FailureCard, RunHeader
from tui.widgets.log import LogPane, LogView
from tui.widgets.loss import Chart, LossPane


def run(coro):
    return asyncio.run(coro)


def app_for(rec, **kw) -> SwiftdeckApp:
    kw.setdefault("remember_theme", False)
    return SwiftdeckApp(RunSource.of_record(rec), clock=fixed_clock, **kw)


def jsonl_records(swift_fixtures):
    return [json.loads(line) for line in (swift_fixtures / "run-v2" / "logging.jsonl").read_text().splitlines()]


def test_header_loss_and_checkpoints_of_a_finished_run(home, tmp_path, swift_fixtures):
    rec = make_run(swift_fixtures, tmp_path, "finished")
    losses = [r for r in jsonl_records(swift_fixtures) if "loss" in r]

    async def go():
        app = app_for(rec)
        async with app.run_test(size=(160, 48)) as pilot:
            await settled(pilot)
            header = app.query_one(RunHeader).render_info().plain
            assert "finished" in header and "24/24" in header
            assert f"loss {losses[-1]['loss']:.4g}" in header
            loss = app.query_one(LossPane)
            assert loss.loss.ys == [r["loss"] for r in losses]
            assert loss.minis["learning_rate"].ys == [r["learning_rate"] for r in losses]
            assert loss.minis["memory(GiB)"].ys == [r["memory(GiB)"] for r in losses]
            assert "split_dataset_ratio" in text_of(app.query_one("#loss-hint"))  # no eval split in this run
            await pilot.press("right_square_bracket")
            assert loss.smoothing > 0.6
            assert loss.loss.ema == pytest.approx(ema_debiased(loss.loss.ys, loss.smoothing))
            await pilot.press("left_square_bracket", "left_square_bracket")
            assert loss.smoothing < 0.6
            assert f"EMA {loss.smoothing:g}" in [ln.label for ln in app.query_one("#loss-chart", Chart).lines]

            pane = app.query_one(CheckpointsPane)
            names = [[c.name for c in f.checkpoints] for f in pane.folders]
            assert names == [["checkpoint-20", "checkpoint-24"]]
            last = pane.folders[0].checkpoints[-1]
            assert last.is_last and last.lora_rank == 8
            tree = app.query_one(CheckpointTree)
            tree.focus()
            assert await until(pilot, lambda: pane.current() is last)  # the cursor starts on the newest checkpoint
            assert "r=8 alpha=32" in text_of(app.query_one("#ckpt-detail"))
            await pilot.press("up", "enter")
            chat = app.query_one(ChatPane)
            assert chat.checkpoint is not None and chat.checkpoint.name == "checkpoint-20"
            assert chat.target == str(chat.checkpoint.path)
            assert "checkpoint-20" in text_of(app.query_one("#chat-target"))
            assert not app.query_one(FailureCard).display
    run(go())


def test_chat_shows_the_base_model_until_a_checkpoint_is_picked(home, tmp_path, swift_fixtures):
    rec = make_run(swift_fixtures, tmp_path, "running")

    async def go():
        app = app_for(rec)
        async with app.run_test(size=(160, 48)) as pilot:
            await settled(pilot)
            chat = app.query_one(ChatPane)
            assert chat.checkpoint is None and chat.target == "/tmp/tiny"
            assert "base model /tmp/tiny" in text_of(app.query_one("#chat-target"))
            assert "running" in app.query_one(RunHeader).render_info().plain
            assert "20/24" in app.query_one(RunHeader).render_info().plain
    run(go())


def test_log_pane_filter_follow_and_new_lines(home, tmp_path, swift_fixtures):
    rec = make_run(swift_fixtures, tmp_path, "running")
    console = rec.console_log.read_bytes()

    async def go():
        app = app_for(rec, poll_s=0.2)
        async with app.run_test(size=(120, 40)) as pilot:
            await settled(pilot)
            pane, view = app.query_one(LogPane), app.query_one(LogView)
            assert pane.store.complete == console.count(b"\n")
            assert view.follow and view.scroll_y == view.max_scroll_y > 0
            # scroll up: follow pauses and new lines are counted
            view.focus()
            await pilot.press("home")
            assert not view.follow
            with open(rec.console_log, "ab") as fh:
                fh.write(b"\n" + b"".join(f"appended {i}\n".encode() for i in range(5)))
            assert await until(pilot, lambda: "6 new lines" in text_of(app.query_one("#log-status")))
            assert view.unseen == 6 and view.scroll_y == 0
            await pilot.press("end")
            assert view.follow and view.scroll_y == view.max_scroll_y
            # text filter
            await pilot.press("slash")
            await pilot.press(*"Saving model checkpoint", "enter")
            assert await until(pilot, lambda: view.view is not None and len(view.view))
            shown = [pane.store.line(i) for i in view.view]
            assert len(shown) == console.count(b"Saving model checkpoint") == 2
            assert all("Saving model checkpoint" in line for line in shown)
            assert "filter" in text_of(app.query_one("#log-status"))
            # lines arriving while filtered: only matches are added
            total = pane.store.count
            with open(rec.console_log, "ab") as fh:
                fh.write(b"[INFO:swift] Saving model checkpoint to /x/checkpoint-24\nunrelated\n")
            assert await until(pilot, lambda: f"/{total + 2:,} lines" in text_of(app.query_one("#log-status")))
            assert len(view.view) == 3
    run(go())


def test_failed_run_card_and_traceback_jump(home, tmp_path, swift_fixtures):
    rec = make_run(swift_fixtures, tmp_path, "failed")
    lines = rec.console_log.read_bytes().split(b"\n")
    first_tb = next(i for i, line in enumerate(lines) if line.startswith(b"Traceback (most recent call last)"))

    async def go():
        app = app_for(rec)
        async with app.run_test(size=(160, 48)) as pilot:
            await settled(pilot)
            card = app.query_one(FailureCard)
            assert card.display
            body = text_of(card)
            assert "exit code 1" in body and "torch.OutOfMemoryError: CUDA out of memory" in body
            assert "failed" in app.query_one(RunHeader).render_info().plain
            view = app.query_one(LogView)
            await pilot.press("t")
            assert not view.follow and view.scroll_y == first_tb
            assert app.query_one(LogPane).store.line(first_tb).startswith("Traceback")
            # level filter: errors only
            app.query_one(LogPane).set_filter(app.query_one(LogPane).filter.__class__(level="error"))
            assert await until(pilot, lambda: view.view is not None and len(view.view))
            shown = [app.query_one(LogPane).store.line(i) for i in view.view]
            assert any(s.startswith("Traceback") for s in shown) and not any("[INFO:swift]" in s for s in shown)
            assert "no step was logged" in app.query_one("#loss-chart", Chart).empty_note
    run(go())


@pytest.mark.skipif(GpuSampler().sample().available, reason="this machine has an NVIDIA GPU")
def test_no_gpu_pane_shows_cpu_and_ram_of_the_run_tree(home, tmp_path, swift_fixtures):
    """Real NVML probe (none here) and a real process tree: a child process recorded as the run's process."""
    rec = make_run(swift_fixtures, tmp_path, "running")
    child = subprocess.Popen([sys.executable, "-c", "import time; x = bytearray(30_000_000); time.sleep(60)"])
    try:
        runs.update(rec.id, lambda r: (setattr(r, "pid", child.pid),
                                       setattr(r, "create_time", psutil.Process(child.pid).create_time())))
        rec = runs.load(rec.id)

        async def go():
            app = app_for(rec, gpu_s=0.2)
            async with app.run_test(size=(160, 48)) as pilot:
                body = app.query_one(GpuPane).query_one("#gpu-body")
                assert await until(pilot, lambda: "This run's processes: 1" in text_of(body)), text_of(body)
                body = text_of(body)
                assert "No NVIDIA GPU (NVML not available)" in body
                assert "This run's processes: 1" in body and "CPU" in body and "RAM" in body
                assert "MB" in body  # ~30 MB resident
                assert "Traceback" not in body
        run(go())
    finally:
        child.kill()
        child.wait()


def test_checkpoint_actions_ask_first(home, tmp_path, swift_fixtures):
    rec = make_run(swift_fixtures, tmp_path, "finished")
    ckpt20 = next(p for p in tmp_path.rglob("checkpoint-20"))

    async def go():
        from tui.screens.confirm import ConfirmScreen

        app = app_for(rec, poll_s=0.2)
        async with app.run_test(size=(160, 48)) as pilot:
            await settled(pilot)
            app.query_one(CheckpointTree).focus()
            assert await until(pilot, lambda: app.focused is app.query_one(CheckpointTree))
            await pilot.press("up")  # checkpoint-20
            assert app.query_one(CheckpointsPane).current().name == "checkpoint-20"
            await pilot.press("O")
            assert await until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
            assert "rng_state.pth" in text_of(app.screen.query_one("#dialog-body"))
            await pilot.press("n")  # cancelled: nothing removed
            assert (ckpt20 / "rng_state.pth").exists()
            await pilot.press("O")
            assert await until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
            await pilot.press("y")
            await settled(pilot)
            assert not (ckpt20 / "rng_state.pth").exists() and (ckpt20 / "adapter_config.json").exists()
            await pilot.press("R")  # the recording has no optimizer state: refused with a reason
            assert await until(pilot, lambda: any("not resumable" in n.message for n in app._notifications))
            assert app.screen is app.screen_stack[0]
            await pilot.press("D")
            assert await until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
            assert "cannot be undone" in text_of(app.screen.query_one("#dialog-body"))
            await pilot.press("y")
            names = lambda: [c.name for f in app.query_one(CheckpointsPane).folders for c in f.checkpoints]  # noqa: E731
            assert await until(pilot, lambda: names() == ["checkpoint-24"])
            assert not ckpt20.exists()
    run(go())


def test_run_switcher_lists_every_run_and_opens_one(home, tmp_path, swift_fixtures):
    finished = make_run(swift_fixtures, tmp_path / "a", "finished")
    failed = make_run(swift_fixtures, tmp_path / "b", "failed")
    runs.update(failed.id, lambda r: setattr(r, "started_at", finished.started_at + 60))

    async def go():
        from textual.widgets import DataTable

        app = app_for(finished, output_dir=tmp_path / "a" / "output-finished")
        async with app.run_test(size=(160, 48)) as pilot:
            await settled(pilot)
            await pilot.press("w")
            assert await until(pilot, lambda: app.screen.query(DataTable) and app.screen.query_one(DataTable).row_count)
            table = app.screen.query_one(DataTable)
            rows = [table.get_row_at(i) for i in range(table.row_count)]
            rows = [r[1:] for r in rows]  # r[0]: the marks (▶ shown, ✓ picked): test_tui_compare
            assert [r[0] for r in rows] == [f"failed {failed.id}", f"finished {finished.id}"]
            assert rows[0][1] == "failed" and rows[1][1] == "finished"
            assert rows[1][2] == "24/24" and rows[1][3] != "-"
            assert table.cursor_row == 1  # the run shown
            await pilot.press("up", "enter")
            assert await until(pilot, lambda: app.query_one(FailureCard).display)
            assert app.watch.source.key == failed.id
    run(go())


def test_help_lists_every_key_and_quit_says_the_run_goes_on(home, tmp_path, swift_fixtures):
    rec = make_run(swift_fixtures, tmp_path, "running")

    async def go():
        from tui.screens.help import HelpScreen

        app = app_for(rec)
        async with app.run_test(size=(120, 40)) as pilot:
            await settled(pilot)
            await pilot.press("question_mark")
            assert await until(pilot, lambda: isinstance(app.screen, HelpScreen))
            described = {desc for _, _, desc in __import__("tui.screens.help", fromlist=["key_rows"])
                         .key_rows(app.screen.sections)}
            for binding in [*SwiftdeckApp.BINDINGS, *LogPane.BINDINGS, *LogView.BINDINGS,
                            *CheckpointsPane.BINDINGS]:
                assert binding.description in described
            await pilot.press("escape")
            commands = [c.title for c in app.get_system_commands(app.screen)]
            for title in ("Switch run", "New run", "Filter log", "Jump to Traceback", "Resume from checkpoint",
                          "Delete checkpoint", "Strip optimizer state", "Theme"):
                assert any(title in t for t in commands), title
            await pilot.press("q")
        assert app.return_value == rec.id  # the CLI prints "keeps running" for this
    run(go())


def test_theme_flag_palette_choice_is_remembered(home, tmp_path, swift_fixtures):
    rec = make_run(swift_fixtures, tmp_path, "finished")

    async def go():
        app = SwiftdeckApp(RunSource.of_record(rec), theme="swiftdeck-contrast")
        async with app.run_test(size=(80, 24)) as pilot:
            await settled(pilot)
            assert app.theme == "swiftdeck-contrast"
            app.theme = "swiftdeck-light"  # what the palette's theme command does
            assert await until(pilot, lambda: settings.load().get("theme") == "swiftdeck-light")
        again = SwiftdeckApp(RunSource.of_record(rec))
        async with again.run_test(size=(80, 24)) as pilot:
            await settled(pilot)
            assert again.theme == "swiftdeck-light"
    run(go())


def test_narrow_screen_switches_views(home, tmp_path, swift_fixtures):
    rec = make_run(swift_fixtures, tmp_path, "finished")

    async def go():
        app = app_for(rec)
        async with app.run_test(size=(80, 24)) as pilot:
            await settled(pilot)
            shown = lambda: {w.id for w in app.query(".pane") if w.display and w.parent.display}  # noqa: E731
            assert shown() == {"loss", "log"}
            await pilot.press("3")
            assert shown() == {"checkpoints"}
            await pilot.press("2")
            assert shown() == {"gpu"}
            await pilot.press("1")
            assert shown() == {"loss", "log"}
            await pilot.resize_terminal(160, 48)
            assert await until(pilot, lambda: shown() == {"loss", "log", "gpu", "checkpoints", "chat"})
    run(go())


def test_launch_form_preview_and_dataset_check(home, tmp_path):
    data = tmp_path / "data.jsonl"
    data.write_text("".join(json.dumps({"query": f"q{i}", "response": f"a{i}"}) + "\n" for i in range(3)))

    async def go():
        from textual.widgets import Input

        from tui.screens.launch import LaunchScreen

        app = SwiftdeckApp(None, remember_theme=False)
        async with app.run_test(size=(120, 48)) as pilot:
            await settled(pilot)
            assert "no run" in app.query_one(RunHeader).render_info().plain
            await pilot.press("n")
            assert await until(pilot, lambda: isinstance(app.screen, LaunchScreen))
            screen = app.screen
            screen.query_one("#f-model", Input).value = "/models/Qwen2.5-7B-Instruct"
            screen.query_one("#f-dataset", Input).value = str(data)
            assert await until(pilot, lambda: "rows" in text_of(screen.query_one("#dataset-check")))
            assert "3 rows" in text_of(screen.query_one("#dataset-check"))
            command = text_of(screen.query_one("#launch-command"))
            assert "swift sft --model /models/Qwen2.5-7B-Instruct" in command
            assert "--lora_rank 8" in command and "--gradient_accumulation_steps 16" in command
            screen.query_one("#f-dataset", Input).value = str(tmp_path / "missing.json")
            assert await until(pilot, lambda: "does not exist" in text_of(screen.query_one("#dataset-check")))
            screen.query_one("#f-epochs", Input).value = "many"
            assert await until(pilot, lambda: "epochs must be a number" in text_of(screen.query_one("#launch-command")))
            await pilot.press("escape", "y")  # the form has changes: "Discard changes?" asks first
            assert await until(pilot, lambda: len(app.screen_stack) == 1)
    run(go())


def test_a_read_of_the_run_is_never_doubled_not_even_across_a_switch_of_run(home, tmp_path, swift_fixtures,
                                                                            monkeypatch):
    """One reader per RunWatch at a time: a tick while the run's read still goes on is skipped. After a switch of
    run the old run's read is dropped, and it ending does not let a second read of the new run start beside the
    first. (Each read is held at a gate so that the order is the test's, not the scheduler's.)"""
    import threading
    from collections import Counter

    import tui.app
    from tui.model import RunWatch

    first = make_run(swift_fixtures, tmp_path / "a", "finished")
    second = make_run(swift_fixtures, tmp_path / "b", "failed")
    gates = {first.id: threading.Event(), second.id: threading.Event()}
    reading, reads = Counter(), Counter()

    class GatedWatch(RunWatch):
        def poll(self):
            key = self.source.key
            reading[key] += 1
            reads[key] += 1
            try:
                assert gates[key].wait(30)
                return super().poll()
            finally:
                reading[key] -= 1

    monkeypatch.setattr(tui.app, "RunWatch", GatedWatch)
    polls = lambda app: [w for w in app.workers if w.group == "poll" and not w.is_finished]  # noqa: E731

    async def go():
        app = app_for(first, poll_s=3600, gpu_s=3600, check_leftovers=False)
        async with app.run_test(size=(120, 40)) as pilot:
            assert await until(pilot, lambda: reading[first.id] == 1)
            app._tick()  # the interval's tick while the first read goes on: skipped
            assert len(polls(app)) == 1 and reads[first.id] == 1
            app.attach(RunSource.of_record(second))
            assert await until(pilot, lambda: reading[second.id] == 1)
            gates[first.id].set()  # the old run's read ends; what it read is not shown
            assert await until(pilot, lambda: reading[first.id] == 0 and len(polls(app)) == 1)
            app._tick()  # the second run's read still goes on: skipped
            assert len(polls(app)) == 1 and reads[second.id] == 1
            gates[second.id].set()
            assert await until(pilot, lambda: "failed" in app.query_one(RunHeader).render_info().plain)
            assert app.query_one(FailureCard).display and reads == {first.id: 1, second.id: 1}
    run(go())
