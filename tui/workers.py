"""Work that must not run twice at once (two reads of one RunWatch or GpuFeed race; a second stop of the same
processes): a tick or a key asks whether the group's worker is still at work and skips (the worker is not
exclusive, because a thread worker cannot be interrupted: a cancelled read would go on beside the new one)."""
from __future__ import annotations

from textual.dom import DOMNode


def at_work(node: DOMNode, group: str) -> bool:
    """A worker that `node` started in `group` is still running (a cancelled one is not: its result is dropped)."""
    return any(w.group == group and w.node is node and not (w.is_finished or w.is_cancelled) for w in node.workers)
