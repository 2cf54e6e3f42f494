"""The new-run form refuses a launch onto a GPU that another process fills until the user confirms (issue
"Multi-GPU and multi-node", Launch). The GPU reading is an input like the clock: NVML's snapshot of an H200 whose
memory another process holds (the OOM scenario of docs/device-runs/multigpu) is what the preflight samples; the
arguments are checked against the installed ms-swift and the confirmed launch starts a real run, stopped at once."""
from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from textual.widgets import Button, Input

from engine import gpu, runs, supervisor
from engine.gpu import GpuInfo, GpuProcess, GpuSnapshot
from test_tui_support import FIXED_START, ReplayGpu, settled, text_of, until
from tui.app import SwiftdeckApp
from tui.screens.launch import LaunchScreen

DATA = Path(__file__).parent / "data" / "multigpu"
MiB = 1024 ** 2

pytestmark = pytest.mark.slow  # the confirmed launch starts real ms-swift (stopped at once)


def busy_gpu() -> GpuSnapshot:
    """GPU 0 (an H200) with the recorded process of the OOM scenario holding 137.79 GiB of it."""
    data = json.loads((DATA / "h200x2-gpu-pane.json").read_text())
    _, name, total_mib = data["host_gpus"][0]
    o = data["other_on_gpu1"]
    card = GpuInfo(0, name, "GPU-0", o["used_bytes"], total_mib * MiB, 100.0, None, None, None,
                   (GpuProcess(o["pid"], o["used_bytes"], o["name"]),))
    return GpuSnapshot(True, "", (card,), FIXED_START)


async def open_filled_form(app, pilot, demo_assets, tmp_path) -> LaunchScreen:
    """`n`, then the demo's model and dataset on GPU 0 (the busy one of the recorded reading)."""
    await settled(pilot)
    await pilot.press("n")
    assert await until(pilot, lambda: isinstance(app.screen, LaunchScreen))
    form = app.screen
    form.query_one("#f-model", Input).value = str(demo_assets.model)
    form.query_one("#f-dataset", Input).value = str(demo_assets.dataset)
    form.query_one("#f-output_dir", Input).value = str(tmp_path / "output")
    form.query_one("#f-visible_gpus", Input).value = "0"
    form.query_one("#f-extra", Input).value = "--model_type qwen2 --template qwen2_5 --num_train_epochs 1"
    await pilot.pause()
    return form


def test_a_launch_onto_a_busy_gpu_waits_for_the_users_confirmation(introspected_home, tmp_path, demo_assets,
                                                                   monkeypatch):
    monkeypatch.setattr(gpu, "_default", ReplayGpu(busy_gpu()))  # what the preflight samples
    started: list[runs.RunRecord] = []

    async def go():
        app = SwiftdeckApp(None, remember_theme=False, check_leftovers=False)
        async with app.run_test(size=(120, 40)) as pilot:
            form = await open_filled_form(app, pilot, demo_assets, tmp_path)
            confirm = form.query_one("#confirm-gpus", Button)
            assert not confirm.display
            await pilot.press("ctrl+l")
            check = form.query_one("#launch-check")
            assert await until(pilot, lambda: "not launched: GPU 0 is taken" in text_of(check), timeout=120), \
                text_of(check)
            assert "pid 3121 python3 137.79 GiB" in text_of(check)
            assert confirm.display and isinstance(app.screen, LaunchScreen) and runs.all_runs() == []
            await pilot.press("ctrl+l")  # Launch again: still refused, nothing started
            await pilot.pause(0.5)
            assert await until(pilot, lambda: "not launched: GPU 0 is taken" in text_of(check))
            assert runs.all_runs() == []

            await pilot.click("#confirm-gpus")
            assert await until(pilot, lambda: not isinstance(app.screen, LaunchScreen), timeout=60), text_of(check)
            started.extend(runs.all_runs())
    try:
        asyncio.run(go())
    finally:
        for rec in runs.all_runs():
            supervisor.stop(rec, force=True, timeout_s=5)
    assert len(started) == 1 and started[0].env.get("CUDA_VISIBLE_DEVICES") == "0"


def test_changing_the_form_takes_the_confirmation_away(introspected_home, tmp_path, demo_assets, monkeypatch):
    monkeypatch.setattr(gpu, "_default", ReplayGpu(busy_gpu()))

    async def go():
        app = SwiftdeckApp(None, remember_theme=False, check_leftovers=False)
        async with app.run_test(size=(120, 40)) as pilot:
            form = await open_filled_form(app, pilot, demo_assets, tmp_path)
            await pilot.press("ctrl+k")
            check = form.query_one("#launch-check")
            assert await until(pilot, lambda: "a launch is blocked: GPU 0 is taken" in text_of(check), timeout=120)
            assert form.query_one("#confirm-gpus").display
            form.query_one("#f-epochs", Input).value = "2"
            await pilot.pause()
            assert not form.query_one("#confirm-gpus").display
            await pilot.press("ctrl+g")  # not in the footer any more: does nothing
            await pilot.pause(0.3)
            assert isinstance(app.screen, LaunchScreen) and runs.all_runs() == []
    asyncio.run(go())
