"""Issue 15 item 17: the keys users of htop, lazygit and k9s expect. j/k, g/G, Home/End in every list (the
checkpoint tree, the chat-target picker, the run switcher, the relaunch remedies); Up/Down history in the chat
input; `y` copies the run's swift command or the checkpoint path (OSC 52); `o` opens the log in $PAGER."""
from __future__ import annotations

import asyncio
import os
import sys

from test_tui_chat import ReplayBackend, turn_over
from test_tui_support import fixed_clock, make_run, settled, text_of, until
from engine.command import Command
from tui.app import SwiftdeckApp
from tui.model import RunSource
from tui.screens.chat_target import ChatTargetScreen
from tui.screens.runs import RunsScreen
from tui.widgets.checkpoints import CheckpointsPane, CheckpointTree


def app_for(rec) -> SwiftdeckApp:
    return SwiftdeckApp(RunSource.of_record(rec), clock=fixed_clock, remember_theme=False, check_leftovers=False)


def test_j_k_g_G_home_end_move_every_list(home, tmp_path, swift_fixtures):
    rec = make_run(swift_fixtures, tmp_path / "a", "finished")
    make_run(swift_fixtures, tmp_path / "b", "running")
    make_run(swift_fixtures, tmp_path / "c", "failed")

    async def go():
        app = app_for(rec)
        async with app.run_test(size=(160, 48)) as pilot:
            await settled(pilot)
            tree = app.query_one(CheckpointTree)
            assert await until(pilot, lambda: app.query_one(CheckpointsPane).current() is not None)
            tree.focus()
            last = tree.last_line
            assert last >= 2
            await pilot.press("g")
            assert tree.cursor_line == 0
            await pilot.press("j", "j")
            assert tree.cursor_line == 2
            await pilot.press("k")
            assert tree.cursor_line == 1
            await pilot.press("G")
            assert tree.cursor_line == last
            await pilot.press("home")
            assert tree.cursor_line == 0
            await pilot.press("end")
            assert tree.cursor_line == last

            await pilot.press("4", "ctrl+o")  # the chat-target picker (an OptionList)
            assert await until(pilot, lambda: isinstance(app.screen, ChatTargetScreen))
            options = app.screen.query_one("OptionList")
            n = options.option_count
            await pilot.press("g")
            assert options.highlighted == 0
            await pilot.press("j")
            assert options.highlighted == 1
            await pilot.press("G")
            assert options.highlighted == n - 1
            await pilot.press("k")
            assert options.highlighted == n - 2
            await pilot.press("home")
            assert options.highlighted == 0
            await pilot.press("end")
            assert options.highlighted == n - 1
            await pilot.press("escape")
            assert await until(pilot, lambda: not isinstance(app.screen, ChatTargetScreen))

            app.query_one(CheckpointTree).focus()
            await pilot.press("w")  # the run switcher (a DataTable; its own j shows jobs)
            assert await until(pilot, lambda: isinstance(app.screen, RunsScreen))
            table = app.screen.query_one("DataTable")
            assert await until(pilot, lambda: table.row_count == 3)
            app.screen.set_focus(table)
            await pilot.press("G")
            assert table.cursor_row == 2
            await pilot.press("k")
            assert table.cursor_row == 1
            await pilot.press("g")
            assert table.cursor_row == 0
            await pilot.press("end")
            assert table.cursor_row == 2
            await pilot.press("home")
            assert table.cursor_row == 0
    asyncio.run(go())


def test_up_arrow_walks_the_chat_history(home, tmp_path, swift_fixtures):
    rec = make_run(swift_fixtures, tmp_path, "finished")

    async def go():
        app = app_for(rec)
        async with app.run_test(size=(160, 48)) as pilot:
            await settled(pilot)
            pane = app.query_one("ChatPane")
            app.chat.worker = ReplayBackend()
            assert await until(pilot, lambda: app.query_one(CheckpointsPane).current() is not None)
            app.query_one(CheckpointTree).focus()
            await pilot.press("enter")  # chat with checkpoint-24, the input focused
            chat_input = app.query_one("#chat-input")
            assert await until(pilot, lambda: app.focused is chat_input)
            for n, prompt in enumerate(("你是谁?", "你能联网吗?"), 1):
                await pilot.press(*prompt, "enter")
                assert await turn_over(pilot, pane, n)
            await pilot.press(*"draft")
            await pilot.press("up")
            assert chat_input.value == "你能联网吗?" and chat_input.cursor_position == len("你能联网吗?")
            await pilot.press("up")
            assert chat_input.value == "你是谁?"
            await pilot.press("up")  # the oldest stays
            assert chat_input.value == "你是谁?"
            await pilot.press("down")
            assert chat_input.value == "你能联网吗?"
            await pilot.press("down")  # past the newest: what was being typed
            assert chat_input.value == "draft"
    asyncio.run(go())


