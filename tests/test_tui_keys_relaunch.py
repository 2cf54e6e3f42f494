"""Issue 15 item 3 on real recorded failures (tests/data/failures): a remedy that names a flag and a value is
applicable ("a larger --max_length, e.g. --max_length 2048", "or --truncation_strategy right"), advice is not, and
the relaunch dialog applies it to the command, editable before the relaunch."""
from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path

import pytest

from engine import diagnose, runs
from engine.ops.launch import plan_relaunch
from engine.relaunch import remedy_flags
from test_tui_support import FIXED_START, fixed_clock, text_of, until
from tui.app import SwiftdeckApp
from tui.model import RunSource
from tui.screens.relaunch import RelaunchScreen
from tui.widgets.failure import FailureCard

FAILURES = Path(__file__).parent / "data" / "failures"


def remedies_of(name: str) -> list[str]:
    return diagnose.diagnose_file(FAILURES / f"{name}.log", exit_code=1).remedies


@pytest.mark.parametrize("name, expected", [
    ("dataset_empty_after_filter", [[("--max_length", "2048")], [("--truncation_strategy", "right")]]),
    ("model_type_ambiguous", [[("--model_type", "qwen2")], []]),
    ("resume_failed-corrupt", [[], [("--resume_only_model", "true")]]),
    ("cpu_oom", [[("--max_length", "20000")], [], []]),
    ("unknown_argument", [[], []]),  # "use --tuner_type instead of --train_type", "remove --lora_ranks: …"
    ("invalid_argument-value", [[]]),  # "give --lora_rank a valid value …"
    ("disk_full", [[], [("--save_total_limit", "2")], [("--save_only_model", "true")], []]),
])
def test_remedies_that_name_a_flag_and_a_value_are_applicable(name, expected):
    assert [remedy_flags(r) for r in remedies_of(name)] == expected


def test_remedy_that_names_the_value_after_the_flag():
    assert remedy_flags("a larger --max_length, e.g. 2048") == [("--max_length", "2048")]


def test_plan_applies_the_max_length_remedy_of_the_recorded_failure():
    argv = ["swift", *json.loads((FAILURES / "dataset_empty_after_filter.json").read_text())["command"][1:]]
    rec = runs.RunRecord(id="sft-x", kind="sft", argv=argv, cwd="/tmp", run_dir=None, env={}, status="failed")
    larger, truncate = remedies_of("dataset_empty_after_filter")
    cmd, changes = plan_relaunch(rec, larger)
    assert cmd.flag("--max_length") == "2048" and changes[0] == "--max_length 16 → 2048"
    cmd, changes = plan_relaunch(rec, truncate)
    assert cmd.flag("--truncation_strategy") == "right" and cmd.flag("--max_length") == "16"
    assert changes[0] == "--truncation_strategy right (new)"


def test_relaunch_dialog_applies_the_max_length_remedy_and_the_flags_stay_editable(introspected_home, tmp_path):
    argv = ["swift", *json.loads((FAILURES / "dataset_empty_after_filter.json").read_text())["command"][1:]]
    rec = runs.create("sft", argv, str(tmp_path))

    def fill(r: runs.RunRecord) -> None:
        r.status, r.exit_code, r.started_at, r.ended_at = "failed", 1, FIXED_START, FIXED_START + 60

    rec = runs.update(rec.id, fill)
    shutil.copyfile(FAILURES / "dataset_empty_after_filter.log", rec.console_log)

    async def go():
        app = SwiftdeckApp(RunSource.of_record(rec), clock=fixed_clock, remember_theme=False)
        async with app.run_test(size=(120, 40)) as pilot:
            card = app.query_one(FailureCard)
            assert await until(pilot, lambda: card.state is not None and card.state.diagnosis is not None)
            await pilot.press("r")
            assert await until(pilot, lambda: isinstance(app.screen, RelaunchScreen))
            dialog = app.screen
            options = dialog.query_one("#relaunch-remedies")
            assert [options.get_option_at_index(i).disabled for i in range(options.option_count)] == \
                [False, False, False]  # no change, a larger --max_length, --truncation_strategy right
            assert options.highlighted == 1
            command, changes = dialog.query_one("#relaunch-command"), dialog.query_one("#relaunch-changes")
            flags = dialog.query_one("#relaunch-flags")
            assert flags.value == "--max_length 2048"
            assert await until(pilot, lambda: "--max_length 16 → 2048" in text_of(changes))
            assert await until(pilot, lambda: "--max_length 2048" in text_of(command))
            await pilot.press("down")
            assert await until(pilot, lambda: flags.value == "--truncation_strategy right")
            assert await until(pilot, lambda: "--truncation_strategy right" in text_of(command))
            flags.value = "--max_length 64 --truncation_strategy right"  # edited before the relaunch
            assert await until(pilot, lambda: "--max_length 16 → 64" in text_of(changes))
            assert await until(pilot, lambda: "--max_length 64" in text_of(command)
                               and "--truncation_strategy right" in text_of(command))
            await pilot.press("escape", "y")
            assert await until(pilot, lambda: len(app.screen_stack) == 1)
            assert [r.id for r in runs.all_runs()] == [rec.id]  # nothing started
    asyncio.run(go())
