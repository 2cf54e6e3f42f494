"""Issue 11 in the dashboard: the loss pane's charts follow the kind of run (recorded DPO and GRPO runs from
tests/data/rlhf, opened as registry runs), GRPO's sample completions are shown below the charts, the run switcher
shows the kind, and the launch form has a kind selector. Pilot tests and SVG snapshots (tests/snapshots)."""
from __future__ import annotations

import asyncio
import json
import os
import shutil
from pathlib import Path

import pytest

from engine import runs
from engine.completions import Completion
from engine.gpu import NO_GPU, GpuSnapshot
from engine.textsafe import printable
from test_tui_support import FIXED_START, fixed_clock
from tui.app import SwiftdeckApp
from tui.gpufeed import GpuFeed
from tui.model import RunSource
from tui.widgets.loss import Chart, LossPane

DATA = Path(__file__).parent / "data" / "rlhf"


pytestmark = pytest.mark.usefixtures("_snapshot_dir")


class NoGpu:
    def sample(self) -> GpuSnapshot:
        return GpuSnapshot(False, f"{NO_GPU}: NVML Shared Library Not Found", (), FIXED_START)

    def close(self) -> None:
        pass


def make_rlhf_run(kind: str, where: Path) -> runs.RunRecord:
    """A finished registry run of the recorded `swift rlhf --rlhf_type <kind>` demo (fixed id and times)."""
    out = where / "output"
    run_dir = out / "v0-20261130-113532"
    shutil.copytree(DATA / kind, run_dir)
    (run_dir / "console.log").unlink()
    argv = ["swift", "rlhf", "--rlhf_type", kind, "--model", "/tmp/tiny", "--output_dir", str(out)]
    made = runs.create("rlhf", argv, str(where), label=f"demo {kind}", output_dir=str(out))
    run_id = f"rlhf-20261130-113527-{kind}"
    os.rename(made.folder, runs.runs_dir() / run_id)

    def fill(r: runs.RunRecord) -> None:
        r.id, r.run_dir, r.started_at = run_id, str(run_dir), FIXED_START
        r.status, r.exit_code, r.ended_at = "finished", 0, FIXED_START + 60

    rec = runs.update(run_id, fill)
    rec.console_log.write_bytes((DATA / kind / "console.log").read_bytes())
    return rec


def app_for(rec) -> SwiftdeckApp:
    return SwiftdeckApp(RunSource.of_record(rec), clock=fixed_clock, gpu_feed=GpuFeed(NoGpu()), poll_s=3600,
                        gpu_s=3600, remember_theme=False, check_leftovers=False)


async def loaded(pilot) -> None:
    """The first read of the run and of the GPU are shown (tests.test_tui_support.settled)."""
    from test_tui_support import settled

    await settled(pilot)


def labels(chart: Chart) -> list[str | None]:
    return [line.label for line in chart.lines]


def logged(kind: str) -> list[dict]:
    return [r for r in map(json.loads, (DATA / kind / "logging.jsonl").read_text().splitlines()) if "loss" in r]


def test_dpo_charts(home, tmp_path):
    rec = make_rlhf_run("dpo", tmp_path)
    rows = logged("dpo")

    async def go():
        app = app_for(rec)
        async with app.run_test(size=(160, 48)) as pilot:
            await loaded(pilot)
            pane = app.query_one(LossPane)
            assert pane.family == "preference" and pane.border_title.startswith("Loss · preference pairs")
            minis = [app.query_one(f"#{i}", Chart) for i in ("mini-learning-rate", "mini-grad-norm",
                                                              "mini-token-acc", "mini-memory")]
            assert [c.title for c in minis] == ["rewards", "margins", "accuracies", "logps"]
            assert labels(minis[0]) == ["chosen", "rejected"] and labels(minis[3]) == ["chosen", "rejected"]
            assert minis[0].lines[0].ys == [r["rewards/chosen"] for r in rows]
            assert minis[0].lines[1].ys == [r["rewards/rejected"] for r in rows]
            assert minis[1].lines[0].ys == [r["rewards/margins"] for r in rows]
            assert minis[2].lines[0].ys == [r["rewards/accuracies"] for r in rows]
            assert labels(app.query_one("#loss-chart", Chart))[0] == "loss"
            assert pane.loss.ys == [r["loss"] for r in rows]
            assert not pane.has_class("-completions")  # DPO logs no completions
    asyncio.run(go())


