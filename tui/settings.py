"""Dashboard preferences remembered between sessions (`<data dir>/tui.json`, written atomically)."""
from __future__ import annotations

import json
import os
from pathlib import Path

from engine import paths


def _path() -> Path:
    return paths.data_dir() / "tui.json"


def load() -> dict:
    try:
        data = json.loads(_path().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


# Switches that are on until the user turns them off (end-of-run notices: tui/endnotice.py).
DEFAULT_ON = ("notify_toast", "notify_bell", "notify_desktop")


def flag(key: str) -> bool:
    """A remembered on/off switch (DEFAULT_ON: on when never set)."""
    value = load().get(key)
    return key in DEFAULT_ON if value is None else bool(value)


def save(**changes) -> None:
    data = {**load(), **changes}
    path = _path()
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    try:
        tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
        os.replace(tmp, path)
    except OSError:  # preferences are a convenience: never fail the UI for them
        tmp.unlink(missing_ok=True)
