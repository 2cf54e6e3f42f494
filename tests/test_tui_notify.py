"""Being told when a run ends (issue 13): the dashboard says so wherever the user is — a toast (Pilot), and the bell
and desktop notification written to the real terminal (checked in tmux: the window's bell flag; a label cannot
retitle the pane)."""
from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys

import psutil
import pytest

from engine import runs
from test_tui_support import fixed_clock, make_run, settled, until, wait_for
from tui import settings
from tui.app import SwiftdeckApp
from tui.model import RunSource


def _end(run_id: str, status: str, **meta) -> None:
    def fill(r: runs.RunRecord) -> None:
        r.status, r.exit_code, r.ended_at = status, (0 if status == "finished" else 1), r.started_at + 90
        r.meta.update(meta)
    runs.update(run_id, fill)


def _toasts(app) -> list:
    return list(app._notifications)


def test_a_run_that_ends_is_told_in_a_toast_and_the_toast_can_be_turned_off(home, tmp_path, swift_fixtures):
    shown = make_run(swift_fixtures, tmp_path / "a", "running", label="shown")
    # another registry run, not the one shown: the finished fixture made running again (this process runs it)
    other = make_run(swift_fixtures, tmp_path / "b", "finished", label="other")
    me = psutil.Process()

    def running(r: runs.RunRecord) -> None:
        r.status, r.exit_code, r.ended_at = "running", None, None
        r.runner_pid, r.runner_create_time = me.pid, me.create_time()
    runs.update(other.id, running)

    async def go():
        app = SwiftdeckApp(RunSource.of_record(shown), clock=fixed_clock, remember_theme=False, check_leftovers=False)
        async with app.run_test(size=(160, 48)) as pilot:
            assert await until(pilot, lambda: app.end_watch.active == {shown.id, other.id})
            assert not _toasts(app)  # a run that is running is no news
            _end(shown.id, "failed", diagnosis={"kind": "cuda_oom", "summary": "CUDA out of memory"})
            assert await until(pilot, lambda: _toasts(app))
            (toast,) = _toasts(app)
            assert toast.title == "run shown (sft-20261127-174000-running) ran out of memory"
            assert toast.severity == "error" and "cuda_oom" in toast.message and "step 21/24" in toast.message  # as the header says it:
            # the console's last bar (21/24) counts once the run has ended, as engine.ingest reads it
            # the palette turns the toast off, remembered
            await pilot.press("ctrl+p")
            await pilot.press(*"Turn off the end-of-run toast")
            await pilot.press("enter")
            assert await until(pilot, lambda: settings.load().get("notify_toast") is False)
            # the other registry run ends: no toast now
            app.clear_notifications()
            _end(other.id, "stopped")
            assert await until(pilot, lambda: app.end_watch.active == set())
            await settled(pilot)
            assert not _toasts(app)

    asyncio.run(go())
    assert settings.load()["notify_toast"] is False


def test_no_toast_when_turned_off_and_a_finished_run_is_information(home, tmp_path, swift_fixtures):
    rec = make_run(swift_fixtures, tmp_path, "running", label="quiet")

    async def go(toast_on: bool):
        settings.save(notify_toast=toast_on)
        runs.update(rec.id, lambda r: setattr(r, "status", "running"))
        app = SwiftdeckApp(None, clock=fixed_clock, remember_theme=False, check_leftovers=False)
        async with app.run_test(size=(160, 48)) as pilot:
            assert await until(pilot, lambda: app.end_watch.active == {rec.id})
            _end(rec.id, "finished")
            assert await until(pilot, lambda: app.end_watch.active == set())
            await settled(pilot)
            return _toasts(app)

    assert asyncio.run(go(False)) == []
    (toast,) = asyncio.run(go(True))
    assert toast.title == f"run quiet ({rec.id}) finished" and toast.severity == "information"


@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed (make test installs it)")
def test_the_bell_reaches_a_real_terminal_and_a_label_cannot_retitle_it(home, tmp_path, swift_fixtures):
    """The real dashboard in tmux: when the run ends, tmux flags the window's bell; the run's label carries an OSC 2
    (set title) that would retitle the pane if it went out unclean."""
    rec = make_run(swift_fixtures, tmp_path, "running", label="evil\x1b]2;PWNED\x07")
    sock = str(tmp_path / "tmux.sock")

    def tmux(*args: str) -> str:
        return subprocess.run(["tmux", "-S", sock, *args], capture_output=True, text=True, check=True).stdout

    env = ["-e", f"SWIFTDECK_HOME={os.environ['SWIFTDECK_HOME']}", "-e", f"PYTHONPATH={os.getcwd()}",
           "-e", "TERM=xterm-256color"]
    try:
        tmux("new-session", "-d", "-s", "t", "-x", "160", "-y", "48", "-n", "idle", "sleep", "120")
        tmux("set-option", "-g", "bell-action", "any")
        tmux("new-window", "-d", "-t", "t:", "-n", "deck", *env, sys.executable, "-m", "tui.cli", "attach", rec.id)
        assert wait_for(lambda: "swiftdeck" in tmux("capture-pane", "-p", "-t", "t:deck"), timeout=60), \
            tmux("capture-pane", "-p", "-t", "t:deck")
        title_before = tmux("display-message", "-p", "-t", "t:deck", "#{pane_title}").strip()
        assert "PWNED" not in title_before, title_before
        assert wait_for(lambda: "running" in tmux("capture-pane", "-p", "-t", "t:deck"), timeout=30)
        _end(rec.id, "finished")
        assert wait_for(lambda: "deck 1" in tmux("list-windows", "-t", "t", "-F", "#{window_name} #{window_bell_flag}"),
                        timeout=30), tmux("list-windows", "-t", "t", "-F", "#{window_name} #{window_bell_flag}")
        assert wait_for(lambda: "finished" in tmux("capture-pane", "-p", "-t", "t:deck"), timeout=30)
        title = tmux("display-message", "-p", "-t", "t:deck", "#{pane_title}").strip()
        assert "PWNED" not in title and title == title_before
    finally:
        subprocess.run(["tmux", "-S", sock, "kill-server"], capture_output=True)


def test_the_channels_are_on_until_turned_off_and_remembered(home):
    from tui import endnotice

    assert all(endnotice.enabled(k) for k, _ in endnotice.CHANNELS)
    settings.save(notify_bell=False)
    assert not endnotice.enabled("notify_bell") and endnotice.enabled("notify_desktop")
    assert settings.flag("some_unknown_switch") is False


def test_jobs_are_not_told_only_training_runs(home, tmp_path, swift_fixtures):
    from tui import endnotice

    me = psutil.Process()
    job = runs.create("deploy", ["swift", "deploy", "--model", "/tmp/tiny"], str(tmp_path), label="a deploy")
    runs.update(job.id, lambda r: (setattr(r, "status", "running"), setattr(r, "runner_pid", me.pid),
                                   setattr(r, "runner_create_time", me.create_time())))
    run = make_run(swift_fixtures, tmp_path, "running", label="trained")
    watch = endnotice.EndWatch()
    assert watch.check() == [] and watch.active == {run.id}
    _end(job.id, "stopped")
    _end(run.id, "finished")
    assert [(r.id, n.outcome) for r, n in watch.check()] == [(run.id, "finished")]
