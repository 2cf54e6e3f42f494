""""Relaunch with these changes": a failed run's argv with a remedy applied, resumed from its newest resumable
checkpoint when it has one."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from engine import checkpoints
from engine.runs import RunRecord
from engine.swift_args import flag_value, set_flag

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


@dataclass
class Relaunch:
    argv: list[str]  # after `swift sft`
    changes: list[str] = field(default_factory=list)  # human-readable, shown before launch


def plan(rec: RunRecord, remedy: str | None = None) -> Relaunch:
    if rec.kind != "sft" or len(rec.argv) < 2:
        raise ValueError(f"run {rec.id} is not a swift sft run")
    argv, changes = list(rec.argv[2:]), []
    for flag, value in remedy_flags(remedy or ""):
        old = flag_value(argv, flag)
        argv = set_flag(argv, flag, [value])
        changes.append(f"{flag} {old} → {value}" if old is not None else f"{flag} {value} (new)")
    ckpt = newest_resumable(rec.run_dir)
    previous = flag_value(argv, "--resume_from_checkpoint")
    if ckpt:
        argv = set_flag(argv, "--resume_from_checkpoint", [str(ckpt)])
        changes.append(f"--resume_from_checkpoint {ckpt} (continues from step {ckpt.name.split('-')[-1]})")
    elif previous:
        changes.append(f"resumes from {previous} again: the failed run saved no newer checkpoint")
    else:
        changes.append("starts from scratch: the failed run left no resumable checkpoint")
    return Relaunch(argv, changes)
