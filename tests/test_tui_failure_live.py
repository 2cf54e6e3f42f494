"""Issue 5 end to end with real ms-swift on the demo model (slow): a run launched from the dashboard's form (its
dataset has a warning, which does not block), SIGKILLed after its first checkpoint like the kernel's OOM killer
would; the failure card diagnoses it; "relaunch with these changes" applies a change and resumes from the newest
checkpoint: the new run's first logged step comes after it."""
from __future__ import annotations

import asyncio
import json
import shutil
import signal
import time

import psutil
import pytest

from engine import relaunch, runs, supervisor
from engine.ingest import RunReader
from test_tui_failure import app_for
from test_tui_support import text_of, until
from tui.screens.launch import LaunchScreen
from tui.screens.relaunch import RelaunchScreen
from tui.widgets.failure import FailureCard, applicable

pytestmark = pytest.mark.slow
RUN_TIMEOUT = 300


def test_launch_kill_after_checkpoint_then_relaunch_resumes(home, tmp_path, demo_assets, swift_introspection):
    from textual.widgets import Input

    shutil.copytree(swift_introspection, home / "cache" / swift_introspection.name)
    rows = json.loads(demo_assets.dataset.read_text(encoding="utf-8"))
    dataset = tmp_path / "data.json"
    dataset.write_text(json.dumps(rows + rows[:1], ensure_ascii=False), encoding="utf-8")  # a duplicate: warning
    fields = {"model": str(demo_assets.model), "dataset": str(dataset), "output_dir": str(tmp_path / "output"),
              "epochs": "60", "batch_size": "10", "grad_accum": "1", "learning_rate": "3e-3", "max_length": "512",
              "extra": "--model_type qwen2 --template qwen2_5 --check_model false --save_steps 2 --logging_steps 1 "
                       "--dataloader_num_workers 1 --report_to none"}

    async def go():
        app = app_for(None, poll_s=0.5)
        async with app.run_test(size=(120, 40)) as pilot:
            await pilot.press("n")
            form = app.screen
            assert isinstance(form, LaunchScreen)
            for name, value in fields.items():
                form.query_one(f"#f-{name}", Input).value = value
            assert await until(pilot, lambda: "1 warning(s)" in text_of(form.query_one("#dataset-check")))
            await pilot.press("ctrl+l")
            # the form closes first; the dashboard attaches to the new run a moment later
            assert await until(pilot, lambda: not isinstance(app.screen, LaunchScreen) and app.watch.source
                               is not None and app.watch.source.record is not None, timeout=120), \
                text_of(form.query_one("#launch-check"))
            first = app.watch.source.record
            assert first is not None and first.active

            # SIGKILL the trainer once a resumable checkpoint is on disk
            def checkpoint():
                rec = runs.load(first.id)
                return relaunch.newest_resumable(rec.run_dir) if rec.run_dir else None
            assert await until(pilot, checkpoint, timeout=RUN_TIMEOUT), first.console_log.read_text()[-2000:]
            trainers = supervisor.trainer_processes(runs.load(first.id))
            assert trainers
            for proc in trainers:
                proc.send_signal(signal.SIGKILL)

            card = app.query_one(FailureCard)
            assert await until(pilot, lambda: card.state is not None and card.state.diagnosis is not None,
                               timeout=60)
            assert card.state.diagnosis["kind"] == "killed_by_signal", card.state.diagnosis
            assert "killed by SIGKILL" in text_of(card) and runs.load(first.id).status == "failed"
            ckpt = relaunch.newest_resumable(runs.load(first.id).run_dir)  # the newest one when it was killed
            step = int(ckpt.name.rsplit("-", 1)[1])

            await pilot.press("r")
            screen = app.screen
            assert isinstance(screen, RelaunchScreen)
            options = screen.query_one("#relaunch-remedies")
            remedies = card.state.diagnosis["remedies"]
            assert [options.get_option_at_index(i).disabled for i in range(1, options.option_count)] == \
                [not applicable(r) for r in remedies]
            # the host-RAM remedy names the flag without a value: the user types the change
            screen.query_one("#relaunch-flags", Input).value = "--dataloader_num_workers 0"
            command, changes = screen.query_one("#relaunch-command"), screen.query_one("#relaunch-changes")
            assert await until(pilot, lambda: "--dataloader_num_workers 1 → 0" in text_of(changes), timeout=60)
            assert "✔ arguments OK" in text_of(command), text_of(command)
            assert f"--resume_from_checkpoint {ckpt} (continues from step {step})" in text_of(changes)
            assert f"--resume_from_checkpoint {ckpt}" in text_of(command)
            await pilot.press("ctrl+l")
            assert await until(pilot, lambda: app.watch.source is not None and app.watch.source.key != first.id,
                               timeout=60)
            second = app.watch.source.record
            assert second.status in runs.ACTIVE and "relaunch of" in second.label
            reader = RunReader(console_log=second.console_log)

            def first_step():
                reader.poll()
                return next((m.step for m in reader.state.metrics if "loss" in m.values), None)
            assert await until(pilot, first_step, timeout=RUN_TIMEOUT), second.console_log.read_text()[-2000:]
            assert first_step() == step + 1  # resumed after the checkpoint, not from step 1
            assert app.query_one(FailureCard).display is False  # the new run is healthy

    try:
        asyncio.run(go())
    finally:
        for rec in runs.all_runs():
            if rec.active:
                supervisor.stop(rec, force=True, timeout_s=30)
        for rec in runs.all_runs():
            assert supervisor.live_tree(rec) == [], rec.id
        time.sleep(0.1)
        assert not [p for p in psutil.process_iter(["cmdline"]) if str(tmp_path) in " ".join(p.info["cmdline"] or [])
                    and "swift" in " ".join(p.info["cmdline"] or [])]
