"""Issue 15's journey, keyboard only, in a real terminal (tmux at 80×24, read with capture-pane): `swiftdeck demo`
and watch it train; pick its checkpoint and chat with a `?` in the question; A/B; a new run from "clone this run"
with a bad value, then fixed (and with --max_length 8, so that it fails), launched; relaunch the failed run with the
remedy applied (its flags edited: a longer run); the log in $PAGER and back; stop; quit; `swiftdeck attach`.

Real ms-swift throughout (slow): run it under `flock /tmp/swiftdeck-slow.lock`."""
from __future__ import annotations

import os
import re
import shutil
import time

import pytest

from engine import runs
from test_tui_support import wait_for
from test_tui_tmux import SWIFTDECK, Tmux

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed (make test installs it)")]



def answers(name: str) -> list[dict]:
    """The assistant records of the chat transcripts `name` (a glob: checkpoint-10, base-*) of every run."""
    from engine import paths
    from tui.chat import transcript

    return [r for f in paths.runs_dir().glob(f"*/chat/{name}.jsonl") for r in transcript.read(f)
            if r.get("role") == "assistant"]


@pytest.fixture
def tmux(tmp_path):
    t = Tmux(tmp_path)
    yield t
    t.close()


class Terminal:
    """One tmux session: keys in, the screen out, and waits on what the screen shows."""

    def __init__(self, tmux: Tmux, name: str) -> None:
        self.tmux, self.name = tmux, name
        self.last = ""

    def keys(self, *keys: str) -> None:
        for key in keys:
            self.tmux("send-keys", "-t", self.name, key)
            time.sleep(0.5 if key == "Escape" else 0.15)  # as typed (Esc is told from Alt+key by the gap after it)
        print(f"\n--- after {' '.join(keys)} ---\n{self.screen()}")

    def type(self, text: str) -> None:
        self.tmux("send-keys", "-t", self.name, "-l", "--", text)  # text may start with "--"
        time.sleep(0.3)
        print(f"\n--- after typing {text!r} ---\n{self.screen()}")

    def screen(self) -> str:
        self.last = self.tmux.screen(self.name)
        return self.last

    def until(self, predicate, timeout: float = 60, what: str = "") -> str:
        assert wait_for(lambda: predicate(self.screen()), timeout=timeout, every=0.5), \
            f"{what or 'waiting'}: the screen shows\n{self.last}"
        return self.last

    def shows(self, text: str, timeout: float = 60) -> str:
        return self.until(lambda s: text in s, timeout, f"{text!r} not on screen")


def newest(label_start: str):
    found = [r for r in runs.all_runs() if (r.label or "").startswith(label_start)]
    return max(found, key=lambda r: r.started_at or 0) if found else None


