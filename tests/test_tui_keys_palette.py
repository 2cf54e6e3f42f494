"""Issue 15 item 16: bindings, palette entries and `?` help come from one table (SwiftdeckApp.key_sections): every
key is in the palette and in help, and ctrl+p "merge" finds the merge action."""
from __future__ import annotations

import asyncio

from textual.binding import Binding
from textual.command import CommandPalette

from test_tui_support import fixed_clock, make_run, settled, until
from tui.app import PALETTE, PALETTE_SKIP, SwiftdeckApp
from tui.model import RunSource
from tui.screens.confirm import ConfirmScreen
from tui.screens.help import HelpScreen, key_rows


def run(coro):
    return asyncio.run(coro)


def test_every_binding_is_in_the_palette_and_in_help(home, tmp_path, swift_fixtures):
    rec = make_run(swift_fixtures, tmp_path, "finished")

    async def go():
        app = SwiftdeckApp(RunSource.of_record(rec), clock=fixed_clock, remember_theme=False)
        async with app.run_test(size=(160, 48)) as pilot:
            await settled(pilot)
            titles = {c.title for c in app.get_system_commands(app.screen)}
            await pilot.press("question_mark")
            assert await until(pilot, lambda: isinstance(app.screen, HelpScreen))
            helped = {(where, desc) for where, _, desc in key_rows(app.screen.sections)}
            bindings = [(where, b) for where, _, bs in app.key_sections() for b in bs
                        if isinstance(b, Binding) and b.description]
            assert any(b.action == "merge" for _, b in bindings)
            for where, b in bindings:
                assert (where, b.description) in helped, b
                if b.action in PALETTE_SKIP and b.action != "quit":  # Esc in the open filter, j/k in lists: nothing
                    continue                                           # to run from the palette
                title = "Quit" if b.action == "quit" else PALETTE.get(b.action, (b.description,))[0]  # Textual's Quit
                assert title in titles, b
    run(go())


def test_ctrl_p_merge_finds_the_merge_action(home, tmp_path, swift_fixtures):
    rec = make_run(swift_fixtures, tmp_path, "finished")

    async def go():
        app = SwiftdeckApp(RunSource.of_record(rec), clock=fixed_clock, remember_theme=False)
        async with app.run_test(size=(160, 48)) as pilot:
            await settled(pilot)
            await pilot.press("3")  # the checkpoints, with the newest under the cursor
            await settled(pilot)
            await pilot.press("ctrl+p")
            assert await until(pilot, lambda: isinstance(app.screen, CommandPalette))
            await pilot.press(*"merge")
            palette = app.screen
            options = palette.query_one("CommandList")
            assert await until(pilot, lambda: options.option_count > 0
                               and "Merge LoRA" in str(options.get_option_at_index(0).prompt))
            await pilot.press("enter")
            assert await until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
            assert "Merge checkpoint-" in str(app.screen.title_text)
            await pilot.press("n")
    run(go())
