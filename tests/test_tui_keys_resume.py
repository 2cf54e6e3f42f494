"""Issue 15 item 4: `R` on the final checkpoint of a finished run. A resume from the run's last step would train
nothing (ms-swift starts, finishes with no step and leaves an empty vN folder), so engine.ops.launch.plan_resume
refuses it with AtMaxSteps and proposes to raise the end; the dashboard's dialog says the run already reached
max_steps and offers that raise as editable flags (the relaunch dialog's)."""
from __future__ import annotations

import asyncio
import json
import zipfile
from pathlib import Path

import pytest

from engine import runs
from engine.checkpoints import scan_run
from engine.ops.launch import AtMaxSteps, plan_resume
from test_tui_support import fixed_clock, make_run, settled, text_of, until
from tui.app import SwiftdeckApp
from tui.model import RunSource
from tui.screens.relaunch import ResumeScreen
from tui.widgets.checkpoints import CheckpointsPane, CheckpointTree


def resumable(rec) -> dict:
    """Give the recorded run's checkpoints (saved without optimizer and scheduler) those files: resumable."""
    for ckpt in Path(rec.run_dir).glob("checkpoint-*"):
        for name in ("optimizer.pt", "scheduler.pt"):
            with zipfile.ZipFile(ckpt / name, "w") as z:  # torch.save's zip layout
                z.writestr("archive/data.pkl", b"\x80\x02}q\x00.")
    return {c.name: c for c in scan_run(Path(rec.run_dir)).checkpoints}


def test_plan_resume_refuses_the_last_step_and_proposes_more_epochs(home, tmp_path, swift_fixtures):
    rec = make_run(swift_fixtures, tmp_path, "finished")
    ckpts = resumable(rec)
    state = json.loads((ckpts["checkpoint-24"].path / "trainer_state.json").read_text())
    assert (state["global_step"], state["max_steps"], state["epoch"]) == (24, 24, 3.0)  # the recording's end
    with pytest.raises(AtMaxSteps) as refused:
        plan_resume(rec, ckpts["checkpoint-24"])
    assert "checkpoint-24 is at step 24, the run's last" in str(refused.value)
    assert "train nothing" in str(refused.value) and refused.value.flags == "--num_train_epochs 6"
    with pytest.raises(AtMaxSteps):  # the same number of epochs still trains nothing
        plan_resume(rec, ckpts["checkpoint-24"], "--num_train_epochs 3")
    cmd, changes = plan_resume(rec, ckpts["checkpoint-24"], refused.value.flags)
    assert cmd.flag("--num_train_epochs") == "6" and cmd.flag("--resume_from_checkpoint").endswith("checkpoint-24")
    assert changes[0] == "--num_train_epochs 6 (new)"
    cmd, changes = plan_resume(rec, ckpts["checkpoint-20"])  # not the last step: resumes as it was
    assert cmd.flag("--num_train_epochs") is None and cmd.flag("--resume_from_checkpoint").endswith("checkpoint-20")


def test_plan_resume_raises_max_steps_when_the_run_sets_it(home, tmp_path, swift_fixtures):
    rec = make_run(swift_fixtures, tmp_path, "finished")
    rec = runs.update(rec.id, lambda r: setattr(r, "argv", [*r.argv, "--max_steps", "24"]))
    ckpts = resumable(rec)
    with pytest.raises(AtMaxSteps) as refused:
        plan_resume(rec, ckpts["checkpoint-24"], "--num_train_epochs 6")  # --max_steps wins over the epochs
    assert refused.value.flags == "--max_steps 48" and "(--max_steps 24)" in str(refused.value)
    cmd, _ = plan_resume(rec, ckpts["checkpoint-24"], "--max_steps 30")
    assert cmd.flag("--max_steps") == "30"


def test_R_on_the_last_checkpoint_offers_to_raise_the_epochs(introspected_home, tmp_path, swift_fixtures):
    rec = make_run(swift_fixtures, tmp_path, "finished")
    resumable(rec)

    async def go():
        app = SwiftdeckApp(RunSource.of_record(rec), clock=fixed_clock, remember_theme=False, check_leftovers=False)
        async with app.run_test(size=(120, 40)) as pilot:
            await settled(pilot)
            assert await until(pilot, lambda: app.query_one(CheckpointsPane).current() is not None)
            app.query_one(CheckpointTree).focus()
            assert app.query_one(CheckpointsPane).current().name == "checkpoint-24"
            await pilot.press("R")
            assert await until(pilot, lambda: isinstance(app.screen, ResumeScreen))
            dialog = app.screen
            assert "already reached max_steps" in text_of(dialog.query_one("#relaunch-title"))
            assert "train nothing" in text_of(dialog.query_one("#relaunch-diagnosis"))
            flags = dialog.query_one("#relaunch-flags")
            changes, command = dialog.query_one("#relaunch-changes"), dialog.query_one("#relaunch-command")
            assert flags.value == "--num_train_epochs 6"
            assert await until(pilot, lambda: "--num_train_epochs 6 (new)" in text_of(changes))
            assert await until(pilot, lambda: "--resume_from_checkpoint" in text_of(command)
                               and "--num_train_epochs 6" in text_of(command))
            flags.value = "--num_train_epochs 3"  # edited: still the last step
            assert await until(pilot, lambda: "would train nothing" in text_of(command))
            await pilot.press("ctrl+l")
            assert await until(pilot, lambda: any("not resumed" in n.message and "train nothing" in n.message
                                                  for n in app._notifications))
            flags.value = "--num_train_epochs 9"
            assert await until(pilot, lambda: "--num_train_epochs 9" in text_of(command))
            await pilot.press("escape")
            assert await until(pilot, lambda: not isinstance(app.screen, ResumeScreen))  # asks first: typed flags
            await pilot.press("y")
            assert await until(pilot, lambda: len(app.screen_stack) == 1)
            assert [r.id for r in runs.all_runs()] == [rec.id]  # nothing started
    asyncio.run(go())


def test_swiftdeck_resume_says_the_same(home, tmp_path, swift_fixtures, capsys):
    """The CLI goes through the same plan: the last checkpoint is refused in one line with the raise to give."""
    from engine import cli

    rec = make_run(swift_fixtures, tmp_path, "finished")
    resumable(rec)
    assert cli.main(["resume", rec.id, "checkpoint-24"]) == 2
    err = capsys.readouterr().err
    assert "not resumed: checkpoint-24 is at step 24, the run's last" in err and "train nothing" in err
    assert f"swiftdeck resume {rec.id} checkpoint-24 --set '--num_train_epochs 6'" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert cli.main(["resume", rec.id]) == 2  # the newest resumable is that same last step
    assert "not resumed: checkpoint-24" in capsys.readouterr().err
    assert cli.main(["resume", rec.id, "checkpoint-99"]) == 2
    assert "has no checkpoint-99 (it has: checkpoint-20, checkpoint-24)" in capsys.readouterr().err
    assert [r.id for r in runs.all_runs()] == [rec.id]  # nothing started
