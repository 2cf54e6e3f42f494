"""GRPO's sample completions: with --log_completions, ms-swift appends one JSON table per logged step to
`<run folder>/completions.jsonl` (swift/rlhf_trainers/grpo_trainer.py log: {"step": [...], "prompt": [...],
"completion": [...], <reward function>: [...], "advantages": [...], ...}, one list entry per sample).

The last table is written twice (the final log call, with the train summary, writes the same rows again); a
table equal to the one before it is skipped. `CompletionsTail` reads the file incrementally (a first read looks
at the last TAIL_BYTES only, so a week-long run opens at once) and keeps the newest samples. Pure Python.
"""
from __future__ import annotations

import math
import re
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

from engine.ingest import FileTail, loads_json

FILE = "completions.jsonl"
TAIL_BYTES = 1024 * 1024
KEEP = 64
_SPECIAL = re.compile(r"<\|[^|<>]{1,40}\|>|<｜[^｜]{1,40}｜>")
_NOT_REWARDS = {"step", "prompt", "completion", "advantages", "solution", "image", "entropy", "num_turns"}


@dataclass(frozen=True)
class Completion:
    step: int
    prompt: str  # the last user turn (the rendered prompt without its chat-template tokens)
    completion: str
    rewards: dict[str, float] = field(default_factory=dict)  # per reward function (class name)
    advantage: float | None = None


def last_turn(prompt: str) -> str:
    """The last user turn of a prompt rendered with a chat template ('<|im_start|>user\\n2+3=?<|im_end|>...')."""
    pieces = [p.strip() for p in _SPECIAL.split(prompt) if p.strip()]
    pieces = [p for p in pieces if p not in ("assistant", "Assistant:")]
    if not pieces:
        return prompt.strip()
    last = pieces[-1]
    for role in ("user\n", "human\n"):
        if last.startswith(role):
            return last[len(role):].strip()
    return last


def _float(v) -> float | None:
    if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
        return float(v)
    return None


def parse_table(table: dict) -> list[Completion]:
    """One logged table -> one Completion per sample."""
    completions = table.get("completion")
    if not isinstance(completions, list):
        return []
    n = len(completions)

    def column(key):
        v = table.get(key)
        return v if isinstance(v, list) and len(v) == n else [None] * n

    steps, prompts, advantages = column("step"), column("prompt"), column("advantages")
    reward_keys = [k for k, v in table.items() if k not in _NOT_REWARDS and isinstance(v, list) and len(v) == n
                   and all(_float(x) is not None for x in v)]
    out = []
    for i in range(n):
        try:
            step = int(steps[i]) if steps[i] is not None else -1
        except (TypeError, ValueError):
            step = -1
        out.append(Completion(step, last_turn(prompts[i]) if isinstance(prompts[i], str) else "",
                              completions[i] if isinstance(completions[i], str) else str(completions[i]),
                              {k: float(table[k][i]) for k in reward_keys}, _float(advantages[i])))
    return out


class CompletionsTail:
    """The newest samples of a run folder's completions.jsonl; `poll()` returns the ones that arrived."""

    def __init__(self, run_dir: Path | str, keep: int = KEEP):
        self.path = Path(run_dir) / FILE
        self.tail = FileTail(self.path)
        self.samples: deque[Completion] = deque(maxlen=keep)
        self._pending = b""
        self._first = True
        self._last_line = b""

    def poll(self) -> list[Completion]:
        if self._first:
            try:
                size = self.path.stat().st_size
            except OSError:
                return []
            self._first = False
            if size > TAIL_BYTES:
                self.tail.offset = size - TAIL_BYTES
                data = self.tail.read_new()
                data = data[data.find(b"\n") + 1:]
            else:
                data = self.tail.read_new()
        else:
            generation = self.tail.generation
            data = self.tail.read_new()
            if self.tail.generation != generation:  # replaced or truncated: start over
                self._pending, self._last_line, self.samples = b"", b"", deque(maxlen=self.samples.maxlen)
        *lines, self._pending = (self._pending + data).split(b"\n")
        new = []
        for line in lines:
            if not line.strip() or line == self._last_line:
                continue
            self._last_line = line
            try:
                table = loads_json(line)
            except (ValueError, RecursionError):
                continue
            if isinstance(table, dict):
                new += parse_table(table)
        self.samples.extend(new)
        return new
