"""SVG snapshots of the main screen at 80×24, 120×40 and 200×56 (issue 15, items 7 and 8), on the recorded ms-swift
4.6 run (test_tui_support.make_run) while it runs, with a long label and one GPU; at 200×56 also with the focus in
the chat (the chat column widens). Deterministic as test_tui_snapshots: a fixed clock, one poll, fixed GPU readings.
Update after an intended change with `pytest tests/test_layout_snapshots.py --snapshot-update` and look at them.
"""
from __future__ import annotations

import pytest

from test_tui_snapshots import FixedSampler
from test_tui_support import fixed_clock, make_run, settled
from tui.app import SwiftdeckApp
from tui.gpufeed import GpuFeed
from tui.model import RunSource

pytestmark = pytest.mark.usefixtures("_snapshot_dir")

SIZES = [(80, 24), (120, 40), (200, 56)]


def _app(tmp_path, swift_fixtures) -> SwiftdeckApp:
    rec = make_run(swift_fixtures, tmp_path / "work", "running", label="lr-sweep-3e-4-rank16")
    return SwiftdeckApp(RunSource.of_record(rec), clock=fixed_clock, gpu_feed=GpuFeed(FixedSampler(True)),
                        poll_s=3600, gpu_s=3600, remember_theme=False, check_leftovers=False)


@pytest.mark.parametrize("size", SIZES, ids=[f"{w}x{h}" for w, h in SIZES])
def test_main_screen(snap_compare, home, tmp_path, swift_fixtures, size):
    assert snap_compare(_app(tmp_path, swift_fixtures), terminal_size=size, run_before=settled)


def test_main_screen_chatting_200x56(snap_compare, home, tmp_path, swift_fixtures):
    async def chat(pilot) -> None:
        await settled(pilot)
        pilot.app.query_one("#chat-input").focus()
        await pilot.pause()
        await settled(pilot)

    assert snap_compare(_app(tmp_path, swift_fixtures), terminal_size=(200, 56), run_before=chat)
