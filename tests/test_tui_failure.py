"""Issue 5 in the dashboard (Pilot, real files, real processes; no ms-swift run here — see test_tui_failure_live.py):
the failure card for every recorded real failure log (tests/data/failures) and for garbage, the CUDA OOM clean-up
(the H200 recording, and a real clean-up by the engine's runner on this machine), "relaunch with these changes" up
to the checked command, leftovers after a SIGKILLed swiftdeck, dataset problems in the launch form, snapshots."""
from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import sys
import time
from pathlib import Path

import psutil
import pytest
from rich.cells import cell_len

from engine import demo, diagnose, leftovers, runs, supervisor
from engine.relaunch import remedy_flags
from engine.swift_args import set_flag
from test_tui_snapshots import FixedSampler
from test_tui_support import FIXED_START, fixed_clock, make_run, pid_alive, settled, text_of, until, wait_for
from tui.app import SwiftdeckApp
from tui.gpufeed import GpuFeed
from tui.model import RunSource
from tui.screens.launch import LaunchScreen
from tui.screens.leftovers import LeftoversScreen
from tui.screens.relaunch import RelaunchScreen
from tui.widgets.failure import FailureCard, applicable, fmt_mem

FAILURES = Path(__file__).parent / "data" / "failures"
RECORDED = sorted(FAILURES.glob("*.json"))
DEVICE_OOM = Path(__file__).parents[1] / "docs" / "device-runs" / "engine_oom-h200.json"


def run(coro):
    return asyncio.run(coro)


def app_for(source, **kw) -> SwiftdeckApp:
    kw.setdefault("remember_theme", False)
    kw.setdefault("gpu_feed", GpuFeed(FixedSampler(False)))
    return SwiftdeckApp(source, clock=fixed_clock, **kw)


