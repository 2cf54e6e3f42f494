"""Charts (issue 15 item 9), in the real dashboard at 120×40: titles stay once data arrive, step ticks are whole
steps from the first step to the last, each axis covers its data (one point of token_acc 0 is not drawn on -1..1)."""
from __future__ import annotations

import asyncio
import re

import pytest

from test_scale import write_run
from test_tui_support import until
from tui.app import SwiftdeckApp
from engine.ops.runs import resolve
from tui.widgets.loss import MINI_IDS, Chart, LossPane, step_ticks, value_range

def axis_labels(text: str) -> tuple[list[str], list[str]]:
    """(x tick labels, y tick labels) of a rendered plotext chart."""
    lines = text.splitlines()
    bottom = max(i for i, line in enumerate(lines) if "└" in line)
    xs = lines[bottom + 1].split() if bottom + 1 < len(lines) else []
    ys = [m.group(1) for line in lines[:bottom] if (m := re.match(r"^\s*(\S+)┤", line))]
    return xs, ys


def charts_of(run_dir, size=(120, 40)) -> dict[str, str]:
    async def go():
        app = SwiftdeckApp(resolve(str(run_dir)), remember_theme=False)
        async with app.run_test(size=size) as pilot:
            assert await until(pilot, lambda: app.query_one(LossPane).has_metrics
                               and app.query_one("#loss-chart", Chart).lines
                               and app.query_one(f"#{MINI_IDS[0]}", Chart).lines)
            await pilot.pause()
            return {c.id: c.render().plain for c in app.query(Chart)}
    return asyncio.run(go())


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("SWIFTDECK_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def test_small_charts_keep_titles_and_their_x_axes_reach_the_last_step(home, tmp_path):
    charts = charts_of(write_run(tmp_path / "v0-20260101-000000", steps=250, eval_every=10 ** 9))
    titles = {"mini-learning-rate": "learning rate", "mini-grad-norm": "grad_norm", "mini-token-acc": "token_acc",
              "mini-memory": "memory GiB"}
    for chart_id, title in titles.items():
        text = charts[chart_id]
        assert text.splitlines()[0].strip() == title, text  # the learning-rate title used to vanish at 120 columns
        xs, _ = axis_labels(text)
        assert xs[0] == "1" and xs[-1] == "250", text  # the axis used to stop at 125.5
    for chart_id, text in charts.items():
        xs, _ = axis_labels(text)
        assert xs and all(x.isdigit() for x in xs), (chart_id, xs)  # whole steps, never 63.2
    xs, ys = axis_labels(charts["loss-chart"])
    assert xs[0] == "1" and xs[-1] == "250" and len(xs) >= 4
    assert float(ys[0]) == 5.0 and float(ys[-1]) == 4.0  # the loss goes from 5.0 - 1/250 down to 4.0


def test_one_point_gets_an_axis_around_it_not_minus_one_to_one(home, tmp_path):
    charts = charts_of(write_run(tmp_path / "v0-20260101-000000", steps=1, eval_every=10 ** 9))
    _, ys = axis_labels(charts["mini-token-acc"])  # the logged token_acc is 0.0
    assert ys and all(float(y) >= 0 for y in ys) and float(ys[0]) > 0, ys
    xs, _ = axis_labels(charts["mini-grad-norm"])
    assert xs == ["1"]


def test_step_ticks_and_value_ranges():
    assert step_ticks(1, 250, 6) == [1, 50, 100, 150, 200, 250]
    assert step_ticks(1, 250, 2) == [1, 250]
    assert step_ticks(7, 7, 5) == [7]
    assert all(isinstance(t, int) for t in step_ticks(3, 1_000_003, 5))
    assert value_range(0.0, 0.0) == (0.0, 1.0)
    assert value_range(-2.0, -2.0)[0] < -2.0 < value_range(-2.0, -2.0)[1]
    assert value_range(0.5, 2.0) == (0.5, 2.0)


def test_the_smoothing_hint_shows_its_keys(home, tmp_path):
    """The hint is plain text: "[ and ]" used to vanish as if it were markup."""
    from textual.widgets import Static

    async def go():
        app = SwiftdeckApp(resolve(str(write_run(tmp_path / "v0-20260101-000000", steps=20))), remember_theme=False)
        async with app.run_test(size=(160, 48)) as pilot:
            hint = app.query_one("#loss-hint", Static)
            assert await until(pilot, lambda: "EMA smoothing" in str(hint.render()))
            assert "EMA smoothing 0.6 ([ and ] change it)" in str(hint.render()), str(hint.render())
    asyncio.run(go())
