"""The disk view (D) of the dashboard on real run folders (Pilot, issue 13): sizes of each run folder and
checkpoint and the free space; `p` prunes the run under the cursor keeping the best and the last N, after a
preview of the bytes freed and a confirmation; --readonly refuses it."""
from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

from test_compare import write_run
from test_tui_support import fixed_clock, settled, until
from tui.app import SwiftdeckApp
from tui.model import RunSource
from tui.screens.confirm import ConfirmScreen
from tui.screens.disk import DiskScreen
from engine.ops.disk import fmt_bytes


def size_of(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def a_run(out: Path) -> Path:
    run = write_run(out / "v0-20261130-100000", range(1, 9), total=8, loss0=9.0, saves=(2, 4, 6, 8))
    for step, n in ((2, 4000), (4, 5000), (6, 6000), (8, 7000)):
        (run / f"checkpoint-{step}" / "optimizer.pt").write_bytes(b"\1" * n)
    return run


def app_on(run: Path, **kw) -> SwiftdeckApp:
    return SwiftdeckApp(RunSource(run_dir=run), clock=fixed_clock, poll_s=3600, gpu_s=3600, remember_theme=False,
                        check_leftovers=False, **kw)


async def open_disk(pilot) -> DiskScreen:
    await pilot.press("u")
    assert await until(pilot, lambda: isinstance(pilot.app.screen, DiskScreen) and pilot.app.screen.summary)
    await settled(pilot)
    return pilot.app.screen


def test_disk_view_shows_sizes_and_free_space_and_prunes_keeping_best_and_last(home, tmp_path):
    out = tmp_path / "output"
    run = a_run(out)
    write_run(out / "v1-20261130-110000", range(1, 3), total=2, loss0=5.0)  # a second folder, no checkpoint

    async def go():
        app = app_on(run)
        async with app.run_test(size=(160, 48)) as pilot:
            screen = await open_disk(pilot)
            title = str(screen.query_one("#disk-title").render())
            assert str(out.resolve()) in title and f"free of {fmt_bytes(shutil.disk_usage(out).total)}" in title
            table = screen.query_one("#disk-table")
            rows = [table.get_row_at(i) for i in range(table.row_count)]
            assert [r[0] for r in rows] == ["v1-20261130-110000", "v0-20261130-100000", "  checkpoint-2",
                                            "  checkpoint-4", "  checkpoint-6", "  checkpoint-8"]
            assert rows[1][1] == fmt_bytes(size_of(run)) and rows[1][3] == "4 checkpoint(s)"
            assert rows[2][1] == fmt_bytes(size_of(run / "checkpoint-2")) and rows[2][2] == fmt_bytes(4000)
            assert rows[5][3].startswith("lora best") and "best" not in rows[4][3]
            table.move_cursor(row=3)  # a checkpoint row: prunes its run
            await pilot.press("plus")  # keep the last 2
            await pilot.press("p")
            assert await until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
            freed = size_of(run / "checkpoint-2") + size_of(run / "checkpoint-4")
            assert app.screen.title_text == f"Prune v0-20261130-100000: free {fmt_bytes(freed)}?"
            assert "delete checkpoint-2" in app.screen.details and "keep checkpoint-8" in app.screen.details
            assert (run / "checkpoint-2").exists()  # nothing yet: a preview
            await pilot.press("y")
            assert await until(pilot, lambda: not (run / "checkpoint-4").exists())
            await settled(pilot)
            assert sorted(p.name for p in run.glob("checkpoint-*")) == ["checkpoint-6", "checkpoint-8"]
            assert any(f"freed {fmt_bytes(freed)}" in n.message for n in app._notifications)
            assert await until(pilot, lambda: screen.query_one("#disk-table").row_count == 4)  # shown again

    asyncio.run(go())


def test_readonly_disk_view_refuses_to_prune(home, tmp_path):
    run = a_run(tmp_path / "output")

    async def go():
        app = app_on(run, readonly=True)
        async with app.run_test(size=(160, 48)) as pilot:
            screen = await open_disk(pilot)
            assert "p prunes" not in str(screen.query_one("#disk-hint").render())
            await pilot.press("p")
            await settled(pilot)
            assert not isinstance(app.screen, ConfirmScreen)
            assert any("pruning checkpoints is turned off" in n.message for n in app._notifications)
            assert len(list(run.glob("checkpoint-*"))) == 4

    asyncio.run(go())
