"""Two keys of the dashboard that reach outside it: `y` copies (OSC 52, through Textual's copy_to_clipboard: works
over SSH and in tmux with set-clipboard on) the swift command of the run shown, or the path of the checkpoint under
the cursor when the checkpoints have the focus; `o` opens the run's whole console log in $PAGER (default `less`),
the dashboard suspended meanwhile (Textual's App.suspend)."""
from __future__ import annotations

import os
import shlex
import shutil
import subprocess


def copy(app) -> None:
    from engine.command import Command
    from tui.widgets.checkpoints import CheckpointsPane

    pane = app.main.query_one(CheckpointsPane)
    focused = app.focused
    if focused is not None and pane in focused.ancestors_with_self:
        ckpt = pane.current()
        if ckpt is None:
            app.notify("no checkpoint under the cursor: nothing to copy", severity="warning")
            return
        text, what = str(ckpt.path), f"the path of {ckpt.name}"
    else:
        src = app.watch.source
        rec = src.record if src else None
        if rec is None:
            app.notify("this run was not started by swiftdeck, so its command line is unknown: nothing to copy",
                       severity="warning")
            return
        text, what = Command.of_record(rec).display(), f"the command of run {rec.id}"
    app.copy_to_clipboard(text)
    app.notify(f"copied {what}: {text}", timeout=6)


def pager_argv() -> list[str]:
    """$PAGER as a command line (never through a shell); `less` when unset."""
    try:
        argv = shlex.split(os.environ.get("PAGER", "") or "less")
    except ValueError:
        argv = []
    return argv or ["less"]


def open_in_pager(app) -> None:
    from textual.app import SuspendNotSupported

    src = app.watch.source
    path = src.console_log if src else None
    if path is None or not os.path.isfile(path):
        app.notify("this run has no console log yet", severity="warning")
        return
    argv = pager_argv()
    if shutil.which(argv[0]) is None:
        app.notify(f"pager {argv[0]!r} not found (set $PAGER): the log is {path}", severity="warning", timeout=10)
        return
    try:
        with app.suspend():
            subprocess.run([*argv, str(path)], check=False)
    except SuspendNotSupported:
        app.notify(f"this terminal cannot hand the screen to a pager: the log is {path}", severity="warning",
                   timeout=10)
    except OSError as exc:
        app.notify(f"{argv[0]}: {exc}", severity="error", timeout=10)
