"""How the dashboard shares the screen (issue 15, items 7 and 8), measured with Pilot on a recorded ms-swift 4.6 run
at 80×24, 120×40 and 200×56: the widths of the columns, the chat widening while it has the focus, hints that are
shortened by whole parts, the status never cut, the loss chart's height and its legend, every checkpoint detail
row, and the GPU view filling its screen."""
from __future__ import annotations

import asyncio
import functools

import pytest
from textual.geometry import Region
from textual.widgets import Input, Static

from test_tui_snapshots import FixedSampler
from test_tui_support import fixed_clock, make_run, settled, until
from tui.app import SwiftdeckApp
from tui.gpufeed import GpuFeed
from tui.model import RunSource
from tui.widgets.chat import ChatPane
from tui.widgets.checkpoints import CheckpointsPane, CheckpointTree
from tui.widgets.gpu import GpuPane
from tui.widgets.header import RunHeader
from tui.widgets.log import LogPane
from tui.widgets.loss import Chart, LossPane

LONG_LABEL = "lr-sweep-3e-4-rank16-alpha32-bs8"


def _app(tmp_path, swift_fixtures, state: str = "running", label: str = "") -> SwiftdeckApp:
    rec = make_run(swift_fixtures, tmp_path / "work", state, label=label)
    return SwiftdeckApp(RunSource.of_record(rec), clock=fixed_clock, gpu_feed=GpuFeed(FixedSampler(True)),
                        poll_s=3600, gpu_s=3600, remember_theme=False, check_leftovers=False)


def pilot_test(fn):
    """An async Pilot test run as a plain pytest test (no async plugin here)."""
    @functools.wraps(fn)
    def run(*args, **kwargs):
        asyncio.run(fn(*args, **kwargs))
    return run


def _lines(widget) -> list[str]:
    return str(widget.render()).splitlines()


@pilot_test
async def test_wide_screen_gives_the_left_column_its_share(home, tmp_path, swift_fixtures):
    """200×56: the left column is no longer 56 columns; every checkpoint row shows whole (up to its r8)."""
    app = _app(tmp_path, swift_fixtures, "finished")
    async with app.run_test(size=(200, 56)) as pilot:
        await settled(pilot)
        left, log = app.query_one("#left"), app.query_one(LogPane)
        assert 80 <= left.size.width <= 100, left.size.width
        assert log.size.width <= 120, log.size.width  # the log used to get ~140
        tree = app.query_one(CheckpointTree)
        rows = [str(tree.get_node_at_line(n).label) for n in range(tree.last_line + 1)]
        leaves = [r for r in rows if r.startswith("checkpoint-")]
        assert len(leaves) == 2 and all(r.endswith("r8") for r in leaves), rows
        assert all(len(r) + 2 * tree.guide_depth <= tree.content_size.width for r in leaves)
        await pilot.resize_terminal(120, 40)  # 120 columns: the left column keeps its 56
        assert await until(pilot, lambda: left.size.width == 56)


@pytest.mark.parametrize("size", [(120, 40), (200, 56)], ids=["120x40", "200x56"])
@pilot_test
async def test_chat_widens_while_it_has_the_focus(home, tmp_path, swift_fixtures, size):
    """Chatting: the chat column takes ~62% of the width (each A/B side half of it); back in the log, it shrinks."""
    app = _app(tmp_path, swift_fixtures)
    async with app.run_test(size=size) as pilot:
        await settled(pilot)
        chat = app.query_one(ChatPane)
        before = chat.outer_size.width
        app.query_one("#chat-input", Input).focus()
        assert await until(pilot, lambda: chat.outer_size.width >= int(size[0] * 0.6))
        assert chat.outer_size.width > before
        assert app.query_one("#right").size.width >= size[0] // 3  # the charts and the log keep a third
        app.query_one("#log-view").focus()
        assert await until(pilot, lambda: chat.outer_size.width == before)


