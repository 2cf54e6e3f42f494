"""What a relaunch needs from a failed run: the `--flag value` pairs of a remedy, and the newest resumable
checkpoint (engine.ops.launch.plan_relaunch puts them together)."""
from __future__ import annotations

import re
from pathlib import Path

from engine import checkpoints

# A remedy is applicable when it names a flag and a value:
#   "--per_device_train_batch_size 32 --gradient_accumulation_steps 2 (was ...)"  leading pairs,
#   "or --truncation_strategy right (...)", "add --model_type qwen2 (or ...)"    after "or" / "add",
#   "a larger --max_length, e.g. --max_length 2048 (...)"                          the example's pairs,
#   "a larger --max_length, e.g. 2048"                                             the flag and the example,
#   "... restart the optimizer: --resume_only_model true"                          pairs that end the remedy.
# Advice ("put --output_dir on a larger disk", "give --lora_rank a valid value") names no value: [].
_FLAG = re.compile(r"(--[A-Za-z_][\w-]*)\s+([^\s(,;]+)")
_LEAD = re.compile(r"(?:or|add)\s+(?=--)")
_EXAMPLE = re.compile(r"\be\.g\.\s+(?=--)")
_FLAG_EXAMPLE = re.compile(r"(--[A-Za-z_][\w-]*),?\s+e\.g\.\s+([^\s(,;-][^\s(,;]*)")
_TAIL = re.compile(r":\s+(?=--)")


def _pairs_at(text: str, pos: int) -> tuple[list[tuple[str, str]], int]:
    """The `--flag value` pairs that start at `pos`, and where they end."""
    pairs = []
    while (m := _FLAG.match(text, pos)) is not None and not m.group(2).startswith("--"):
        pairs.append((m.group(1), m.group(2)))
        pos = m.end()
        while pos < len(text) and text[pos] == " ":
            pos += 1
    return pairs, pos


def remedy_flags(remedy: str) -> list[tuple[str, str]]:
    """The `--flag value` pairs a remedy names (see above); [] when it is advice only (e.g. free the card)."""
    text = remedy.strip()
    lead = _LEAD.match(text)
    pairs, _ = _pairs_at(text, lead.end() if lead else 0)
    if pairs:
        return pairs
    for example in _EXAMPLE.finditer(text):
        pairs, _ = _pairs_at(text, example.end())
        if pairs:
            return pairs
    if (m := _FLAG_EXAMPLE.search(text)) is not None:
        return [(m.group(1), m.group(2))]
    for tail in _TAIL.finditer(text):
        pairs, end = _pairs_at(text, tail.end())
        if pairs and end >= len(text):
            return pairs
    return []


def newest_resumable(run_dir: str | Path | None) -> Path | None:
    if not run_dir or not Path(run_dir).is_dir():
        return None
    folder = checkpoints.scan_run(Path(run_dir))
    ready = [c for c in folder.checkpoints if c.resumable and c.complete]
    return Path(max(ready, key=lambda c: c.step).path) if ready else None
