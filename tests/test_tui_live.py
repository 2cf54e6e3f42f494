"""The dashboard on LIVE runs: real `swift sft` on the tiny offline demo model (CPU), watched by a Pilot."""
from __future__ import annotations

import asyncio
import shutil

import pytest

from engine import runs
from test_tui_support import text_of, until
from tui.app import SwiftdeckApp
from tui.model import RunSource
from tui.widgets.gpu import GpuPane
from tui.widgets.header import RunHeader
from tui.widgets.log import LogPane
from tui.widgets.loss import Chart, LossPane

pytestmark = pytest.mark.slow


@pytest.fixture
def demo_home(home, demo_assets):
    """The session's demo build, placed where `swiftdeck demo` looks for it (no rebuild per test)."""
    shutil.copytree(demo_assets.model.parent, home / "demo")
    return home


def test_metrics_arrive_and_the_chart_grows_while_watching(demo_home):
    from engine.cli import start_demo

    rec = start_demo(epochs=4)  # 20 steps, a logged point every 5

    async def go():
        app = SwiftdeckApp(RunSource.of_record(rec), poll_s=0.25, gpu_s=0.5, remember_theme=False)
        async with app.run_test(size=(160, 48)) as pilot:
            loss = app.query_one(LossPane)
            seen: list[int] = []

            def grew() -> bool:
                if not seen or len(loss.loss) != seen[-1]:
                    seen.append(len(loss.loss))
                return len(loss.loss) >= 2 and len(set(seen)) >= 3

            assert await until(pilot, lambda: len(loss.loss) >= 1, 240), "no metrics from the live run"
            body = str(app.query_one(GpuPane).query_one("#gpu-body").render())
            if "No NVIDIA GPU" in body:  # CPU/RAM of the live tree instead
                assert await until(pilot, lambda: "This run's processes: " in str(
                    app.query_one(GpuPane).query_one("#gpu-body").render()) and app.last_gpu_view.tree_pids > 0, 30)
                assert app.last_gpu_view.tree_rss > 50 * 1024 ** 2
            assert await until(pilot, grew, 240), f"chart did not grow: {seen}"
            assert seen == sorted(seen)  # it grew while we watched, one poll at a time
            chart = app.query_one("#loss-chart", Chart)
            assert await until(pilot, lambda: not app.watch.source.active, 240)
            # the chart is redrawn at most every 2 s; the last points land in the next frame
            assert await until(pilot, lambda: len(chart.lines[0].xs) == len(loss.loss) >= 2, 10)
            header = app.query_one(RunHeader).render_info().plain
            assert "finished" in header and "20/20" in header
            assert app.query_one(LogPane).store.count > 100
            assert any(c.name == "checkpoint-20" for f in app.query_one("#checkpoints").folders
                       for c in f.checkpoints)
    asyncio.run(go())
    assert runs.load(rec.id).status == "finished"


def test_launch_form_starts_a_real_run_and_stop_asks_first(demo_home, demo_assets, tmp_path):
    async def go():
        from textual.widgets import Input

        app = SwiftdeckApp(None, poll_s=0.5, remember_theme=False)
        async with app.run_test(size=(160, 48)) as pilot:
            await pilot.press("n")
            assert await until(pilot, lambda: app.screen.query("#launch-command"), 10)
            form = app.screen
            values = {"model": str(demo_assets.model), "dataset": str(demo_assets.dataset),
                      "output_dir": str(tmp_path / "out"), "epochs": "40", "batch_size": "10", "grad_accum": "1",
                      "max_length": "512", "label": "from the form",
                      "extra": "--model_type qwen2 --template qwen2_5 --check_model false --logging_steps 1 "
                               "--report_to none --dataloader_num_workers 1 --save_steps 5"}
            for name, value in values.items():
                form.query_one(f"#f-{name}", Input).value = value
            command = form.query_one("#launch-command")
            assert await until(pilot, lambda: "--num_train_epochs 40" in text_of(command), 10)
            assert "--lora_rank 8" in text_of(command)
            await pilot.press("ctrl+l")
            assert await until(pilot, lambda: app.watch.source is not None, 300), str(
                form.query_one("#launch-check").render())
            rec = app.watch.source.record
            assert rec.label == "from the form" and "--torch_dtype" in rec.argv
            assert rec.argv[rec.argv.index("--torch_dtype") + 1] == "float32"  # CPU: the preset's fp32
            assert await until(pilot, lambda: len(app.query_one(LossPane).loss) >= 2, 240)
            await pilot.press("S")
            assert await until(pilot, lambda: app.screen.query("#dialog-body"), 10)
            assert "saves a checkpoint at the next step" in text_of(app.screen.query_one("#dialog-body"))  # graceful
            await pilot.press("y")
            assert await until(pilot, lambda: not runs.load(rec.id).active, 180)
            return rec

    rec = asyncio.run(go())
    final = runs.load(rec.id)
    assert final.status == "stopped"
    from engine import supervisor

    assert supervisor.live_tree(final) == []
