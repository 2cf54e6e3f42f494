"""Views that agree and follow (issue 15 items 11–15, issue 11's kind in the header): one step for the header, the
checkpoint tree, the run switcher and `swiftdeck runs`; error lines of a running run in the header; a checkpoint
list that refreshes; deploy and merge jobs in their own view. Pilot on registry runs built from the recorded
ms-swift 4.6 run (tests/data/ms-swift-4.6)."""
from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from engine import runs, status
from engine.ops.runs import RunSource, quick_summary
from test_tui_support import fixed_clock, make_run, settled, until
from tui.app import SwiftdeckApp
from tui.widgets.checkpoints import CheckpointsPane, CheckpointTree
from tui.widgets.header import RunHeader
from tui.widgets.job import JobPane
from tui.widgets.loss import LossPane

REPO = Path(__file__).resolve().parents[1]


def run(coro):
    return asyncio.run(coro)


def app_for(rec, **kw) -> SwiftdeckApp:
    kw.setdefault("remember_theme", False)
    kw.setdefault("check_leftovers", False)
    return SwiftdeckApp(RunSource.of_record(rec) if rec is not None else None, clock=fixed_clock, **kw)


def header_text(app) -> str:
    return app.query_one(RunHeader).render_info().plain


def folder_line(app) -> str:
    tree = app.query_one(CheckpointTree)
    return next(str(n.label) for n in tree.root.children if hasattr(n.data, "checkpoints"))


# ---------------------------------------------------------------- 11: one step everywhere


def test_header_tree_switcher_and_runs_say_the_same_step(home, tmp_path, swift_fixtures):
    """The running recording: logging.jsonl to step 20, the console's progress bar at 21/24."""
    rec = make_run(swift_fixtures, tmp_path, "running")
    with open(rec.console_log, "ab") as fh:  # the bar moves on: 21/24 complete, 22/24 being drawn
        fh.write(b"\rTrain:  92%|#########1| 22/24 [00:05<00:00,  7.16it/s]")
    assert quick_summary(RunSource.of_record(rec)).step == 21  # `runs` and the switcher: the furthest step

    async def go():
        app = app_for(rec)
        async with app.run_test(size=(160, 48)) as pilot:
            await settled(pilot)
            assert "21/24" in header_text(app)
            assert "running step 21/24" in folder_line(app)  # not the last scan's "20/24"
            await pilot.press("w")
            from tui.screens.runs import RunsScreen

            screen = app.screen
            assert isinstance(screen, RunsScreen)
            assert await until(pilot, lambda: bool(screen.sources))
            table = screen.query_one("DataTable")
            row = table.get_row(rec.id)
            assert "21/24" in row
    run(go())
    env = {**os.environ, "PYTHONPATH": str(REPO), "SWIFTDECK_HOME": str(home)}
    listed = json.loads(subprocess.run([sys.executable, "-m", "tui.cli", "runs", "--json"], capture_output=True,
                                       text=True, env=env, cwd=str(REPO), timeout=60).stdout)
    assert [(r["id"], r["step"], r["max_steps"]) for r in listed] == [(rec.id, 21, 24)]


def _stopped_at_20(rec: runs.RunRecord) -> None:
    """ms-swift interrupted at step 20 of 24 from outside swiftdeck: its final record names step 20, main ends,
    the exit code is 0."""
    run_dir = Path(rec.run_dir)
    lines = (run_dir / "logging.jsonl").read_text().splitlines()
    final = next(json.loads(line) for line in
                 (REPO / "tests/data/ms-swift-4.6/run-v2/logging.jsonl").read_text().splitlines()
                 if "last_model_checkpoint" in line)
    final.update(global_step=20, last_model_checkpoint=str(run_dir / "checkpoint-20"))
    (run_dir / "logging.jsonl").write_text("\n".join(lines + [json.dumps(final)]) + "\n")
    with open(rec.console_log, "ab") as fh:
        fh.write(b"\n[INFO:swift] End time of running main: 2026-11-27 17:37:57.090911\n")

    def ended(r):
        r.runner_pid = r.runner_create_time = None
        r.exit_code = 0
    runs.update(rec.id, ended)