@pytest.mark.parametrize("size", [(120, 40), (200, 56)], ids=["120x40", "200x56"])
@pilot_test
async def test_chat_hint_is_shortened_by_whole_parts(home, tmp_path, swift_fixtures, size):
    """The chat input's hint fits its width and ends on a whole part, never mid-word ("ctrl+o targe")."""
    app = _app(tmp_path, swift_fixtures)
    async with app.run_test(size=size) as pilot:
        await settled(pilot)
        box = app.query_one("#chat-input", Input)
        await until(pilot, lambda: box.content_size.width > 0)
        hint = box.placeholder
        assert hint.startswith("message (Enter sends)")
        assert len(hint) < box.content_size.width, (hint, box.content_size.width)
        full = "message (Enter sends) · Esc cancels · ctrl+o target · ctrl+b A/B · ? keys"
        assert all(part in full.split(" · ") for part in hint.split(" · ")), hint


@pytest.mark.parametrize("size", [(80, 24), (120, 40)], ids=["80x24", "120x40"])
@pilot_test
async def test_labelled_run_status_is_never_cut(home, tmp_path, swift_fixtures, size):
    """A long label: the name is cut ("…"), the status shows whole; step and loss stay on line 2."""
    app = _app(tmp_path, swift_fixtures, label=LONG_LABEL * 3)
    async with app.run_test(size=size) as pilot:
        await settled(pilot)
        header = app.query_one(RunHeader)
        line1, line2 = _lines(header)
        assert line1.rstrip().endswith("● running  sft"), line1  # the status and the kind, whole
        assert "…" in line1 and len(line1) <= header.content_size.width
        assert "step 20/24" in line2 and line2.rstrip().endswith("loss 6.083"), line2
        assert len(line2) <= header.content_size.width


@pilot_test
async def test_header_keeps_status_when_resized_narrower(home, tmp_path, swift_fixtures):
    app = _app(tmp_path, swift_fixtures, label=LONG_LABEL)
    async with app.run_test(size=(200, 56)) as pilot:
        await settled(pilot)
        header = app.query_one(RunHeader)
        assert LONG_LABEL in _lines(header)[0] and "swiftdeck" in _lines(header)[0]
        await pilot.resize_terminal(60, 24)
        assert await until(pilot, lambda: _lines(header)[0].rstrip().endswith("● running  sft")
                           and len(_lines(header)[0]) <= header.content_size.width)


@pilot_test
async def test_80x24_loss_chart_is_tall_and_its_legend_is_off_the_curve(home, tmp_path, swift_fixtures):
    app = _app(tmp_path, swift_fixtures)
    async with app.run_test(size=(80, 24)) as pilot:
        await settled(pilot)
        chart, pane = app.query_one("#loss-chart", Chart), app.query_one(LossPane)
        assert chart.size.height >= 9, chart.size.height  # 6 plot rows (plus frame and x axis); it was 4
        assert [line.label for line in chart.lines] == ["loss", "EMA 0.6"]
        assert "EMA" not in str(chart.render()) and "loss" not in str(chart.render())  # no legend in the plot
        assert "loss" in str(pane.border_subtitle) and "EMA 0.6" in str(pane.border_subtitle)
        assert app.query_one(LogPane).size.height >= 6  # inside its border: 5 log lines and its status


@pilot_test
async def test_80x24_checkpoint_details_show_every_row(home, tmp_path, swift_fixtures):
    app = _app(tmp_path, swift_fixtures)
    async with app.run_test(size=(80, 24)) as pilot:
        await settled(pilot)
        await pilot.press("3")
        pane = app.query_one(CheckpointsPane)
        assert await until(pilot, lambda: pane.display and pane.current() is not None)
        await settled(pilot)
        detail = app.query_one("#ckpt-detail", Static)
        rows = _lines(detail)
        keys = [r.split()[0] for r in rows if r.strip()]
        for key in ("step", "kind", "loss", "eval", "size", "resumable", "LoRA", "base"):
            assert key in keys, rows
        assert detail.size.height == len(rows), (detail.size.height, rows)  # every row on screen


