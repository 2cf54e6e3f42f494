"""Where swiftdeck keeps its state: the user data dir, or $SWIFTDECK_HOME (tests use a temporary one)."""
from __future__ import annotations

import os
from pathlib import Path


def data_dir() -> Path:
    home = os.environ.get("SWIFTDECK_HOME")
    if home:
        path = Path(home)
    else:
        import platformdirs

        path = Path(platformdirs.user_data_dir("swiftdeck", appauthor=False))
    path.mkdir(parents=True, exist_ok=True)
    return path


def runs_dir() -> Path:
    """One folder per run: record.json (the registry entry), console.log, runner.log."""
    path = data_dir() / "runs"
    path.mkdir(parents=True, exist_ok=True)
    return path


def demo_dir() -> Path:
    """The cached offline demo: tiny model folder and self_cognition.json."""
    return data_dir() / "demo"
