"""The run switcher and the comparison screen (Pilot, issue 13): training runs newest first, jobs behind `j`, the
run shown marked; Space picks runs, `c` opens one chart of their loss (a resumed run continuing its parent's curve,
the resume step marked) beside the arguments that differ. Run folders written as ms-swift writes them
(test_compare.write_run), plus registry records."""
from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from engine import runs
from test_compare import write_run
from test_tui_support import fixed_clock, make_run, settled, until
from tui.app import SwiftdeckApp
from tui.gpufeed import GpuFeed
from tui.model import RunSource
from tui.screens.compare import CompareScreen
from tui.screens.runs import RunsScreen


class NoGpu:
    def sample(self):
        from engine.gpu import NO_GPU, GpuSnapshot

        return GpuSnapshot(False, f"{NO_GPU}: none here", (), 0.0)

    def close(self) -> None:
        pass


def two_runs(out: Path) -> tuple[Path, Path]:
    """v0 (steps 1-6, checkpoints 4 and 6) and v1 resumed from v0's checkpoint-4 with another learning rate, with
    an eval loss at step 6 and 8."""
    a = write_run(out / "v0-20261130-100000", range(1, 7), total=8, loss0=9.0, saves=(4, 6))
    b = write_run(out / "v1-20261130-110000", range(5, 9), total=8, loss0=8.0, resume=a / "checkpoint-4",
                  saves=(6, 8), learning_rate=1e-3)
    with (b / "logging.jsonl").open("a") as f:
        for step, ev in ((6, 7.6), (8, 7.1)):
            f.write(json.dumps({"eval_loss": ev, "global_step/max_steps": f"{step}/8"}) + "\n")
    return a, b


def app_on(run_dir: Path, out: Path) -> SwiftdeckApp:
    return SwiftdeckApp(RunSource(run_dir=run_dir), output_dir=out, clock=fixed_clock,
                        gpu_feed=GpuFeed(NoGpu()), poll_s=3600, gpu_s=3600, remember_theme=False,
                        check_leftovers=False)


def _job(where: Path) -> runs.RunRecord:
    made = runs.create("deploy", ["swift", "deploy", "--model", "/tmp/tiny"], str(where), label="a deploy")

    def ended(r: runs.RunRecord) -> None:
        r.status, r.exit_code, r.ended_at = "stopped", 0, r.started_at + 5
    return runs.update(made.id, ended)


async def open_switcher(pilot) -> RunsScreen:
    await pilot.press("w")
    assert await until(pilot, lambda: isinstance(pilot.app.screen, RunsScreen) and pilot.app.screen._rows)
    return pilot.app.screen


async def pick(pilot, screen: RunsScreen, *keys: str) -> None:
    for key in keys:
        screen.query_one("#runs-table").move_cursor(row=[s.key for s in screen.sources].index(key))
        await pilot.press("space")


def test_switcher_lists_training_runs_newest_first_jobs_behind_a_toggle_and_marks_the_current(
        home, tmp_path, swift_fixtures):
    out = tmp_path / "output"
    a, b = two_runs(out)
    older = make_run(swift_fixtures, tmp_path / "w1", "finished", label="older")
    newer = make_run(swift_fixtures, tmp_path / "w2", "failed", label="newer")
    runs.update(newer.id, lambda r: setattr(r, "started_at", older.started_at + 600))
    job = _job(tmp_path)

    async def go():
        app = app_on(b, out)
        async with app.run_test(size=(160, 48)) as pilot:
            screen = await open_switcher(pilot)
            keys = [s.key for s in screen.sources]
            # no job; newest first: the folders' vN-20261130-… are newer than the records' 2026-11-27 starts
            assert keys == [str(b.resolve()), str(a.resolve()), newer.id, older.id]
            table = screen.query_one("#runs-table")
            assert table.get_row_at(0)[0].startswith("▶") and not table.get_row_at(2)[0].startswith("▶")
            assert table.cursor_row == 0  # on the run shown
            await pilot.press("J")
            assert [s.key for s in screen.sources][0] == job.id  # the newest of all now
            await pilot.press("J")
            assert job.id not in [s.key for s in screen.sources]
            await pick(pilot, screen, older.id)
            assert table.get_row_at(3)[0] == " ✓"
            await pilot.press("c")  # one run picked: not a comparison
            assert not isinstance(app.screen, CompareScreen)
            assert any("pick two or more" in n.message for n in app._notifications)
            await pilot.press("space")  # unpicked
            assert screen.picked == set()

    asyncio.run(go())


def test_compare_draws_each_run_joined_at_the_resume_step_and_lists_differing_arguments(home, tmp_path):
    out = tmp_path / "output"
    a, b = two_runs(out)

    async def go():
        app = app_on(a, out)
        async with app.run_test(size=(160, 48)) as pilot:
            screen = await open_switcher(pilot)
            await pick(pilot, screen, str(a.resolve()), str(b.resolve()))
            await pilot.press("c")
            assert await until(pilot, lambda: isinstance(app.screen, CompareScreen) and app.screen.comparison)
            await settled(pilot)
            cmp_screen = app.screen
            lines = {l.label: l for l in cmp_screen.query_one("#compare-chart").lines}
            # the resumed run continues its parent: steps 1-4 from v0, then its own 5-8
            assert lines["v1-20261130-110000"].xs == [1, 2, 3, 4, 5, 6, 7, 8]
            assert lines["v0-20261130-100000"].xs == [1, 2, 3, 4, 5, 6]
            assert lines["v1-20261130-110000 resumed"].xs == [4]
            assert lines["v1-20261130-110000 eval"].ys == [7.6, 7.1]
            assert lines["v1-20261130-110000 best"].xs == [8] and lines["v0-20261130-100000 best"].xs == [6]
            colors = {lines[f"{n}"].color for n in ("v0-20261130-100000", "v1-20261130-110000")}
            assert len(colors) == 2  # one theme colour per run
            args = cmp_screen.query_one("#compare-args")
            # in the switcher's order: v1 (newer) first
            assert [args.get_row_at(i) for i in range(args.row_count)] == [["learning_rate", "0.001", "0.003"]]
            runs_table = cmp_screen.query_one("#compare-runs")
            assert runs_table.get_row_at(0)[1:] == ["v1-20261130-110000", "7.2", "7.1", "checkpoint-8", "4"]
            assert runs_table.get_row_at(1)[-1] == "-"
            await pilot.press("escape")
            assert isinstance(app.screen, RunsScreen)

    asyncio.run(go())


def test_compare_snapshot(_snapshot_dir, snap_compare, home, tmp_path):
    out = tmp_path / "output"
    a, b = two_runs(out)

    async def to_compare(pilot):
        screen = await open_switcher(pilot)
        await pick(pilot, screen, str(a.resolve()), str(b.resolve()))
        await pilot.press("c")
        assert await until(pilot, lambda: isinstance(pilot.app.screen, CompareScreen) and pilot.app.screen.comparison)
        await settled(pilot)

    assert snap_compare(app_on(a, out), terminal_size=(160, 48), run_before=to_compare)


