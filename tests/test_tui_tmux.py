"""A real terminal: `swiftdeck demo` inside tmux, read with capture-pane. The TUI is killed with SIGKILL while the
run goes on; the run still finishes; a new `swiftdeck` finds the same run."""
from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from engine import runs
from test_tui_support import wait_for

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed (make test installs it)")]

SWIFTDECK = str(Path(sys.executable).with_name("swiftdeck"))
STEP_RE = re.compile(r"step (\d+)/(\d+)")
LOSS_RE = re.compile(r"loss (\d+\.\d+)")


class Tmux:
    def __init__(self, tmp_path: Path):
        self.sock = str(tmp_path / "tmux.sock")

    def __call__(self, *args: str, check: bool = True) -> str:
        return subprocess.run(["tmux", "-S", self.sock, *args], capture_output=True, text=True, check=check).stdout

    def start(self, name: str, argv: list[str], env: dict[str, str]) -> int:
        exports = [f"{k}={v}" for k, v in env.items()]
        self("new-session", "-d", "-s", name, "-x", "120", "-y", "40", "env", *exports, *argv)
        return int(self("list-panes", "-t", name, "-F", "#{pane_pid}").split()[0])

    def screen(self, name: str) -> str:
        return self("capture-pane", "-p", "-t", name, check=False)

    def close(self) -> None:
        self("kill-server", check=False)


@pytest.fixture
def tmux(tmp_path):
    t = Tmux(tmp_path)
    yield t
    t.close()


def test_dashboard_in_a_real_terminal_survives_kill_9(tmux, home, demo_assets, tmp_path):
    shutil.copytree(demo_assets.model.parent, home / "demo")  # `swiftdeck demo` finds the demo built
    env = {"SWIFTDECK_HOME": str(home), "PATH": os.environ["PATH"], "TERM": "xterm-256color", "LANG": "C.UTF-8",
           "HOME": os.environ.get("HOME", "/root")}
    pid = tmux.start("one", [SWIFTDECK, "demo", "--epochs", "8"], env)  # 40 steps, logged every 5
    screens: list[str] = []

    def step_seen(minimum: int) -> bool:
        screen = tmux.screen("one")
        screens.append(screen)
        m = STEP_RE.search(screen)
        return bool(m and int(m.group(1)) >= minimum and LOSS_RE.search(screen))

    assert wait_for(lambda: step_seen(1), timeout=300, every=1), screens[-1]
    first = int(STEP_RE.search(screens[-1]).group(1))
    assert wait_for(lambda: step_seen(first + 1), timeout=240, every=0.5), screens[-1]
    advanced = screens[-1]
    print("\n--- capture-pane while training ---\n" + advanced)
    assert "swiftdeck" in advanced and "running" in advanced and "Log" in advanced and "Loss" in advanced

    rec = runs.all_runs()[0]
    assert rec.label == "demo" and rec.active
    tui = psutil.Process(pid)
    assert "swiftdeck" in " ".join(tui.cmdline())
    libs = " ".join(m.path for m in tui.memory_maps())
    assert "libtorch" not in libs and "transformers" not in libs  # the TUI never loaded the ML stack

    os.kill(pid, signal.SIGKILL)  # the TUI dies; the detached run must not notice
    wait_for(lambda: not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE, 10)
    assert runs.load(rec.id).active
    assert wait_for(lambda: not runs.load(rec.id).active, timeout=300, every=1)
    assert runs.load(rec.id).status == "finished"

    tmux.start("two", [SWIFTDECK], {**env, "PWD": str(tmp_path)})  # no argument: the most recent run
    assert wait_for(lambda: rec.id in tmux.screen("two") and "finished" in tmux.screen("two"), timeout=60), \
        tmux.screen("two")
    final = tmux.screen("two")
    print("\n--- capture-pane after reopening ---\n" + final)
    assert "40/40" in final
    tmux("send-keys", "-t", "two", "q")
    assert wait_for(lambda: "two" not in tmux("list-sessions", check=False), timeout=20)