def test_the_whole_journey_keyboard_only(tmux, home, demo_assets, tmp_path):
    shutil.copytree(demo_assets.model.parent, home / "demo")  # `swiftdeck demo` finds the demo built
    env = {"SWIFTDECK_HOME": str(home), "PATH": os.environ["PATH"], "TERM": "xterm-256color", "LANG": "C.UTF-8",
           "HOME": os.environ.get("HOME", "/root"), "PAGER": "less", "PYTHONPATH": os.environ.get("PYTHONPATH", "")}
    tmux.start("one", [SWIFTDECK, "demo", "--epochs", "2"], env)  # 10 steps, one checkpoint at the end
    t = Terminal(tmux, "one")
    # 80×24, held there (a detached session otherwise drifts to tmux's default size): the narrow layout, one view
    # at a time, switched with 1-4
    tmux("set-option", "-t", "one", "window-size", "manual")
    tmux("resize-window", "-t", "one", "-x", "80", "-y", "24")
    assert tmux("display-message", "-p", "-t", "one", "#{window_width}x#{window_height}").strip() == "80x24"

    # demo, then watch
    t.until(lambda s: re.search(r"step \d+/10", s), 300, "no step of the demo")
    demo = newest("demo")
    assert demo is not None and demo.active
    t.until(lambda s: "finished" in s and "10/10" in s, 300, "the demo did not finish")
    assert runs.load(demo.id).status == "finished"

    # pick its checkpoint (3: the checkpoints, the newest under the cursor) and chat, with a `?` in the question
    t.keys("3")
    t.shows("checkpoint-10")
    t.keys("Enter")
    t.shows("chat will use checkpoint-10")
    t.type("你是谁?")
    t.keys("Enter")
    assert wait_for(lambda: len(answers("checkpoint-10")) == 1, 240), t.screen()
    assert answers("checkpoint-10")[0]["finish_reason"] in ("stop", "length"), answers("checkpoint-10")
    assert "swiftdeck keys" not in t.last  # the `?` typed, it did not open the help

    # A/B: the base and the checkpoint, side by side; leaving it says where the chat goes
    t.keys("C-b")
    t.shows("A/B base")
    t.type("你是谁?")
    t.keys("Enter")
    assert wait_for(lambda: len(answers("checkpoint-10")) == 2 and len(answers("base-*")) == 1, 240), t.screen()
    assert answers("base-*")[0]["side"] == "A" and answers("checkpoint-10")[1]["side"] == "B"
    t.keys("C-b")
    t.until(lambda s: "adapter checkpoint-10" in s and "now: checkpoint-10" in s, 60, "A/B is not off")

    # a new run from "clone this run": a bad learning rate is refused, fixed, and launched with --max_length 8
    t.keys("Escape")  # leave the chat input: the dashboard's keys act
    t.keys("C")
    t.shows("New run —")
    t.until(lambda s: "3e-3" in s, 30, "the form is not filled from the run")
    t.keys(*["Tab"] * 6)  # model, dataset, output dir, LoRA rank, LoRA alpha, target modules -> learning rate
    t.type("3e-3x")
    t.keys("C-l")
    t.shows("must be a number")
    t.keys("C-u")
    t.type("3e-3")
    t.keys(*["Tab"] * 4)  # epochs, batch size, grad accumulation -> max length
    t.type("8")
    t.keys("C-l")
    assert wait_for(lambda: len([r for r in runs.all_runs() if r.kind == "sft"]) >= 2, 120), t.screen()
    clone = max((r for r in runs.all_runs() if r.kind == "sft"), key=lambda r: r.started_at or 0)
    assert clone.id != demo.id and "--max_length" in clone.argv
    assert clone.argv[clone.argv.index("--max_length") + 1] == "8"
    assert wait_for(lambda: not runs.load(clone.id).active, 300), "the clone with --max_length 8 did not end"
    assert runs.load(clone.id).status == "failed"
    t.shows("failed", 60)

    # relaunch it with the remedy applied (a larger --max_length), the flags edited: a longer run
    t.keys("r")
    t.shows("Relaunch", 30)
    t.shows("--max_length 8 → 2048", 60)
    t.keys("Tab")  # the flags field (its text selected: typing replaces it)
    t.type("--max_length 2048 --max_steps 400")
    t.shows("--max_steps 400", 60)
    t.keys("C-l")
    assert wait_for(lambda: newest("relaunch of") is not None, 120), t.screen()
    again = newest("relaunch of")
    assert again.argv[again.argv.index("--max_length") + 1] == "2048"
    t.until(lambda s: re.search(r"step \d+/400", s), 300, "the relaunched run shows no step")

    # the whole log in $PAGER (less), and back
    t.keys("o")
    t.until(lambda s: "[INFO:swift]" in s and "Loss + Log" not in s and not re.search(r"step \d+/400", s), 30,
            "no pager")  # the console log, and no dashboard around it
    t.keys("q")
    t.until(lambda s: re.search(r"step \d+/400", s), 30, "the dashboard did not come back")

    # stop (asks first)
    t.keys("S")
    t.shows("Stop run", 30)
    t.keys("y")
    assert wait_for(lambda: not runs.load(again.id).active, 240), t.screen()
    assert runs.load(again.id).status == "stopped"
    t.shows("stopped", 60)

    # quit, then attach
    t.keys("q")
    assert wait_for(lambda: "one" not in tmux("list-sessions", check=False), timeout=30), t.screen()
    tmux.start("two", [SWIFTDECK, "attach", again.id], env)
    two = Terminal(tmux, "two")
    two.until(lambda s: again.id in s and "stopped" in s, 60, "attach does not show the stopped run")
    two.keys("q")
    assert wait_for(lambda: "two" not in tmux("list-sessions", check=False), timeout=30)
