"""The log filter, keyboard only (issue "The dashboard as a keyboard tool", item 10): a cleared text applied with Esc
clears the filter, the level drop-down opens inside the log pane (not over the footer) at every size, and a
horizontal scroll does not carry over to the next run opened."""
from __future__ import annotations

import asyncio

import pytest
from textual.widgets import Footer, Input, Select
from textual.widgets._select import SelectOverlay

from engine.gpu import NO_GPU, GpuSnapshot
from test_tui_support import FIXED_START, fixed_clock, make_run, until
from tui.app import SwiftdeckApp
from tui.gpufeed import GpuFeed
from tui.model import RunSource
from tui.screens.runs import RunsScreen
from tui.widgets.log import LogPane, LogView


class NoGpu:
    def sample(self) -> GpuSnapshot:
        return GpuSnapshot(False, f"{NO_GPU}: NVML Shared Library Not Found", (), FIXED_START)

    def close(self) -> None:
        pass


def app_for(rec) -> SwiftdeckApp:
    return SwiftdeckApp(RunSource.of_record(rec), clock=fixed_clock, gpu_feed=GpuFeed(NoGpu()), poll_s=3600,
                        gpu_s=3600, remember_theme=False, check_leftovers=False)


async def loaded(pilot, app) -> LogPane:
    pane = app.query_one(LogPane)
    assert await until(pilot, lambda: pane.store is not None and pane.store.count > 50)
    return pane


async def filtered(pilot, pane, text: str) -> bool:
    return await until(pilot, lambda: pane.filter.text == text and "filtering" not in str(
        pane.query_one("#log-status").render()))


def test_clearing_the_text_and_pressing_esc_clears_the_filter(home, tmp_path, swift_fixtures):
    rec = make_run(swift_fixtures, tmp_path, "finished")

    async def go():
        app = app_for(rec)
        async with app.run_test(size=(120, 40)) as pilot:
            pane = await loaded(pilot, app)
            total = pane.store.count
            await pilot.press("slash", *"output_dir", "enter")
            assert await filtered(pilot, pane, "output_dir")
            assert 0 < pane.view.total < total
            await pilot.press("slash")
            field = app.query_one("#log-filter-text", Input)
            assert await until(pilot, lambda: field.has_focus and field.value == "output_dir")
            await pilot.press(*["backspace"] * len("output_dir"))
            assert field.value == ""
            await pilot.press("escape")
            assert await filtered(pilot, pane, "")
            assert not pane.filter.active and pane.view.view is None and pane.view.total == total
            assert not app.query_one("#log-filter-bar").display and app.query_one(LogView).has_focus
    asyncio.run(go())


@pytest.mark.parametrize("size", [(80, 24), (120, 40), (200, 56)], ids=["80x24", "120x40", "200x56"])
def test_the_level_drop_down_opens_inside_the_log_pane(home, tmp_path, swift_fixtures, size):
    rec = make_run(swift_fixtures, tmp_path, "finished")

    async def go():
        app = app_for(rec)
        async with app.run_test(size=size) as pilot:
            pane = await loaded(pilot, app)
            await pilot.press("slash", "tab")  # from the text field to the level drop-down
            level = app.query_one("#log-filter-level", Select)
            assert await until(pilot, lambda: level.has_focus)
            await pilot.press("enter")
            assert await until(pilot, lambda: level.expanded)
            overlay = app.query_one(SelectOverlay).region
            footer = app.query_one(Footer).region
            assert overlay.bottom <= footer.y, (overlay, footer)
            assert pane.region.contains_region(overlay), (overlay, pane.region)
            await pilot.press("down", "enter")  # picks "warnings+"
            assert await until(pilot, lambda: pane.filter.level == "warning")
    asyncio.run(go())


def test_a_horizontal_scroll_does_not_carry_over_to_the_next_run(home, tmp_path, swift_fixtures):
    first = make_run(swift_fixtures, tmp_path / "a", "finished")
    second = make_run(swift_fixtures, tmp_path / "b", "running")  # as wide as the first

    async def go():
        app = app_for(first)
        async with app.run_test(size=(120, 40)) as pilot:
            await loaded(pilot, app)
            view = app.query_one(LogView)
            view.focus()
            await pilot.press(*["right"] * 12)
            assert await until(pilot, lambda: view.scroll_x > 0), view.scroll_x
            await pilot.press("w")  # the run switcher, which opens the run picked (its rows are its own business)
            assert await until(pilot, lambda: isinstance(app.screen, RunsScreen))
            app.screen.dismiss(RunSource.of_record(second))
            assert await until(pilot, lambda: app.query_one(LogPane).store is app.watch.log
                               and app.watch.log.count > 10)
            await pilot.pause()
            assert view.scroll_x == 0
    asyncio.run(go())


def test_wrap_shows_a_long_line_whole_on_several_rows_and_back(home, tmp_path, swift_fixtures):
    rec = make_run(swift_fixtures, tmp_path, "finished")

    async def go():
        app = app_for(rec)
        async with app.run_test(size=(200, 56)) as pilot:
            pane = await loaded(pilot, app)
            view = app.query_one(LogView)
            await pilot.pause()
            width, height = view.scrollable_content_region.width, view.scrollable_content_region.height
            long_rows = [i for i in range(pane.store.count) if len(pane.store.line(i)) > 2 * width]
            assert long_rows, "the recorded console has lines wider than the pane"
            last = pane.store.line(pane.store.count - 1)

            def screen() -> list[str]:
                return [view.render_line(y).text for y in range(height)]

            assert screen()[-1].rstrip() == last[:width].rstrip()  # one row per line
            pane.action_toggle_wrap()
            await pilot.pause()
            assert view.wrap and view.virtual_size.width == 1 and "wrapped" in str(
                pane.query_one("#log-status").render())
            rows = screen()
            pieces = -(-len(last) // width)
            assert "".join(rows[-pieces:]).rstrip() == last.rstrip()  # the end of the log, whole
            await pilot.press("home")  # the top of the log: the first wide line is whole too
            await pilot.pause()
            first = long_rows[0]
            assert first < height and len(pane.store.line(first)) < (height - first) * width  # on screen whole
            text = "".join(screen()).rstrip()
            assert pane.store.line(first).rstrip() in text
            pane.action_toggle_wrap()
            await pilot.pause()
            assert not view.wrap and screen()[first].rstrip() == pane.store.line(first)[:width].rstrip()
    asyncio.run(go())