def test_a_run_stopped_short_of_its_end_is_stopped_not_finished(home, tmp_path, swift_fixtures):
    rec = make_run(swift_fixtures, tmp_path, "running")
    _stopped_at_20(rec)
    rec = runs.load(rec.id)
    assert status.decide(rec, alive=False, files=status.observe(rec)) == "stopped"
    # with ms-swift's early stop asked for, ending short of max_steps is how the run finishes
    early = runs.update(rec.id, lambda r: setattr(r, "argv", [*r.argv, "--callbacks", "early_stop"]))
    assert status.decide(early, alive=False, files=status.observe(early)) == "finished"
    finished = make_run(swift_fixtures, tmp_path / "f", "finished")  # the whole recording stays finished
    assert status.decide(finished, alive=False, files=status.observe(finished)) == "finished"
    # the same folders without a record: the switcher says what the checkpoint tree says
    from engine.checkpoints import scan_run

    bare = RunSource(run_dir=Path(rec.run_dir))
    assert bare.status == "ended" and scan_run(bare.run_dir, registry=False).label == "ended at step 20/24"
    assert RunSource(run_dir=Path(finished.run_dir)).status == "finished"


# ---------------------------------------------------------------- issue 11: the run's kind; 18: words of an end


def test_header_shows_the_kind_and_how_a_run_ended_in_words(home, tmp_path, swift_fixtures):
    rec = make_run(swift_fixtures, tmp_path, "finished")
    dpo = runs.create("rlhf", ["swift", "rlhf", "--rlhf_type", "dpo", "--model", "/tmp/tiny"], str(tmp_path))

    def stopped(r):
        r.status, r.exit_code, r.stop_requested = "stopped", -2, "graceful"
    runs.update(dpo.id, stopped)

    async def go():
        app = app_for(rec)
        async with app.run_test(size=(160, 48)) as pilot:
            await settled(pilot)
            assert header_text(app).splitlines()[0].endswith("finished  sft")
            app.attach(RunSource.of_record(runs.load(dpo.id)))
            assert await until(pilot, lambda: "rlhf/dpo" in header_text(app))
            text = header_text(app)
            assert "stopped by you (SIGINT)" in text and "exit -2" not in text
    run(go())
    assert status.exit_words("failed", 1) == "exit code 1"
    assert status.exit_words("lost", -9) == "killed by SIGKILL"
    assert status.exit_words("finished", 0) == ""


# ---------------------------------------------------------------- 15: error lines as they come


def test_error_lines_of_a_running_run_surface_in_the_header(home, tmp_path, swift_fixtures):
    rec = make_run(swift_fixtures, tmp_path, "running")
    recorded = (REPO / "tests/data/failures/dataset_not_found-hub.log").read_text(encoding="utf-8").splitlines()
    line = next(x for x in recorded if x.startswith("[ERROR:swift]"))  # a real hub dataset that does not load
    assert "load failed" in line

    async def go():
        app = app_for(rec, poll_s=0.1, gpu_s=60)
        async with app.run_test(size=(160, 48)) as pilot:
            await settled(pilot)
            assert "error line" not in header_text(app)
            with open(rec.console_log, "ab") as fh:
                fh.write(("\n" + line + "\n").encode())
            assert await until(pilot, lambda: "1 error line: " + line[:20] in header_text(app))
            assert header_text(app).splitlines()[1].startswith("⚠ 1 error line: [ERROR:swift] Dataset data/train")
            assert "step 2" in header_text(app).splitlines()[1]  # the step stays in view
            with open(rec.console_log, "ab") as fh:
                fh.write((line.replace("data/train.json", "data/other.json") + "\n").encode())
            assert await until(pilot, lambda: "2 error lines: [ERROR:swift] Dataset data/other.json"
                               in header_text(app))
    run(go())