def test_grpo_charts_and_completions(home, tmp_path):
    rec = make_rlhf_run("grpo", tmp_path)
    rows = logged("grpo")

    async def go():
        app = app_for(rec)
        async with app.run_test(size=(160, 48)) as pilot:
            await loaded(pilot)
            pane = app.query_one(LossPane)
            assert pane.family == "grpo" and pane.border_title == "Reward · GRPO"
            main = app.query_one("#loss-chart", Chart)
            assert labels(main) == ["reward", f"EMA {pane.smoothing:g}", "Format", "RepetitionPenalty"]
            assert main.lines[0].ys == [r["reward"] for r in rows]
            assert main.lines[3].ys == [r["rewards/RepetitionPenalty/mean"] for r in rows]
            minis = [app.query_one(f"#{i}", Chart) for i in ("mini-learning-rate", "mini-grad-norm",
                                                              "mini-token-acc", "mini-memory")]
            assert [c.title for c in minis] == ["reward std", "KL", "completion length", "clip ratio"]
            assert minis[1].lines[0].ys == [r["kl"] for r in rows]
            assert labels(minis[3]) == ["clipped", "truncated"]
            # the newest step's completions, readable below the charts
            assert pane.has_class("-completions")
            text = str(app.query_one("#loss-completions-text").render())
            last = json.loads((DATA / "grpo" / "completions.jsonl").read_text().splitlines()[-1])
            assert text.startswith("completions at step 8 (newest 4")
            assert "\x01" in last["completion"][0]  # the tiny model's real output holds control characters
            assert printable(" ".join(last["completion"][0].split()), newlines=False)[:40] in text
            assert "\x01" not in text
            assert "RepetitionPenalty" in text and "adv " in text and " → " in text
            # a completion is model output: an escape sequence in it is shown, never sent to the terminal
            pane.add_completions([Completion(9, "你是谁?", "x\x1b]52;c;aGVsbG8=\x07y", {"Format": 1.0}, 0.5)])
            shown = str(app.query_one("#loss-completions-text").render())
            assert shown.startswith("completions at step 9 (newest 1") and "+1.00 Format +1.00  adv +0.50" in shown
            assert "\x1b" not in shown and "\x07" not in shown and "x␛]52;c;aGVsbG8=␇y" in shown
            # another run: the pane starts over as an SFT pane
            app.attach(None)
            await pilot.pause()
            assert pane.family == "sft" and minis[0].title == "learning rate"
            assert not pane.has_class("-completions")
    asyncio.run(go())


@pytest.mark.parametrize("kind", ["dpo", "grpo"])
def test_rlhf_dashboard_snapshot(snap_compare, home, tmp_path, kind):
    rec = make_rlhf_run(kind, tmp_path / "work")
    assert snap_compare(app_for(rec), terminal_size=(160, 48), run_before=loaded)


def test_run_switcher_and_launch_form_know_the_kind(home, tmp_path):
    rec = make_rlhf_run("dpo", tmp_path)
    plain = tmp_path / "plain.json"
    plain.write_text(json.dumps([{"messages": [{"role": "user", "content": "q"},
                                               {"role": "assistant", "content": "a"}]}]))

    async def go():
        from textual.widgets import DataTable, Input, Select

        from tui.screens.launch import LaunchScreen

        app = app_for(rec)
        async with app.run_test(size=(160, 48)) as pilot:
            await loaded(pilot)
            await pilot.press("w")
            for _ in range(200):
                await pilot.pause(0.05)
                table = app.screen.query_one(DataTable) if app.screen.query(DataTable) else None
                if table is not None and table.row_count:
                    break
            row = table.get_row_at(0)[1:]  # [0]: the marks column
            assert row[0] == f"demo dpo {rec.id}" and "rlhf/dpo" in row
            await pilot.press("escape")
            await pilot.press("n")
            await pilot.pause()
            screen = app.screen
            assert isinstance(screen, LaunchScreen)
            screen.query_one("#f-model", Input).value = "/models/Qwen2.5-7B-Instruct"
            screen.query_one("#f-dataset", Input).value = str(plain)
            screen.query_one("#f-kind", Select).value = "rlhf/dpo"

            def shown(widget_id: str) -> str:
                return str(screen.query_one(widget_id).render())

            for _ in range(200):
                await pilot.pause(0.05)
                if "rejected_response" in shown("#dataset-check"):
                    break
            assert "missing field 'rejected_response'" in shown("#dataset-check")
            assert "swift rlhf --rlhf_type dpo --model /models/Qwen2.5-7B-Instruct" in shown("#launch-command")
            assert "swift rlhf --rlhf_type dpo" in shown("#launch-title")
            screen.query_one("#f-kind", Select).value = "sft"
            for _ in range(200):
                await pilot.pause(0.05)
                if "rejected_response" not in shown("#dataset-check") and "1 rows" in shown("#dataset-check"):
                    break
            assert "✔ plain.json: 1 rows" in shown("#dataset-check")
            assert "swift sft --model" in shown("#launch-command")
    asyncio.run(go())