def sidecar(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def argv_of(meta: dict) -> list[str]:
    """The recorded command as the registry would hold it: from `swift` on (a `prlimit` prefix dropped)."""
    cmd = meta["command"]
    i = next((i for i, c in enumerate(cmd) if Path(c).name == "swift"), None)
    return ["swift", *cmd[i + 1:]] if i is not None else list(cmd)


def failed_record(where: Path, log: Path | None, *, exit_code: int | None, argv: list[str] | None = None,
                  meta: dict | None = None, status: str = "failed") -> runs.RunRecord:
    """A registry record of an ended run whose console.log is a copy of `log` (none when `log` is None)."""
    argv = argv or ["swift", "sft"]
    kind = argv[1] if argv[0] == "swift" and len(argv) > 1 else "sft"  # torchrun: a training run
    rec = runs.create(kind, argv, str(where))

    def fill(r: runs.RunRecord) -> None:
        r.status, r.exit_code, r.started_at, r.ended_at = status, exit_code, FIXED_START, FIXED_START + 60
        r.meta.update(meta or {})

    rec = runs.update(rec.id, fill)
    if log is not None:
        shutil.copyfile(log, rec.console_log)
    return rec


def said(app) -> str:
    """The newest notification's text ("" before the first)."""
    return str(list(app._notifications)[-1].message) if app._notifications else ""


def card_lines(card: FailureCard) -> list[str]:
    return text_of(card).splitlines()


async def assert_fits(pilot, card: FailureCard) -> None:
    """Every line after the head (which wraps) is cut to the card's width; no control characters reach the screen."""
    assert await until(pilot, lambda: card.content_region.width > 0)  # laid out (it was hidden before)
    await pilot.pause()
    lines = card_lines(card)
    width = card.content_region.width
    assert all(cell_len(line) <= width for line in lines[1:]), (width, lines)
    assert not any(ch < " " and ch != "\n" for ch in text_of(card))


# ---------------------------------------------------------------- every recorded failure, as a run and as a log


@pytest.mark.parametrize("path", RECORDED, ids=lambda p: p.stem)
def test_recorded_failure_shows_its_card(home, tmp_path, path):
    meta = sidecar(path)
    rec = failed_record(tmp_path, path.with_suffix(".log"), exit_code=meta["exit_code"], argv=argv_of(meta))

    async def go():
        app = app_for(RunSource.of_record(rec))
        async with app.run_test(size=(80, 24)) as pilot:
            card = app.query_one(FailureCard)
            assert await until(pilot, lambda: card.state is not None and card.state.diagnosis is not None)
            await pilot.pause()
            d = card.state.diagnosis
            assert card.display and d["kind"] == meta["kind"]
            lines = card_lines(card)
            assert lines[0].startswith(f"✖ Run failed (exit code {meta['exit_code']}) · {meta['kind']}: ")
            assert d["summary"][:40] in lines[0]
            shown = [line for line in lines if line.startswith(("  1. ", "  2. ", "  3. "))]
            assert [line[5:15] for line in shown] == [r[:10] for r in d["remedies"][:3]]
            relaunchable = rec.argv[1:2] == ["sft"]  # torchrun and `swift infer/export` are not relaunched here
            assert lines[-1].startswith("  r: relaunch with these changes" if relaunchable else "  t: the Traceback")
            await assert_fits(pilot, card)
    run(go())


def test_recorded_logs_opened_as_bare_files(home, tmp_path):
    """A console log that no swiftdeck record points at: no exit code is known, the traceback alone tells."""
    async def go():
        app = app_for(None, poll_s=0.1)
        async with app.run_test(size=(160, 48)) as pilot:
            card = app.query_one(FailureCard)
            for path in RECORDED:
                meta = sidecar(path)
                log = tmp_path / f"{path.stem}.log"
                shutil.copyfile(path.with_suffix(".log"), log)
                app.attach(RunSource(console_log=log))
                if meta["kind"] == "killed_by_signal":  # a signal leaves no traceback: its exit code was the evidence
                    continue
                assert await until(pilot, lambda: card.state is not None and card.state.key == str(log)), path.stem
                assert card.display and card.state.diagnosis["kind"] == meta["kind"], path.stem
                assert text_of(card).startswith(f"✖ This log shows a failure · {meta['kind']}: ")
                await assert_fits(pilot, card)
    run(go())


def test_garbage_never_reaches_the_screen_as_a_traceback(home, tmp_path):
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "random.log").write_bytes(os.urandom(200_000))
    (junk / "empty.log").write_bytes(b"")
    (junk / "one-long-line.log").write_bytes(b"x" * 3_000_000)
    (junk / "controls.log").write_bytes(b"Traceback (most recent call last):\n  File \"a.py\", line 1, in <module>\n"
                                        b"\x1b[31mValueError: bad\x00\x07 \xff\xfe value\r\n")
    (junk / "utf16.log").write_bytes("Traceback (most recent call last):\nValueError: x\n".encode("utf-16"))
    sources = [failed_record(tmp_path, p, exit_code=1) for p in sorted(junk.iterdir())]
    gone = failed_record(tmp_path, None, exit_code=1, status="lost")  # its console.log never existed
    odd_meta = failed_record(tmp_path, junk / "controls.log", exit_code=1,
                             meta={"diagnosis": {"kind": 5, "remedies": "nope"}, "clean_up": [1, 2]})
    half_meta = failed_record(tmp_path, junk / "empty.log", exit_code=-9,
                              meta={"diagnosis": {"kind": "cuda_oom", "remedies": [None, 3]},
                                    "clean_up": {"kind": "cuda_oom", "tree_pids": "x", "seconds_to_clean": "y",
                                                 "left": 5, "gpu_available": True, "gpu_free_after": [None]}})

    async def go():
        app = app_for(None)
        async with app.run_test(size=(80, 24)) as pilot:
            card = app.query_one(FailureCard)
            for rec in [*sources, gone, odd_meta, half_meta]:
                app.attach(RunSource.of_record(rec))
                assert await until(pilot, lambda: card.state is not None and card.state.key == rec.id
                                   and card.state.diagnosis is not None), rec.id
                await pilot.pause()
                assert card.display and text_of(card).startswith("✖ Run ")
                await assert_fits(pilot, card)
            controls = next(r for r in sources if r.console_log.read_bytes().startswith(b"Traceback"))
            app.attach(RunSource.of_record(controls))
            assert await until(pilot, lambda: card.state is not None and card.state.key == controls.id)
            assert "ValueError: bad" in text_of(card)
            for bare in [junk / "random.log", junk / "empty.log", junk]:  # bare files and a folder: no card
                app.attach(RunSource(console_log=bare) if bare.is_file() else RunSource(run_dir=bare))
                await settled(pilot)  # its poll is shown
                assert app.watch.source.key == str(bare)
                assert not card.display
    run(go())


