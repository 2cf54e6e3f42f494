"""Issue 15 item 5: A/B. A failed ctrl+b (one target only) leaves the chat as it was, able to send, with no
"now: nothing" line; leaving A/B goes back to the chat's own target and says so. Answers are replayed from the
recorded worker session (test_tui_chat.ReplayBackend)."""
from __future__ import annotations

import asyncio

from test_tui_chat import ReplayBackend, answers, app_for, loaded, turn_over
from test_tui_support import make_run, settled, text_of, until
from tui.screens.chat_target import ChatTargetScreen
from tui.widgets.chat import ChatPane


def dividers(pane: ChatPane) -> list[str]:
    return [text_of(d) for d in pane.query(".chat-divider")]


def test_failed_ab_leaves_the_chat_able_to_send_and_leaving_ab_goes_back(home, tmp_path, swift_fixtures):
    rec = make_run(swift_fixtures, tmp_path, "finished")

    async def go():
        app = app_for(rec)
        async with app.run_test(size=(160, 48)) as pilot:
            await loaded(pilot)
            pane = app.query_one(ChatPane)
            app.chat.worker = ReplayBackend()
            pane.focus()
            assert await until(pilot, lambda: "base model" in text_of(app.query_one("#chat-target")))
            await pilot.press(*"你是谁?", "enter")  # the base answers
            assert await turn_over(pilot, pane, 1)

            await pilot.press("ctrl+b")  # only the base: A/B cannot start
            assert await until(pilot, lambda: any("A/B not started" in n.message and "two different targets"
                                                  in n.message for n in app._notifications))
            assert not pane.ab and dividers(pane) == []  # no "now: nothing" line
            assert "base model" in text_of(app.query_one("#chat-target"))
            await pilot.press(*"你是谁?", "enter")  # the chat still sends
            assert await turn_over(pilot, pane, 2)

            await pilot.press("ctrl+o")  # not in A/B: the picker sets the chat's own target, not side A
            assert await until(pilot, lambda: isinstance(app.screen, ChatTargetScreen))
            assert "What the chat talks to" in text_of(app.screen.query_one("#dialog-title"))
            await pilot.press("end", "enter")  # checkpoint-24
            assert await until(pilot, lambda: pane.checkpoint is not None and pane.checkpoint.name == "checkpoint-24")
            await pilot.press("ctrl+b")
            assert await until(pilot, lambda: "A/B base tiny ⟷ checkpoint-24" in text_of(app.query_one("#chat-target")))
            await pilot.press(*"你是谁?", "enter")
            assert await turn_over(pilot, pane, 4)
            app.clear_notifications()
            await pilot.press("ctrl+b")  # leaving A/B: back to checkpoint-24, and it says so
            assert await until(pilot, lambda: "adapter checkpoint-24" in text_of(app.query_one("#chat-target")))
            assert any("A/B off: the chat talks to checkpoint-24 again" in n.message for n in app._notifications)
            assert dividers(pane)[-1] == "── now: checkpoint-24 ──"
            assert not any("nothing" in d for d in dividers(pane))
            await pilot.press(*"你是谁?", "enter")
            assert await turn_over(pilot, pane, 5)
            assert answers(pane)[-1].who == "checkpoint-24"
            await settled(pilot)
    asyncio.run(go())
