"""What a relaunch needs from a failed run: the `--flag value` pairs of a remedy, and the newest resumable
checkpoint (engine.ops.launch.plan_relaunch puts them together)."""
from __future__ import annotations

import re
from pathlib import Path

from engine import checkpoints

# A remedy is applicable when it starts with flags: "--per_device_train_batch_size 32 --gradient_... 2 (was ...)".
_FLAG = re.compile(r"(--[A-Za-z_][\w-]*)\s+([^\s(]+)")


def remedy_flags(remedy: str) -> list[tuple[str, str]]:
    """The `--flag value` pairs a remedy starts with; [] when it is advice only (e.g. free the card)."""
    pairs, pos = [], 0
    text = remedy.strip()
    while (m := _FLAG.match(text, pos)) is not None:
        pairs.append((m.group(1), m.group(2)))
        pos = m.end()
        while pos < len(text) and text[pos] == " ":
            pos += 1
    return pairs


def newest_resumable(run_dir: str | Path | None) -> Path | None:
    if not run_dir or not Path(run_dir).is_dir():
        return None
    folder = checkpoints.scan_run(Path(run_dir))
    ready = [c for c in folder.checkpoints if c.resumable and c.complete]
    return Path(max(ready, key=lambda c: c.step).path) if ready else None