# ---------------------------------------------------------------- CUDA OOM clean-up


def test_clean_up_under_way(home, tmp_path, swift_fixtures):
    """The runner saw the OOM line and is stopping the tree; the record still says running."""
    rec = make_run(swift_fixtures, tmp_path, "running")
    runs.update(rec.id, lambda r: r.meta.update(clean_up={"kind": "cuda_oom", "detected_at": time.time()}))

    async def go():
        app = app_for(RunSource.of_record(runs.load(rec.id)))
        async with app.run_test(size=(120, 36)) as pilot:
            card = app.query_one(FailureCard)
            assert await until(pilot, lambda: card.state is not None)
            await pilot.pause()
            lines = card_lines(card)
            assert lines[0] == "✖ Run stopping after a fatal error"
            assert lines[1] == "  clean-up: the CUDA OOM line was seen; stopping the whole process tree …"
    run(go())


def test_oom_clean_up_recorded_on_the_h200_shows_memory_before_and_after(home, tmp_path, swift_fixtures):
    """The recorded OOM console with the clean-up record the engine wrote on a real H200 (docs/device-runs)."""
    clean_up = json.loads(DEVICE_OOM.read_text())["oom"]["clean_up"]
    rec = make_run(swift_fixtures, tmp_path, "failed")
    runs.update(rec.id, lambda r: r.meta.update(clean_up=clean_up))

    async def go():
        app = app_for(RunSource.of_record(runs.load(rec.id)))
        async with app.run_test(size=(160, 48)) as pilot:
            card = app.query_one(FailureCard)
            assert await until(pilot, lambda: card.state is not None and card.state.diagnosis is not None)
            await pilot.pause()
            body = text_of(card)
            assert "· cuda_oom: CUDA out of memory on GPU 0" in body and "process 2727 holds 133.79 GiB" in body
            pids = " ".join(str(p) for p in clean_up["tree_pids"])
            assert (f"clean-up: {len(clean_up['tree_pids'])} processes stopped in "
                    f"{clean_up['seconds_to_clean']:.1f} s, none left (pids {pids})") in body
            assert (f"GPU memory of the run: {fmt_mem(clean_up['gpu_mem_before'])} before, "
                    f"{fmt_mem(clean_up['gpu_mem_after'])} after (GPU0 {fmt_mem(clean_up['gpu_free_after'][0])} "
                    "free)") in body
            assert "1.82 GiB before, 0 MiB after" in body  # the numbers, read by a person once
            await assert_fits(pilot, card)
    run(go())


REPLAY = r"""
import subprocess, sys, time
worker = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])  # like a dataloader worker
time.sleep(0.5)
sys.stdout.write(open(sys.argv[1]).read()); sys.stdout.flush()  # the real OOM traceback
time.sleep(600)
"""


def test_live_oom_clean_up_on_this_machine(home, tmp_path, swift_fixtures):
    """A process replays the recorded OOM and would hang on with a worker: the runner stops the tree; the card
    shows what it stopped (no NVML here, so no memory numbers) and the diagnosis."""
    rec = supervisor.launch_argv("sft", [sys.executable, "-c", REPLAY, str(swift_fixtures / "oom-h200.stderr")],
                                 cwd=tmp_path)

    async def go():
        app = app_for(RunSource.of_record(rec), poll_s=0.2, gpu_s=3600)
        async with app.run_test(size=(120, 36)) as pilot:
            card = app.query_one(FailureCard)
            assert await until(pilot, lambda: card.state is not None and card.state.status == "failed"
                               and card.state.diagnosis is not None and card.state.clean_up is not None
                               and "seconds_to_clean" in card.state.clean_up, timeout=60)
            await pilot.pause()
            clean = runs.load(rec.id).meta["clean_up"]
            body = text_of(card)
            assert "· cuda_oom: " in body
            assert (f"clean-up: {len(clean['tree_pids'])} processes stopped in {clean['seconds_to_clean']:.1f} s, "
                    "none left") in body and len(clean["tree_pids"]) >= 2
            assert "GPU memory of the run: not measured (no NVML on this machine)" in body
            assert supervisor.live_tree(runs.load(rec.id)) == []
    run(go())