def test_y_copies_the_command_or_the_checkpoint_path(home, tmp_path, swift_fixtures):
    rec = make_run(swift_fixtures, tmp_path, "finished")

    async def go():
        app = app_for(rec)
        async with app.run_test(size=(160, 48)) as pilot:
            await settled(pilot)
            await pilot.press("y")  # the log has the focus: the run's swift command
            assert await until(pilot, lambda: app.clipboard == Command.of_record(rec).display())
            assert app.clipboard.startswith("swift sft --model /tmp/tiny")
            assert any("copied the command of run" in n.message for n in app._notifications)
            assert await until(pilot, lambda: app.query_one(CheckpointsPane).current() is not None)
            app.query_one(CheckpointTree).focus()
            await pilot.press("y")  # in the checkpoints: the path under the cursor
            ckpt = app.query_one(CheckpointsPane).current()
            assert await until(pilot, lambda: app.clipboard == str(ckpt.path))
            assert ckpt.name == "checkpoint-24"
    asyncio.run(go())


def test_o_opens_the_log_in_the_pager_or_says_why_not(home, tmp_path, swift_fixtures, monkeypatch):
    """Pilot's headless terminal cannot be handed to a pager: it says so and names the log (the real pager is in
    the tmux journey test). A $PAGER that is not installed is named too."""
    rec = make_run(swift_fixtures, tmp_path, "finished")

    async def go():
        app = app_for(rec)
        async with app.run_test(size=(160, 48)) as pilot:
            await settled(pilot)
            monkeypatch.setenv("PAGER", "no-such-pager-here -R")
            await pilot.press("o")
            assert await until(pilot, lambda: any("pager 'no-such-pager-here' not found" in n.message
                                                  for n in app._notifications))
            monkeypatch.setenv("PAGER", f"{sys.executable} -c pass")
            await pilot.press("o")
            assert await until(pilot, lambda: any("cannot hand the screen to a pager" in n.message
                                                  and str(rec.console_log) in n.message for n in app._notifications))
            assert app.is_running
    asyncio.run(go())


def test_W_wraps_the_log_and_back(home, tmp_path, swift_fixtures):
    from tui.widgets.log import LogView

    rec = make_run(swift_fixtures, tmp_path, "finished")

    def shown(view, rows: int) -> list[str]:
        return ["".join(seg.text for seg in view.render_line(y)).rstrip() for y in range(rows)]

    async def go():
        app = app_for(rec)
        async with app.run_test(size=(160, 48)) as pilot:
            await settled(pilot)
            view = app.query_one(LogView)
            assert await until(pilot, lambda: view.total > 10)
            width = view.scrollable_content_region.width
            long_row = next(r for r in range(view.total) if len(view.store.line(r)) > 2 * width)
            text = view.store.line(long_row)
            view.focus()
            view.scroll_to_line(long_row)
            await settled(pilot)
            assert shown(view, 1)[0] == text[:width].rstrip()  # cut: the rest is to the right
            assert view.virtual_size.width > width
            await pilot.press("W")
            await settled(pilot)
            assert view.wrap and view.virtual_size.width == 1  # no sideways scrolling
            assert "wrapped" in text_of(app.query_one("#log-status"))
            pieces = -(-len(text) // width)
            assert "".join(shown(view, pieces)).replace(" ", "") == text.replace(" ", "")
            assert shown(view, pieces + 1)[-1] == view.store.line(long_row + 1)[:width].rstrip()
            await pilot.press("G")  # the end: the last line ends on the bottom row
            await settled(pilot)
            bottom = shown(view, view.scrollable_content_region.height)[-1]
            assert bottom and view.store.line(view.total - 1).rstrip().endswith(bottom)
            await pilot.press("W")
            await settled(pilot)
            assert not view.wrap and view.virtual_size.width > width
    asyncio.run(go())
