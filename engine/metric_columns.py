"""Logged steps stored by column: one `array('d')` per metric and one `array('q')` of steps, per kind of step
(train and eval are kept apart). A million logged steps cost 8 bytes per value, not a Metrics object and a dict
per step; a chart reads a column as it is. Rows stay sorted by step, each step once: a step after the last (the
usual case) is an append; a late one is inserted; a step logged again replaces its row.
"""
from __future__ import annotations

import bisect
import itertools
import math
import operator
from array import array
from collections.abc import Sequence
from typing import Iterator

from engine.events import Metrics

NAN = math.nan


class Columns:
    """The steps of one kind (train or eval), a row per step. `cols[key][i]` is the value of `key` at row `i`;
    `absent[key]`, when a key was not logged at every row, has a 0 byte at the rows that lack it (the value there
    is nan). `appended` counts rows added at the end, `edits` every other change (an insert, a replaced row): a
    reader that keeps a copy knows whether appending the new rows is enough."""

    def __init__(self):
        self.steps = array("q")
        self.maxes = array("q")  # max_steps as logged with the step, 0 when unknown
        self.cols: dict[str, array] = {}
        self.absent: dict[str, bytearray] = {}
        self.appended = 0
        self.edits = 0

    def __len__(self) -> int:
        return len(self.steps)

    def has(self, key: str, i: int) -> bool:
        flags = self.absent.get(key)
        return flags is None or bool(flags[i])

    def values_at(self, i: int) -> dict[str, float]:
        return {k: col[i] for k, col in self.cols.items() if self.has(k, i)}

    def metrics_at(self, i: int) -> Metrics:
        return Metrics(self.steps[i], self.values_at(i), self.maxes[i] or None)

    def _new_col(self, key: str) -> array:
        n = len(self.steps)
        col = self.cols[key] = array("d", [NAN]) * n if n else array("d")
        if n:
            self.absent[key] = bytearray(n)
        return col

    def _mark(self, key: str, i: int, present: bool) -> None:
        flags = self.absent.get(key)
        if flags is None:
            if present:
                return
            flags = self.absent[key] = bytearray(b"\x01") * len(self.steps)
        flags[i] = present

    def put(self, step: int, values: dict[str, float], max_steps: int | None = None) -> bool:
        """Store one logged step; True when the step is new to this kind."""
        steps = self.steps
        if not steps or step > steps[-1]:
            i = len(steps)
            for key in values:
                if key not in self.cols:
                    self._new_col(key)
            steps.append(step)
            self.maxes.append(max_steps or 0)
            for key, col in self.cols.items():
                v = values.get(key)
                col.append(NAN if v is None else v)
                if key in self.absent:
                    self.absent[key].append(v is not None)
                elif v is None:
                    self._mark(key, i, False)
            self.appended += 1
            return True
        i = bisect.bisect_left(steps, step)
        new = not (i < len(steps) and steps[i] == step)
        for key in values:
            if key not in self.cols:
                self._new_col(key)
        if new:
            steps.insert(i, step)
            self.maxes.insert(i, max_steps or 0)
            for key, col in self.cols.items():
                col.insert(i, NAN)
                if key in self.absent:
                    self.absent[key].insert(i, 0)
        else:
            self.maxes[i] = max_steps or 0
        for key, col in self.cols.items():
            v = values.get(key)
            col[i] = NAN if v is None else v
            self._mark(key, i, v is not None)
        self.edits += 1
        return new

    def extend(self, steps: array, maxes: array, cols: dict[str, array]) -> bool:
        """Append a block of rows (steps strictly rising, all after the last row; every column as long as `steps`).
        False, with nothing stored, when the block does not fit that way (the caller puts its rows one by one)."""
        n = len(steps)
        if not n:
            return True
        if self.steps and steps[0] <= self.steps[-1]:
            return False
        if n > 1 and not all(map(operator.lt, steps, itertools.islice(steps, 1, None))):
            return False
        before = len(self.steps)
        for key in cols:
            if key not in self.cols:
                self._new_col(key)
        for key, col in self.cols.items():
            block = cols.get(key)
            if block is None:
                col.extend(array("d", [NAN]) * n)
                if key not in self.absent:
                    self.absent[key] = bytearray(b"\x01") * before
                self.absent[key].extend(bytes(n))
            else:
                col.extend(block)
                if key in self.absent:
                    self.absent[key].extend(b"\x01" * n)
        self.steps.extend(steps)
        self.maxes.extend(maxes)
        self.appended += n
        return True

    def series(self, key: str, start: int = 0) -> tuple[array, array]:
        """(steps, values) of `key` from row `start` on, only the rows that logged it."""
        col = self.cols.get(key)
        if col is None:
            return array("q"), array("d")
        flags = self.absent.get(key)
        if flags is None:
            return self.steps[start:], col[start:]
        keep = [i for i in range(start, len(col)) if flags[i]]
        return array("q", (self.steps[i] for i in keep)), array("d", (col[i] for i in keep))

    def last_with(self, key: str) -> int | None:
        """The last row that logged `key`."""
        col = self.cols.get(key)
        if col is None:
            return None
        flags = self.absent.get(key)
        for i in range(len(col) - 1, -1, -1):
            if flags is None or flags[i]:
                return i
        return None