# ---------------------------------------------------------------- relaunch with these changes (up to the command)


@pytest.fixture
def introspected(home, swift_introspection) -> None:
    shutil.copytree(swift_introspection, home / "cache" / swift_introspection.name)


def test_relaunch_screen_applies_a_remedy_to_the_checked_command(home, tmp_path, swift_fixtures, demo_assets,
                                                                introspected):
    """The recorded OOM as a failed demo run (its argv carries the values the OOM log shows): pick remedies, see
    the changes and the command after check_args; bad flags are refused; nothing starts."""
    oom_log = tmp_path / "oom.log"
    oom_log.write_bytes((swift_fixtures / "oom-h200.stdout").read_bytes()
                        + (swift_fixtures / "oom-h200.stderr").read_bytes())
    used = diagnose.diagnose_file(oom_log, exit_code=1).details["args_used"]
    argv = demo.demo_sft_args(demo_assets, tmp_path / "output")
    for flag in ("per_device_train_batch_size", "gradient_accumulation_steps", "max_length", "lora_rank"):
        argv = set_flag(argv, f"--{flag}", [str(used[flag])])
    rec = failed_record(tmp_path, oom_log, exit_code=1, argv=["swift", "sft", *argv])

    async def go():
        app = app_for(RunSource.of_record(rec))
        async with app.run_test(size=(120, 40)) as pilot:
            card = app.query_one(FailureCard)
            assert await until(pilot, lambda: card.state is not None and card.state.diagnosis is not None)
            remedies = card.state.diagnosis["remedies"]
            await pilot.press("r")
            screen = app.screen
            assert isinstance(screen, RelaunchScreen)
            options = screen.query_one("#relaunch-remedies")
            assert options.option_count == 1 + len(remedies)
            assert [options.get_option_at_index(i).disabled for i in range(1, options.option_count)] == \
                [not applicable(r) for r in remedies]
            assert any(not applicable(r) for r in remedies) and any(applicable(r) for r in remedies)
            first = next(i for i, r in enumerate(remedies, 1) if applicable(r))
            assert options.highlighted == first

            command = screen.query_one("#relaunch-command")
            changes = screen.query_one("#relaunch-changes")
            pairs = remedy_flags(remedies[first - 1])
            assert await until(pilot, lambda: "command: " in text_of(command))
            assert "✔ arguments OK" in text_of(command)
            for flag, value in pairs:
                assert f"{flag} {value}" in text_of(command)
                assert f"{flag} {used[flag[2:]]} → {value}" in text_of(changes)
            assert "starts from scratch" in text_of(changes)  # the OOM left no checkpoint

            await pilot.press("down")  # the next remedy that can be applied (disabled ones are skipped)
            nxt = next(i for i, r in enumerate(remedies, 1) if applicable(r) and i > first)
            assert options.highlighted == nxt
            flag, value = remedy_flags(remedies[nxt - 1])[0]
            assert await until(pilot, lambda: f"{flag} {value}" in text_of(command))

            field = screen.query_one("#relaunch-flags")
            field.value = "--lora_rank"
            assert await until(pilot, lambda: "--lora_rank needs one plain value" in text_of(changes))
            await pilot.press("ctrl+l")
            assert await until(pilot, lambda: "the flags are not valid" in said(app))
            assert isinstance(app.screen, RelaunchScreen)  # refused: nothing started
            field.value = "--no_such_flag 3"
            assert await until(pilot, lambda: "problem:" in text_of(command))
            await pilot.press("ctrl+l")
            assert await until(pilot, lambda: "not relaunched" in said(app))
            assert isinstance(app.screen, RelaunchScreen)
            assert [r.id for r in runs.all_runs()] == [rec.id]
            await pilot.press("escape", "y")  # typed flags: "Discard changes?" asks first
            assert await until(pilot, lambda: len(app.screen_stack) == 1)
    run(go())


