"""Being told when a run ends: `swiftdeck wait` (exit 0 finished, 1 failed/stopped/lost, 124 timeout) on runs it did
not start, the notification text per outcome, and the terminal escape sequences (checked in a real tmux: a run
label cannot inject a sequence of its own). `swiftdeck train --wait` on real runs: test_compare_live."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from engine import diagnose, runs
from engine.ops import notify, wait
from test_wait_support import end, live_record

REPO = Path(__file__).resolve().parents[1]
FAILURES = REPO / "tests" / "data" / "failures"


def swiftdeck(*args: str, home: Path, timeout: float = 60) -> subprocess.CompletedProcess:
    env = {**os.environ, "SWIFTDECK_HOME": str(home)}
    return subprocess.run([sys.executable, "-m", "tui.cli", *args], env=env, capture_output=True, text=True,
                          timeout=timeout, cwd=REPO)


def spawn_wait(run_id: str, home: Path) -> subprocess.Popen:
    env = {**os.environ, "SWIFTDECK_HOME": str(home)}
    return subprocess.Popen([sys.executable, "-m", "tui.cli", "wait", run_id], env=env, cwd=REPO, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def test_wait_times_out_with_124_while_the_run_goes_on(home, tmp_path):
    with live_record("sft", ["swift", "sft"], tmp_path, label="sweep") as rec:
        started = time.monotonic()
        proc = swiftdeck("wait", rec.id, "--timeout", "1.5", home=home)
        took = time.monotonic() - started
        assert proc.returncode == 124, proc.stdout + proc.stderr
        assert took >= 1.5 and f"run {rec.id} is still running after 1.5s" in proc.stderr
        assert runs.load(rec.id).status == "running"


@pytest.mark.parametrize("status,exit_code,expected", [("finished", 0, 0), ("failed", 1, 1), ("stopped", -15, 1)])
def test_wait_returns_when_another_process_ends_the_run(home, tmp_path, status, exit_code, expected):
    with live_record("sft", ["swift", "sft"], tmp_path, label="sweep") as rec:
        waiter = spawn_wait(rec.id, home)
        # the waiter is waiting (it said so) before the run ends
        assert "waiting for run" in waiter.stderr.readline()
        assert waiter.poll() is None
        end(rec, status, exit_code)
        out, _ = waiter.communicate(timeout=30)
    assert waiter.returncode == expected, out
    assert out.startswith(f"run sweep ({rec.id}) {status}")


def test_wait_on_a_run_whose_processes_vanished_is_1_lost(home, tmp_path):
    with live_record("sft", ["swift", "sft"], tmp_path) as rec:
        waiter = spawn_wait(rec.id, home)
        assert "waiting for run" in waiter.stderr.readline()
    out, _ = waiter.communicate(timeout=30)  # the holder was killed with no exit code recorded
    assert waiter.returncode == 1 and out.startswith(f"run {rec.id} lost: its process is gone"), out
    assert swiftdeck("wait", rec.id, home=home).returncode == 1  # an ended run: at once


def test_wait_reads_the_registry_at_most_twice_a_second(home, tmp_path, monkeypatch):
    reads = []
    real_load = runs.load
    monkeypatch.setattr(runs, "load", lambda run_id: reads.append(time.monotonic()) or real_load(run_id))
    with live_record("sft", ["swift", "sft"], tmp_path) as rec:
        waited = wait.wait(rec, timeout_s=2.0, poll_s=0.01)  # asked to poll fast: held to 2/s
    assert waited.timed_out and waited.exit_status == 124
    assert 3 <= len(reads) <= 6, reads


def test_a_wait_on_something_unknown_is_one_line(home):
    proc = swiftdeck("wait", "sft-nope", home=home)
    assert proc.returncode == 2 and proc.stderr.strip() == "swiftdeck: no swiftdeck run 'sft-nope' (see `swiftdeck runs`)"
    assert "Traceback" not in proc.stderr


# ---------------------------------------------------------------- the notification per outcome


def ended_from_log(home: Path, tmp_path: Path, log: str, *, label: str = "") -> runs.RunRecord:
    """A failed run as engine.runner records it: the recorded console, the exit code and its diagnosis."""
    import json

    sidecar = json.loads((FAILURES / f"{log}.json").read_text())
    rec = runs.create("sft", sidecar["command"][-len(sidecar["command"]) + 1:], str(tmp_path), label=label)
    shutil.copy(FAILURES / f"{log}.log", rec.console_log)
    found = diagnose.diagnose_file(rec.console_log, exit_code=sidecar["exit_code"]).to_json()
    return end(rec, "failed", sidecar["exit_code"], diagnosis=found)


@pytest.mark.parametrize("log,outcome", [("dataset_not_found", "failed"), ("cpu_oom", "oom"),
                                         ("killed_by_signal", "oom"), ("killed_by_signal-sigterm", "failed")])
def test_a_failed_run_is_told_with_its_diagnosis(home, tmp_path, log, outcome):
    rec = ended_from_log(home, tmp_path, log, label="lr sweep")
    kind = rec.meta["diagnosis"]["kind"]
    n = notify.notice(rec)
    assert (n.outcome, n.severity) == (outcome, "error")
    assert n.title == (f"run lr sweep ({rec.id}) ran out of memory" if outcome == "oom"
                       else f"run lr sweep ({rec.id}) failed")
    assert n.body.startswith(f"{kind}: ") and rec.meta["diagnosis"]["summary"][:40] in n.body


def test_finished_stopped_and_lost_runs_are_told(home, tmp_path):
    rec = runs.create("sft", ["swift", "sft"], str(tmp_path), label="demo")
    rec.console_log.write_text("{'loss': 1.25, 'global_step/max_steps': '7/10'}\n"
                               "{'loss': 0.5, 'global_step/max_steps': '10/10'}\n")
    finished = notify.notice(end(rec, "finished", 0))
    assert (finished.outcome, finished.severity) == ("finished", "information")
    assert finished.text.startswith(f"run demo ({rec.id}) finished: step 10/10, loss 0.5, after ")
    stopped = notify.notice(end(rec, "stopped", -15))
    assert (stopped.outcome, stopped.severity) == ("stopped", "warning") and "step 10/10" in stopped.body
    with live_record("sft", ["swift", "sft"], tmp_path) as live:
        assert notify.outcome(runs.load(live.id)) is None
    lost = notify.notice(runs.load(live.id))
    assert (lost.outcome, lost.severity) == ("lost", "error") and "gone without an exit code" in lost.body


# ---------------------------------------------------------------- escape sequences

EVIL = "sweep\x1b]2;pwned\x07\x1b[31m red\x9b2J\u202eevil\nnext"


def test_text_in_a_sequence_is_made_safe():
    n = notify.Notice("finished", f"run {EVIL} finished", f"loss 0.1; {EVIL}", "information")
    for seq in (notify.osc9(n.text), notify.osc777(n.title, n.body)):
        body = seq[2:-2]  # between ESC ] and ST
        assert seq.startswith("\x1b]") and seq.endswith("\x1b\\")
        assert not any(c in body for c in "\x1b\x07\x9b\u202e\n"), repr(seq)
    assert notify.osc9("hi") == "\x1b]9;hi\x1b\\"
    assert notify.osc9("4;3") == "\x1b]9; 4;3\x1b\\"  # never one of ConEmu's own 9;N commands
    assert notify.osc777("a;b", "c;d") == "\x1b]777;notify;a,b;c;d\x1b\\"  # a `;` would end the title
    assert notify.clean("x" * 300).endswith("…") and len(notify.clean("x" * 300)) == notify.MAX_BODY
    wrapped = notify.tmux_passthrough(notify.osc9("hi"))
    assert wrapped == "\x1bPtmux;\x1b\x1b]9;hi\x1b\x1b\\\x1b\\"
    assert notify.sequences(n, desktop=False, bell=True) == "\x07"


@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed (make test installs it)")
def test_in_a_real_terminal_a_label_cannot_set_the_title_and_the_bell_rings(tmp_path):
    """tmux parses what a program writes like a terminal: an unsafe label would retitle the pane (OSC 2)."""
    sock = str(tmp_path / "tmux.sock")

    def tmux(*args: str) -> str:
        return subprocess.run(["tmux", "-S", sock, *args], capture_output=True, text=True, check=True).stdout

    script = tmp_path / "notify.py"
    script.write_text(
        "import sys, time\n"
        "from engine.ops import notify\n"
        f"n = notify.Notice('finished', 'run ' + {EVIL!r} + ' finished', 'loss 0.1', 'information')\n"
        "mode = sys.argv[1]\n"
        "raw = '\\x1b]9;' + n.title + '\\x1b\\\\'\n"  # what an unsafe implementation would write
        "sys.stdout.write(raw if mode == 'raw' else notify.sequences(n, tmux=False))\n"
        "sys.stdout.write('\\nwritten\\n'); sys.stdout.flush(); time.sleep(30)\n")
    env = ["env", f"PYTHONPATH={REPO}", "TERM=xterm-256color"]
    try:
        tmux("new-session", "-d", "-s", "t", "-x", "100", "-y", "10", "sleep", "60")
        tmux("set-option", "-g", "bell-action", "any")
        for mode in ("raw", "safe"):
            tmux("new-window", "-d", "-t", "t:", "-n", mode, *env, sys.executable, str(script), mode)

        def written(window: str) -> bool:
            return "written" in tmux("capture-pane", "-p", "-t", f"t:{window}")

        deadline = time.time() + 30
        while not (written("raw") and written("safe")) and time.time() < deadline:
            time.sleep(0.1)
        assert written("raw") and written("safe")
        title = {w: tmux("display-message", "-p", "-t", f"t:{w}", "#{pane_title}").strip() for w in ("raw", "safe")}
        assert title["raw"] == "pwned"  # the check can fail: unsafe text does retitle the pane
        assert "pwned" not in title["safe"], title
        screen = tmux("capture-pane", "-p", "-t", "t:safe")
        assert "written" in screen and not any(w in screen for w in ("pwned", "evil", "red")), screen  # nor drawn
        bells = tmux("list-windows", "-t", "t", "-F", "#{window_name} #{window_bell_flag}")
        assert "safe 1" in bells, bells  # the bell reached the terminal: tmux flags the window
    finally:
        subprocess.run(["tmux", "-S", sock, "kill-server"], capture_output=True)
