"""Being told when a run ends, wherever the user is in the dashboard: a toast, the terminal bell, and a desktop
notification through the terminal (OSC 9 / OSC 777, engine.ops.notify). Each of the three can be turned off from
the command palette; the choice is remembered (tui/settings.py: notify_toast, notify_bell, notify_desktop).

EndWatch.check() (on a worker thread) says which runs of the registry ended since its last look; the app hands
each to `tell` on the UI thread. The escape sequences go straight to the terminal driver, never through Textual's
screen (a headless test app has no terminal: nothing is written).
"""
from __future__ import annotations

import os

from engine import runs
from engine.command import TRAINING_KINDS
from engine.ops import notify
from tui import settings

CHANNELS = (("notify_toast", "toast"), ("notify_bell", "terminal bell"),
            ("notify_desktop", "desktop notification (OSC 9 / OSC 777)"))


def enabled(key: str) -> bool:
    return settings.flag(key)


class EndWatch:
    """The active training runs of the registry at the last look; `check` returns the runs that ended since (the
    first look only learns what is active: a run that ended before the dashboard started is not news). Jobs (a
    deploy, a merge, the chat worker) are not runs: the dashboard reports its own jobs where it starts them."""

    def __init__(self) -> None:
        self.active: set[str] | None = None
        self._seen: dict[str, tuple[tuple[int, int], runs.RunRecord]] = {}  # run id → (record file stamp, record)
        self.reads = 0  # records read (parsed) so far

    def check(self) -> list[tuple[runs.RunRecord, notify.Notice]]:
        recs = [r for r in self._records() if r.kind in TRAINING_KINDS]
        ended = [] if self.active is None else [r for r in recs if r.id in self.active and not r.active]
        self.active = {r.id for r in recs if r.active}
        return [(r, notify.notice(r)) for r in ended]

    def _records(self) -> list[runs.RunRecord]:
        """The registry's records, each second: an active one is read again (its processes may have ended without
        a write), an ended one only when its file changed (stat first), so a registry of many finished runs costs
        a stat each."""
        seen: dict[str, tuple[tuple[int, int], runs.RunRecord]] = {}
        for path in runs.runs_dir().glob("*/record.json"):
            run_id = path.parent.name
            try:
                st = path.stat()
            except OSError:
                continue  # deleted while we looked
            stamp = (st.st_mtime_ns, st.st_size)
            old = self._seen.get(run_id)
            if old is not None and old[0] == stamp and not old[1].active:
                seen[run_id] = old
                continue
            if not runs.valid_id(run_id):
                continue
            try:
                rec = runs.load(run_id)
            except (runs.BadRecord, runs.RunFolderGone):
                continue  # the runs list reports unreadable records
            self.reads += 1
            seen[run_id] = (stamp, rec)
        self._seen = seen
        return [rec for _, rec in seen.values()]


def tell(app, n: notify.Notice) -> None:
    """Say it: a toast (it stays until dismissed for a failure), and the bell and desktop notification written to
    the real terminal."""
    if enabled("notify_toast"):
        app.notify(n.body or n.title, title=n.title, severity=n.severity,
                   timeout=8 if n.severity == "information" else 30)
    seq = notify.sequences(n, desktop=enabled("notify_desktop"), bell=enabled("notify_bell"),
                           tmux="TMUX" in os.environ)
    driver = getattr(app, "_driver", None)
    if seq and driver is not None and not getattr(app, "is_headless", False):
        driver.write(seq)
        driver.flush()


def toggle(app, key: str) -> None:
    on = not enabled(key)
    settings.save(**{key: on})
    app.notify(f"end-of-run {dict(CHANNELS)[key]}: {'on' if on else 'off'}")


def system_commands(app):
    """Palette entries that turn each channel on or off (their title says what they do now)."""
    from textual.app import SystemCommand

    for key, what in CHANNELS:
        state = "on" if enabled(key) else "off"
        yield SystemCommand(f"Turn {'off' if state == 'on' else 'on'} the end-of-run {what}",
                            f"When a run finishes, fails or stops; now {state} (remembered)",
                            lambda k=key: toggle(app, k))
