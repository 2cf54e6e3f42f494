"""A chat turn counts as done only once its answers show their end (issue 8 item 11): the worker thread posts the
last pieces and the `Finished` message to each answer widget, then `TurnDone` to the pane; the widget works through
its pieces (Markdown stream writes) at its own pace, so the pane must wait for it before it says the turn is over."""
from __future__ import annotations

import asyncio
import threading

from test_tui_chat import Pieces, turn_over
from test_tui_support import fixed_clock, make_run, text_of, until
from tui.app import SwiftdeckApp
from tui.chat.backend import Reply
from tui.model import RunSource
from tui.widgets.chat import ChatMessage, ChatPane
from tui.widgets.checkpoints import CheckpointsPane

PIECES = [f"{i} " for i in range(1500)]  # far faster than the widget can write them into its Markdown


class FloodBackend:
    """Streams PIECES as fast as a thread can post them, then ends like the worker does (finish_reason stop)."""

    kind = "worker"

    def __init__(self) -> None:
        self.lock = threading.RLock()

    def needs_load(self, target) -> bool:
        return False

    def ensure(self, target) -> str:
        return target.label

    def stream(self, target, messages, settings, reply: Reply):
        yield from PIECES
        reply.info = {"finish_reason": "stop", "usage": {"prompt_tokens": 3, "completion_tokens": len(PIECES)}}

    def describe(self) -> str:
        return "a flood of pieces"

    def close(self) -> None:
        pass


def test_a_turn_is_done_when_its_answer_shows_the_end(home, tmp_path, swift_fixtures):
    rec = make_run(swift_fixtures, tmp_path, "finished")

    async def go():
        app = SwiftdeckApp(RunSource.of_record(rec), clock=fixed_clock, remember_theme=False, check_leftovers=False)
        pieces, early, shown = Pieces(), [], []

        def watch(message) -> None:
            """On every message the dashboard handles: did the pane say the turn is over (it takes the next
            message) while its answer was still being written?"""
            pieces(message)
            for pane in shown:
                if pane.turn is None and any(not m.shown for m in pane.query(ChatMessage) if m.role == "assistant"):
                    early.append(len(pieces))

        async with app.run_test(size=(160, 48), message_hook=watch) as pilot:
            pane = app.query_one(ChatPane)
            shown.append(pane)
            assert await until(pilot, lambda: app.query_one(CheckpointsPane).current() is not None)
            app.query_one(CheckpointsPane).action_choose()
            app.chat.worker = FloodBackend()
            assert await until(pilot, lambda: app.focused is app.query_one("#chat-input"))
            app.focused.value = "count"
            await pilot.press("enter")  # typed: the answer widget lives in the app's context (the message hook)
            assert await turn_over(pilot, pane, 1, 120)
            assert not early, f"the turn was over after {early[0]} of {len(PIECES)} pieces"
            answer = pane.query(ChatMessage).last()
            assert (answer.info.get("finish_reason"), len(pieces), answer.text) == ("stop", len(PIECES),
                                                                                    "".join(PIECES))
            assert "1500 tokens" in text_of(answer.query_one(".msg-head"))
    asyncio.run(go())