# ---------------------------------------------------------------- 13: the checkpoint list refreshes


def test_checkpoints_of_a_finished_run_follow_the_folder_and_f5(home, tmp_path, swift_fixtures):
    rec = make_run(swift_fixtures, tmp_path, "finished")
    run_dir = Path(rec.run_dir)

    async def go():
        app = app_for(rec, poll_s=0.1, gpu_s=60)
        async with app.run_test(size=(160, 48)) as pilot:
            await settled(pilot)
            pane = app.query_one(CheckpointsPane)

            def names():
                return [c.name for f in pane.folders for c in f.checkpoints]
            assert names() == ["checkpoint-20", "checkpoint-24"]
            shutil.copytree(run_dir / "checkpoint-20", run_dir / "checkpoint-22")  # a copied checkpoint
            assert await until(pilot, lambda: "checkpoint-22" in names())
            shutil.rmtree(run_dir / "checkpoint-22")
            assert await until(pilot, lambda: "checkpoint-22" not in names())
            merged = run_dir / "checkpoint-24-merged"  # what `swiftdeck merge` from the CLI writes
            merged.mkdir()
            (merged / "config.json").write_text(json.dumps({"model_type": "qwen2"}))
            assert await until(pilot, lambda: "checkpoint-24-merged" in names())
            # a change no folder entry shows (a file grows in place): F5 reads the folder again
            with open(run_dir / "checkpoint-24" / "adapter_model.safetensors", "ab") as fh:
                fh.write(b"\0" * 3 * 2**20)

            def size():
                return next(c.size_bytes for f in pane.folders for c in f.checkpoints if c.name == "checkpoint-24")
            assert size() < 2**20
            await pilot.pause(0.3)
            assert size() < 2**20  # not seen by polling alone
            app.query_one(CheckpointTree).focus()
            await pilot.press("f5")
            assert await until(pilot, lambda: size() > 3 * 2**20)
    run(go())


# ---------------------------------------------------------------- 14: jobs get their own view


DEPLOY_CONSOLE = b"""[INFO:swift] model_list: ['checkpoint-24']
INFO:     Started server process [4242]
INFO:     Uvicorn running on http://127.0.0.1:8123 (Press CTRL+C to quit)
INFO:     127.0.0.1:50000 - "GET /v1/models HTTP/1.1" 200 OK
INFO:     127.0.0.1:50002 - "POST /v1/chat/completions HTTP/1.1" 200 OK
INFO:     127.0.0.1:50004 - "POST /v1/chat/completions HTTP/1.1" 200 OK
INFO:     127.0.0.1:50006 - "POST /v1/chat/completions HTTP/1.1" 400 Bad Request
INFO:     Shutting down
Traceback (most recent call last):
  File "/x/swift/cli/deploy.py", line 5, in <module>
KeyboardInterrupt
"""


def test_a_stopped_deploy_has_its_own_view_not_a_crashed_training(home, tmp_path):
    ckpt = tmp_path / "v0-x" / "checkpoint-24"
    rec = runs.create("deploy", ["swift", "deploy", "--adapters", f"checkpoint-24={ckpt}", "--host", "127.0.0.1",
                                 "--port", "8123"], str(tmp_path), label="deploy")

    def ended(r):
        r.status, r.exit_code, r.stop_requested = "stopped", -2, "graceful"
        r.meta.update(url="http://127.0.0.1:8123", port=8123, models=["checkpoint-24"], ready=True)
    rec = runs.update(rec.id, ended)
    rec.console_log.write_bytes(DEPLOY_CONSOLE)

    async def go():
        app = app_for(rec)
        async with app.run_test(size=(160, 48)) as pilot:
            await settled(pilot)
            job = app.query_one(JobPane)
            assert job.display and not app.query_one(LossPane).display
            rows = dict(job.rows)
            assert rows["URL"].startswith("http://127.0.0.1:8123/v1") and "not serving" in rows["URL"]
            assert rows["serves"] == "checkpoint-24" and rows["requests"] == "3 (1 failed)"
            head = header_text(app)
            assert head.splitlines()[0] == f"swiftdeck {rec.id}  ■ stopped by you (SIGINT)"  # no "deploy deploy-…"
            assert "exit -2" not in head
            assert "step" not in head.splitlines()[1]
            assert "no checkpoints of its own" in str(app.query_one(CheckpointTree).root.children[0].label)
            assert "KeyboardInterrupt" in str(job.render())  # said to be its normal way out
            assert not app.query_one("#failure").display
    run(go())


