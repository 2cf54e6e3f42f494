"""Issue 15 item 6: at 80×24 on the Chat tab the digits type, Esc leaves the chat input (then the dashboard's keys
act again), Tab/Shift-Tab are in `?` help, and Enter on a checkpoint shows the Chat tab with the input focused."""
from __future__ import annotations

import asyncio

from test_tui_support import fixed_clock, make_run, settled, until
from tui.app import SwiftdeckApp
from tui.model import RunSource
from tui.screens.help import HelpScreen, key_rows
from tui.widgets.chat import ChatPane
from tui.widgets.checkpoints import CheckpointsPane, CheckpointTree


def test_chat_tab_at_80x24_digits_type_and_esc_leaves_the_input(home, tmp_path, swift_fixtures):
    rec = make_run(swift_fixtures, tmp_path, "finished")

    async def go():
        app = SwiftdeckApp(RunSource.of_record(rec), clock=fixed_clock, remember_theme=False, check_leftovers=False)
        async with app.run_test(size=(80, 24)) as pilot:
            await settled(pilot)
            chat_input = app.query_one("#chat-input")
            await pilot.press("4")
            assert await until(pilot, lambda: app.focused is chat_input)
            await pilot.press("1", "2", "3")
            assert chat_input.value == "123" and app.view_name == "chat"  # digits type
            await pilot.press("escape")  # leaves the input, keeps the text
            assert await until(pilot, lambda: app.focused is not chat_input)
            assert app.query_one(ChatPane) in app.focused.ancestors_with_self and chat_input.value == "123"
            await pilot.press("1")  # the dashboard's keys act again
            assert await until(pilot, lambda: app.view_name == "train")
            await pilot.press("4")
            assert await until(pilot, lambda: app.focused is chat_input)
            chat_input.value = ""
            await pilot.press("escape")  # an empty input: leaves it too
            assert await until(pilot, lambda: app.focused is not chat_input)
            await pilot.press("question_mark")
            assert await until(pilot, lambda: isinstance(app.screen, HelpScreen))
            rows = {(where, keys) for where, keys, _ in key_rows(app.screen.sections)}
            assert {("focus", "tab"), ("focus", "shift+tab")} <= rows
            assert any(where == "chat" and keys == "escape" and "Leave the chat input" in desc
                       for where, keys, desc in key_rows(app.screen.sections))
            await pilot.press("escape")
            await pilot.press("3")  # Checkpoints; Enter on one: the Chat tab, the input focused
            assert await until(pilot, lambda: app.focused is app.query_one(CheckpointTree))
            assert await until(pilot, lambda: app.query_one(CheckpointsPane).current() is not None)
            await pilot.press("enter")
            assert await until(pilot, lambda: app.view_name == "chat" and app.focused is chat_input)
            await pilot.press(*"?2")
            assert chat_input.value == "?2" and not isinstance(app.screen, HelpScreen)
    asyncio.run(go())