def test_relaunch_is_refused_for_runs_that_did_not_fail(home, tmp_path, swift_fixtures):
    finished = make_run(swift_fixtures, tmp_path, "finished")
    log = tmp_path / "bare.log"
    shutil.copyfile(FAILURES / "unknown.log", log)

    async def go():
        app = app_for(RunSource.of_record(finished))
        async with app.run_test(size=(120, 36)) as pilot:
            await settled(pilot)
            await pilot.press("r")
            assert await until(pilot, lambda: "not failed: nothing to relaunch" in said(app))
            assert not isinstance(app.screen, RelaunchScreen)
            app.attach(RunSource(console_log=log))
            card = app.query_one(FailureCard)
            assert await until(pilot, lambda: card.state is not None and card.state.key == str(log))
            await pilot.press("r")
            assert await until(pilot, lambda: "not started by swiftdeck" in said(app))
            assert not isinstance(app.screen, RelaunchScreen)
    run(go())


# ---------------------------------------------------------------- leftovers after a SIGKILLed swiftdeck

ORPHANING = ("import subprocess, sys, time\n"
             "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(300)'])\n"
             "time.sleep(300)\n")


def test_leftovers_after_a_sigkilled_swiftdeck_are_offered_on_start_and_stopped(home, tmp_path):
    """The runner (swiftdeck's part of a run) and the main process are SIGKILLed, as by the kernel's OOM killer;
    the child lives on. The next dashboard start lists it with its RAM and run; `y` stops it; none is left."""
    rec = supervisor.launch_argv("sft", [sys.executable, "-c", ORPHANING], cwd=tmp_path)
    assert wait_for(lambda: runs.load(rec.id).descendants, timeout=30)
    rec = runs.load(rec.id)
    (child_pid, child_ctime), = rec.descendants
    os.kill(rec.runner_pid, signal.SIGKILL)
    os.kill(rec.pid, signal.SIGKILL)
    assert wait_for(lambda: runs.load(rec.id).status == "lost", timeout=30, every=0.1)
    child = psutil.Process(int(child_pid))
    assert child.is_running()

    async def go():
        app = app_for(None)
        async with app.run_test(size=(160, 40)) as pilot:
            assert await until(pilot, lambda: isinstance(app.screen, LeftoversScreen))
            screen = app.screen
            assert await until(pilot, lambda: screen.query("#leftovers-table")
                               and screen.query_one("#leftovers-table").row_count == 1)
            table = screen.query_one("#leftovers-table")
            row = table.get_row_at(0)
            assert row[0] == "✔" and row[1] == str(child_pid) and row[5] == rec.id and row[6] == "lost"
            assert row[3].endswith(("MB", "KB")) and "time.sleep(300)" in row[7]
            await pilot.press("space")  # unselect: nothing to stop
            assert table.get_row_at(0)[0] == ""
            await pilot.press("y")
            assert await until(pilot, lambda: "nothing selected" in said(app))
            assert child.is_running()
            await pilot.press("space")
            await pilot.press("y")
            title = screen.query_one("#leftovers-title")
            assert await until(pilot, lambda: "No leftover processes" in text_of(title), timeout=20)
            assert "stopped 1 process(es)" in text_of(screen.query_one("#leftovers-status"))
            assert table.row_count == 0
            await pilot.press("escape")
            assert not isinstance(app.screen, LeftoversScreen)
    run(go())
    assert not pid_alive(int(child_pid)) or psutil.Process(int(child_pid)).status() == psutil.STATUS_ZOMBIE
    assert leftovers.find() == []


def test_leftovers_key_with_none(home):
    async def go():
        app = app_for(None)
        async with app.run_test(size=(120, 36)) as pilot:
            await settled(pilot)  # the look for leftovers on start is done too
            assert not isinstance(app.screen, LeftoversScreen)  # nothing found on start: no screen
            await pilot.press("L")
            screen = app.screen
            assert isinstance(screen, LeftoversScreen)
            assert await until(pilot, lambda: screen.query("#leftovers-title")
                               and "No leftover" in text_of(screen.query_one("#leftovers-title")))
            assert not screen.query_one("#stop").display
            await pilot.press("escape")
            assert not isinstance(app.screen, LeftoversScreen)
    run(go())


# ---------------------------------------------------------------- dataset problems in the launch form