def test_a_merge_job_shows_its_output_folder(home, tmp_path):
    ckpt = tmp_path / "v0-x" / "checkpoint-24"
    (ckpt.parent / "checkpoint-24-merged").mkdir(parents=True)
    rec = runs.create("export", ["swift", "export", "--adapters", str(ckpt), "--merge_lora", "true"], str(tmp_path))
    rec = runs.update(rec.id, lambda r: (setattr(r, "status", "finished"), setattr(r, "exit_code", 0)))
    rec.console_log.write_bytes(b"[INFO:swift] Successfully merged LoRA\n")

    async def go():
        app = app_for(rec)
        async with app.run_test(size=(160, 48)) as pilot:
            await settled(pilot)
            job = app.query_one(JobPane)
            assert job.display and job.border_title == "Merge"
            assert dict(job.rows)["writes"] == f"{ckpt}-merged  (written)"
    run(go())


# ---------------------------------------------------------------- 12: the run switcher


def test_switcher_sorts_by_time_marks_the_run_shown_jumps_filters_and_follows_new_runs(home, tmp_path,
                                                                                        swift_fixtures):
    from textual.widgets import Input

    from tui.screens.runs import RunsScreen

    shown = make_run(swift_fixtures, tmp_path / "a", "finished", label="alpha")
    other = make_run(swift_fixtures, tmp_path / "b", "failed", label="beta")
    runs.update(other.id, lambda r: setattr(r, "started_at", shown.started_at - 600))  # older
    deploy = runs.create("deploy", ["swift", "deploy", "--model", "/tmp/tiny"], str(tmp_path), label="serve")
    runs.update(deploy.id, lambda r: (setattr(r, "status", "stopped"), setattr(r, "exit_code", 0),
                                      setattr(r, "started_at", shown.started_at - 300)))  # between the two

    async def go():
        app = app_for(shown, poll_s=3600, gpu_s=3600)
        async with app.run_test(size=(160, 48)) as pilot:
            await settled(pilot)
            await pilot.press("w")
            assert await until(pilot, lambda: isinstance(app.screen, RunsScreen) and app.screen.sources)
            screen = app.screen
            table = screen.query_one("#runs-table")
            assert [s.key for s in screen.sources] == [shown.id, other.id]
            assert table.get_row_at(0)[0].startswith("▶") and table.cursor_row == 0
            await pilot.press("J")  # jobs take their place in time, not a group at the end
            assert [s.key for s in screen.sources] == [shown.id, deploy.id, other.id]
            await pilot.press("end")
            assert table.cursor_row == 2
            await pilot.press("home")
            assert table.cursor_row == 0
            await pilot.press("j", "j", "k")  # j/k move, as in every list
            assert table.cursor_row == 1
            await pilot.press("g")
            assert table.cursor_row == 0
            # typing filters
            await pilot.press("b", "e", "t")
            box = screen.query_one("#runs-filter", Input)
            assert box.display and box.value == "bet"
            assert await until(pilot, lambda: [s.key for s in screen.sources] == [other.id])
            await pilot.press("escape")  # clears the filter, the switcher stays
            assert isinstance(app.screen, RunsScreen) and not box.display
            assert len(screen.sources) == 3
            await pilot.press("slash", "q", "j", "c")  # in the filter, the switcher's letters type
            assert isinstance(app.screen, RunsScreen) and box.value == "qjc" and screen.show_jobs
            await pilot.press("escape")
            assert not box.display and len(screen.sources) == 3
            # a run started elsewhere (the CLI) appears while the switcher is open
            new = runs.create("sft", ["swift", "sft", "--model", "/tmp/tiny"], str(tmp_path), label="from the cli")
            assert await until(pilot, lambda: new.id in [s.key for s in screen.sources], timeout=20)
            assert [s.key for s in screen.sources][0] == new.id  # the newest
            await pilot.press("escape")
            assert not isinstance(app.screen, RunsScreen)
    run(go())


