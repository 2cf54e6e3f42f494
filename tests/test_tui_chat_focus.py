"""Enter on a checkpoint means "chat with it": the question typed next goes into the chat input, not to the
dashboard's keys (`?` would open the help). On a narrow screen the Chat view comes up (issue 8 item 7)."""
from __future__ import annotations

import asyncio

import pytest

from test_tui_support import fixed_clock, make_run, until
from tui.app import SwiftdeckApp
from tui.model import RunSource
from tui.screens.help import HelpScreen
from tui.widgets.chat import ChatPane
from tui.widgets.checkpoints import CheckpointsPane, CheckpointTree


@pytest.mark.parametrize("size", [(160, 48), (80, 24)], ids=["wide", "narrow"])
def test_enter_on_a_checkpoint_puts_the_question_in_the_chat_input(home, tmp_path, swift_fixtures, size):
    rec = make_run(swift_fixtures, tmp_path, "finished")

    async def go():
        app = SwiftdeckApp(RunSource.of_record(rec), clock=fixed_clock, remember_theme=False, check_leftovers=False)
        async with app.run_test(size=size) as pilot:
            pane = app.query_one(CheckpointsPane)
            assert await until(pilot, lambda: pane.current() is not None)  # the cursor is on the newest checkpoint
            if size[0] < 120:
                await pilot.press("3")  # the Checkpoints view (focuses the tree)
            else:
                app.query_one(CheckpointTree).focus()
            assert await until(pilot, lambda: app.focused is app.query_one(CheckpointTree))
            await pilot.press("enter")
            chat = app.query_one(ChatPane)
            assert chat.checkpoint is not None and chat.checkpoint.name == "checkpoint-24"
            chat_input = app.query_one("#chat-input")
            assert await until(pilot, lambda: app.focused is chat_input, 5), app.focused
            assert chat.display and chat.parent.display  # on a narrow screen: the Chat view
            await pilot.press(*"你是谁?")
            assert chat_input.value == "你是谁?"
            assert not isinstance(app.screen, HelpScreen)
    asyncio.run(go())