def test_launch_form_runs_the_dataset_check_before_launching(home, tmp_path, demo_assets, introspected):
    broken = tmp_path / "broken.json"
    broken.write_text('[\n {"instruction": "a", "input": "", "output": "b"},\n'
                      ' {"instruction": "c" "input": "", "output": "d"}\n]\n')
    rows = json.loads(demo_assets.dataset.read_text(encoding="utf-8"))
    duplicated = tmp_path / "dup.json"
    duplicated.write_text(json.dumps(rows + rows[:1], ensure_ascii=False), encoding="utf-8")

    async def go():
        from textual.widgets import Input

        app = app_for(None)
        async with app.run_test(size=(120, 48)) as pilot:
            await settled(pilot)
            await pilot.press("n")
            screen = app.screen
            assert isinstance(screen, LaunchScreen)
            screen.query_one("#f-model", Input).value = str(demo_assets.model)
            screen.query_one("#f-extra", Input).value = "--model_type qwen2 --template qwen2_5"
            data, check = screen.query_one("#dataset-check"), screen.query_one("#launch-check")

            screen.query_one("#f-dataset", Input).value = str(broken)
            assert await until(pilot, lambda: "line 3, column 22: Expecting ',' delimiter" in text_of(data))
            assert "✖ broken.json: 0 rows" in text_of(data) and "block the launch" in text_of(data)
            await pilot.press("ctrl+l")
            assert await until(pilot, lambda: "not launched" in text_of(check))
            assert "not launched: error: broken.json line 3, column 22: Expecting ',' delimiter" in text_of(check)
            assert isinstance(app.screen, LaunchScreen) and runs.all_runs() == []

            screen.query_one("#f-dataset", Input).value = str(tmp_path / "missing.jsonl")
            assert await until(pilot, lambda: not text_of(check))  # the form took the change: no verdict yet
            await pilot.press("ctrl+l")
            assert await until(pilot, lambda: f"not launched: ✖ {tmp_path / 'missing.jsonl'} does not exist"
                               in text_of(check))
            assert runs.all_runs() == []

            screen.query_one("#f-dataset", Input).value = str(duplicated)
            assert await until(pilot, lambda: not text_of(check))
            await pilot.press("ctrl+k")  # Check: the warning is shown, the arguments pass, nothing blocks
            assert await until(pilot, lambda: "✔ arguments OK" in text_of(check)), text_of(check)
            assert "row 51 (line 1): exact duplicate of row 1" in text_of(data)
            assert "1 warning(s)" in text_of(data) and "blocked" not in text_of(check)
            await pilot.press("escape")
    run(go())


# ---------------------------------------------------------------- snapshots of the card


@pytest.mark.parametrize("size", [(80, 24), (160, 48)], ids=["80x24", "160x48"])
def test_failure_card_snapshot(_snapshot_dir, snap_compare, home, tmp_path, swift_fixtures, size):
    """The recorded H200 OOM with the engine's clean-up record from the H200 (docs/device-runs)."""
    rec = make_run(swift_fixtures, tmp_path / "work", "failed")
    runs.update(rec.id, lambda r: r.meta.update(clean_up=json.loads(DEVICE_OOM.read_text())["oom"]["clean_up"]))
    app = app_for(RunSource.of_record(runs.load(rec.id)), gpu_feed=GpuFeed(FixedSampler(True)), poll_s=3600,
                  gpu_s=3600)

    assert snap_compare(app, terminal_size=size, run_before=settled)


def test_typing_dev_zero_into_the_dataset_field_is_refused_and_costs_no_memory(home, tmp_path):
    """Issue 14 item 7: the form's check runs as the user types, in a cancellable worker, and refuses what is not a
    regular file in one line (it used to read /dev/zero until the dashboard held 5 GB)."""
    import resource

    from textual.widgets import Input

    async def go():
        app = app_for(None)
        async with app.run_test(size=(120, 48)) as pilot:
            await pilot.press("n")
            screen = app.screen
            assert isinstance(screen, LaunchScreen)
            data = screen.query_one("#dataset-check")
            field = screen.query_one("#f-dataset", Input)
            before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            for typed in ("/dev/z", "/dev/ze", "/dev/zer", "/dev/zero"):  # each keystroke cancels the check before
                field.value = typed
                await pilot.pause()
            assert await until(pilot, lambda: "is a character device, not a dataset file" in text_of(data))
            assert "block the launch" in text_of(data)
            grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
            assert grown_mb < 200, f"the dashboard grew by {grown_mb:.0f} MB"

    asyncio.run(go())