def test_stopping_a_live_deploy_from_the_dashboard_speaks_of_serving(home, tmp_path):
    """A real detached process recorded as a deploy job (a stand-in for `swift deploy`: the words are swiftdeck's)."""
    from engine import supervisor
    from tui.screens.confirm import ConfirmScreen

    code = ("import time\nprint('INFO:     Uvicorn running on http://127.0.0.1:8123 (Press CTRL+C to quit)', "
            "flush=True)\ntime.sleep(120)\n")
    rec = supervisor.launch_argv("deploy", [sys.executable, "-c", code, "--port", "8123"], cwd=tmp_path)
    try:
        async def go():
            app = app_for(runs.load(rec.id), poll_s=3600, gpu_s=3600)
            async with app.run_test(size=(160, 48)) as pilot:
                await settled(pilot)
                assert app.query_one(JobPane).display
                await pilot.press("S")
                assert await until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
                title, details = app.screen.title_text, app.screen.details
                assert title == f"Stop {rec.id}?" and "run " not in title
                assert "stops serving" in details and "checkpoint" not in details
        run(go())
    finally:
        supervisor.stop(runs.load(rec.id), force=True, timeout_s=10)


def test_the_observer_counts_error_lines_from_its_one_tail(swift_fixtures, tmp_path):
    from engine.events import ErrorLine
    from engine.observer import RunObserver

    hub = RunObserver(console_log=REPO / "tests/data/failures/dataset_not_found-hub.log")
    got = [ev for ev in hub.poll() if isinstance(ev, ErrorLine)]
    assert got and got[-1].count == 2 and got[-1].line.startswith("[ERROR:swift] Dataset data/train.json load failed")
    clean = tmp_path / "console.log"
    clean.write_bytes((swift_fixtures / "sft-tiny-h200.stdout").read_bytes()
                      + (swift_fixtures / "sft-tiny-h200.stderr").read_bytes())
    healthy = RunObserver(console_log=clean)
    assert not [ev for ev in healthy.poll() if isinstance(ev, ErrorLine)] and healthy.error_lines == 0


def test_switcher_rows_follow_a_running_run_in_place(home, tmp_path, swift_fixtures):
    from tui.screens.runs import RunsScreen

    rec = make_run(swift_fixtures, tmp_path, "running")

    async def go():
        app = app_for(rec, poll_s=3600, gpu_s=3600)
        async with app.run_test(size=(160, 48)) as pilot:
            await settled(pilot)
            await pilot.press("w")
            assert await until(pilot, lambda: isinstance(app.screen, RunsScreen) and app.screen.sources)
            table = app.screen.query_one("#runs-table")
            assert table.get_row(rec.id)[3] == "20/24"
            with open(rec.console_log, "ab") as fh:
                fh.write(b"\rTrain:  92%|#########1| 22/24 [00:05<00:00,  7.16it/s]\r")
            assert await until(pilot, lambda: table.get_row(rec.id)[3] == "22/24", timeout=20)
    run(go())