@pilot_test
async def test_80x24_gpu_view_fills_the_screen(home, tmp_path, swift_fixtures):
    app = _app(tmp_path, swift_fixtures)
    async with app.run_test(size=(80, 24)) as pilot:
        await settled(pilot)
        await pilot.press("2")
        gpu = app.query_one(GpuPane)
        assert await until(pilot, lambda: gpu.display and gpu.region.height > 0)
        # header 2 + view bar 1 above, footer 1 below: the pane takes every row between
        assert gpu.region.y == 3 and gpu.region.bottom == 23, gpu.region


@pilot_test
async def test_120x40_loss_hint_wraps_at_word_boundaries(home, tmp_path, swift_fixtures):
    """The no-eval hint is longer than the loss pane is wide: it wraps onto a second row instead of "or -…"."""
    app = _app(tmp_path, swift_fixtures)
    async with app.run_test(size=(120, 40)) as pilot:
        await settled(pilot)
        hint = app.query_one("#loss-hint", Static)
        text = str(hint.render())
        assert "--val_dataset" in text and len(text) > hint.content_size.width  # too long for one row
        assert hint.size.height == 2, hint.size
        rows = [strip.text.strip() for strip in hint.render_lines(Region(0, 0, hint.size.width, hint.size.height))]
        assert " ".join(rows).split() == text.split(), rows  # every word, none cut ("…" nowhere)


@pilot_test
async def test_200x56_each_ab_side_gets_room_while_chatting(home, tmp_path, swift_fixtures):
    """An A/B answer row (as ChatPane mounts one: two ChatMessages in a Horizontal .ab-row) in the chat log: each
    side is over 55 columns at 200×56 while the chat has the focus (it was ~26)."""
    from textual.containers import Horizontal

    from tui.widgets.chat.message import ChatMessage

    app = _app(tmp_path, swift_fixtures)
    async with app.run_test(size=(200, 56)) as pilot:
        await settled(pilot)
        sides = [ChatMessage("assistant", "A checkpoint-20", "an answer"),
                 ChatMessage("assistant", "B base model", "another answer")]
        await app.query_one("#chat-log").mount(Horizontal(*sides, classes="ab-row"))
        app.query_one("#chat-input", Input).focus()
        assert await until(pilot, lambda: all(s.outer_size.width >= 55 for s in sides)), \
            [s.outer_size.width for s in sides]


def test_fit_leaves_out_whole_parts_least_needed_first():
    from rich.text import Text

    from tui.widgets.style import fit

    parts = [(0, Text("checkpoint-24")), (0, Text("  loss 6.104")), (2, Text("  last")), (3, Text("  62.2 KB")),
             (5, Text("  r8"))]
    assert fit(parts, 100).plain == "checkpoint-24  loss 6.104  last  62.2 KB  r8"
    assert fit(parts, 40).plain == "checkpoint-24  loss 6.104  last  62.2 KB"  # r8 first
    assert fit(parts, 32).plain == "checkpoint-24  loss 6.104  last"
    assert fit(parts, 10).plain == "checkpoint-24  loss 6.104"  # rank 0 always stays (the widget cuts it)


@pilot_test
async def test_120x40_checkpoint_rows_fit_by_leaving_out_whole_parts(home, tmp_path, swift_fixtures):
    """The checkpoint picked for chat ("◀ chat") in the 56-column left column: its row leaves out "r8" instead of
    being cut; the name, the mark, the loss and "last" show."""
    app = _app(tmp_path, swift_fixtures, "finished")
    async with app.run_test(size=(120, 40)) as pilot:
        await settled(pilot)
        pane, tree = app.query_one(CheckpointsPane), app.query_one(CheckpointTree)
        last = pane.folders[0].checkpoints[-1]
        pane.mark_chosen(str(last.path))
        await settled(pilot)
        rows = [str(tree.get_node_at_line(n).label) for n in range(tree.last_line + 1)]
        chosen = next(r for r in rows if "◀ chat" in r)
        assert chosen.startswith("checkpoint-24 ◀ chat  loss 6.104  last"), chosen
        assert "r8" not in chosen and len(chosen) + 2 * tree.guide_depth <= tree.content_size.width, (
            chosen, tree.content_size.width)