class MetricsView(Sequence):
    """Train and eval rows merged as Metrics, by step (train before eval at the same step), made on demand: what
    `RunState.metrics` was as a list, without holding a Metrics object per step."""

    def __init__(self, train: Columns, eval_: Columns):
        self.train, self.eval = train, eval_

    def __len__(self) -> int:
        return len(self.train) + len(self.eval)

    def __iter__(self) -> Iterator[Metrics]:
        t, e = self.train, self.eval
        i = j = 0
        nt, ne = len(t), len(e)
        while i < nt or j < ne:
            if j >= ne or (i < nt and t.steps[i] <= e.steps[j]):
                yield t.metrics_at(i)
                i += 1
            else:
                yield e.metrics_at(j)
                j += 1

    def __reversed__(self) -> Iterator[Metrics]:
        t, e = self.train, self.eval
        i, j = len(t) - 1, len(e) - 1
        while i >= 0 or j >= 0:
            if i < 0 or (j >= 0 and e.steps[j] >= t.steps[i]):
                yield e.metrics_at(j)
                j -= 1
            else:
                yield t.metrics_at(i)
                i -= 1

    def __getitem__(self, index):
        if isinstance(index, slice):
            return list(self)[index]
        n = len(self)
        if index < 0:
            index += n
        if not 0 <= index < n:
            raise IndexError("metrics index out of range")
        if index == n - 1:
            return next(reversed(self))
        if index < n // 2:
            it = iter(self)
        else:
            it, index = reversed(self), n - 1 - index
        for k, m in enumerate(it):
            if k == index:
                return m
        raise IndexError(index)

    def __eq__(self, other) -> bool:
        if isinstance(other, (MetricsView, list, tuple)):
            return len(self) == len(other) and all(a == b for a, b in zip(self, other))
        return NotImplemented

    def __repr__(self) -> str:
        return f"MetricsView({len(self.train)} train, {len(self.eval)} eval)"


class NewRows(Sequence):
    """The rows a poll added: train rows `t0:t1` and eval rows `e0:e1` of the state's columns, as Metrics made on
    demand (in step order). `rebuilt`: rows were inserted or replaced since the last mark, so the range is every
    row and a reader that keeps derived data starts over. A dashboard reads the columns directly (`train`,
    `eval`, up to `t1` / `e1`) and never makes a Metrics per step."""

    def __init__(self, train: Columns, eval_: Columns, t0: int, e0: int, rebuilt: bool = False):
        self.train, self.eval = train, eval_
        self.t0, self.t1, self.e0, self.e1 = t0, len(train), e0, len(eval_)
        self.rebuilt = rebuilt
        self._edits = (train.edits, eval_.edits)

    @classmethod
    def since(cls, train: Columns, eval_: Columns, mark: tuple | None) -> "NewRows":
        """The rows added since `mark` (a previous `mark()`; None: every row)."""
        if mark is None or mark[0] is not train or mark[3] != (train.edits, eval_.edits):
            return cls(train, eval_, 0, 0, rebuilt=mark is not None)
        return cls(train, eval_, mark[1], mark[2])

    def mark(self) -> tuple:
        return self.train, self.t1, self.e1, self._edits

    def __len__(self) -> int:
        return self.t1 - self.t0 + self.e1 - self.e0

    def __iter__(self) -> Iterator[Metrics]:
        t, e = self.train, self.eval
        i, j = self.t0, self.e0
        while i < self.t1 or j < self.e1:
            if j >= self.e1 or (i < self.t1 and t.steps[i] <= e.steps[j]):
                yield t.metrics_at(i)
                i += 1
            else:
                yield e.metrics_at(j)
                j += 1

    def __getitem__(self, index):
        return list(self)[index]

    def __eq__(self, other) -> bool:
        if isinstance(other, (NewRows, list, tuple)):
            return len(self) == len(other) and all(a == b for a, b in zip(self, other))
        return NotImplemented
