"""A theme switch repaints every colour the dashboard draws in Python (issue 8 item 6): on a run that has ended,
where no new data will ever redraw a pane, the header, the failure card and the rest of the screen take the new
theme's colours."""
from __future__ import annotations

import asyncio

import pytest
from textual.color import Color
from textual.geometry import Region

from test_tui_support import fixed_clock, make_run, until
from tui.app import SwiftdeckApp
from tui.model import RunSource
from tui.widgets.checkpoints import CheckpointTree
from tui.widgets.failure import FailureCard
from tui.widgets.gpu import GpuPane
from tui.widgets.header import RunHeader

ROLES = ("primary", "accent", "success", "warning", "error")


def _hex(style) -> str:
    return Color.from_rich_color(style.color).hex.lower()


def drawn(widget) -> dict[str, str]:
    """Each piece of text the widget shows now (stripped) -> the colour it is drawn in."""
    lines = widget.render_lines(Region(0, 0, widget.size.width, widget.size.height))
    return {seg.text.strip(): _hex(seg.style) for line in lines for seg in line
            if seg.text.strip() and seg.style and seg.style.color}


def screen_colors(app) -> set[str]:
    """Every text colour on the screen as it is drawn now."""
    return {_hex(seg.style) for strip in app.screen._compositor.render_strips() for seg in strip
            if seg.text.strip() and seg.style and seg.style.color}


def theme_colors(app) -> dict[str, str]:
    """The active theme's colours for the roles the dashboard draws in (as Textual resolves its variables)."""
    return {name: Color.parse(app.theme_variables[name]).hex.lower() for name in ROLES}


def card_head(app) -> str | None:
    """The colour of the failure card's first line ("✖ Run failed ..."), once it is on screen."""
    return next((c for text, c in drawn(app.query_one(FailureCard)).items() if text.startswith("✖ Run")), None)


@pytest.mark.parametrize("state, status, role", [("finished", "✔ finished", "primary"),
                                                 ("failed", "✖ failed", "error")])
def test_theme_switch_repaints_a_run_that_no_longer_changes(home, tmp_path, swift_fixtures, state, status, role):
    rec = make_run(swift_fixtures, tmp_path, state)

    async def go():
        app = SwiftdeckApp(RunSource.of_record(rec), clock=fixed_clock, theme="swiftdeck-dark",
                           remember_theme=False, check_leftovers=False)
        async with app.run_test(size=(160, 48)) as pilot:
            header = app.query_one(RunHeader)
            dark = theme_colors(app)
            # every pane has drawn its data once, in the dark theme
            assert await until(pilot, lambda: drawn(header).get(status) == dark[role]
                               and app.query_one(CheckpointTree).root.children
                               and app.query_one(GpuPane).view is not None
                               and (state != "failed" or card_head(app) == dark["error"])), drawn(header)
            before = drawn(header)
            assert before["swiftdeck"] == dark["accent"]
            dark_screen = screen_colors(app)

            app.theme = "swiftdeck-light"  # what the command palette's theme switch does
            assert await until(pilot, lambda: theme_colors(app) != dark)
            light = theme_colors(app)
            assert await until(pilot, lambda: drawn(header).get(status) == light[role], 10), drawn(header)
            after = drawn(header)
            assert after["swiftdeck"] == light["accent"]
            assert after["step"] != before["step"]  # the muted labels too
            if state == "failed":
                assert card_head(app) == light["error"]

            # every pane: nothing on screen is drawn in a colour of the dark screen any more
            assert await until(pilot, lambda: not screen_colors(app) & dark_screen, 10), \
                screen_colors(app) & dark_screen
    asyncio.run(go())
