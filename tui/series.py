"""Chart data helpers (no Textual): TensorBoard's debiased EMA, series read from a run's columns, and min/max
per pixel column downsampling."""
from __future__ import annotations

import bisect
import itertools
import math
from array import array
from collections.abc import Sequence
from dataclasses import dataclass, field

SMOOTHING_STEPS = (0.0, 0.3, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.97, 0.99)


def ema_debiased(values: list[float], weight: float) -> list[float]:
    """TensorBoard's scalar smoothing: an EMA started at 0 and divided by (1 - weight**n), so the first points
    are not pulled towards 0. Non-finite values pass through unsmoothed and do not enter the average."""
    out: list[float] = []
    last, n = 0.0, 0
    for v in values:
        if not math.isfinite(v):
            out.append(v)
            continue
        last = last * weight + (1 - weight) * v
        n += 1
        debias = 1 - weight ** n
        out.append(last / debias if debias else v)
    return out


@dataclass
class Series:
    """One metric over steps, appended to as metrics arrive, with its EMA kept incrementally."""

    xs: list[float] = field(default_factory=list)
    ys: list[float] = field(default_factory=list)
    weight: float = 0.6
    _ema: list[float] = field(default_factory=list)
    _last: float = 0.0
    _n: int = 0

    def append(self, x: float, y: float) -> None:
        self.xs.append(x)
        self.ys.append(y)
        self._extend_ema()

    def set_weight(self, weight: float) -> None:
        self.weight = weight
        self._ema, self._last, self._n = [], 0.0, 0
        self._extend_ema()

    def _extend_ema(self) -> None:
        w = self.weight
        for v in self.ys[len(self._ema):]:
            if not math.isfinite(v):
                self._ema.append(v)
                continue
            self._last = self._last * w + (1 - w) * v
            self._n += 1
            debias = 1 - w ** self._n
            self._ema.append(self._last / debias if debias else v)

    @property
    def ema(self) -> list[float]:
        return self._ema

    def __len__(self) -> int:
        return len(self.xs)


class Extremes:
    """The lowest and highest finite value (and where) of every whole BLOCK of a growing array, kept as it grows: a
    chart frame takes a pixel column's min/max from the blocks inside it and scans only the ends, so its cost does
    not grow with the history."""

    BLOCK = 512

    def __init__(self):
        self.lo, self.hi = array("d"), array("d")
        self.lo_at, self.hi_at = array("q"), array("q")  # -1: no finite value in the block

    def update(self, ys, n: int) -> "Extremes":
        B = self.BLOCK
        for b in range(len(self.lo), n // B):
            chunk = ys[b * B:(b + 1) * B]
            if math.isfinite(sum(chunk)):
                lo, hi = min(chunk), max(chunk)
                self.lo.append(lo)
                self.hi.append(hi)
                self.lo_at.append(b * B + chunk.index(lo))
                self.hi_at.append(b * B + chunk.index(hi))
                continue
            finite = [i for i in range(b * B, (b + 1) * B) if math.isfinite(ys[i])]
            lo_i = min(finite, key=ys.__getitem__, default=-1)
            hi_i = max(finite, key=ys.__getitem__, default=-1)
            self.lo.append(ys[lo_i] if finite else math.inf)
            self.hi.append(ys[hi_i] if finite else -math.inf)
            self.lo_at.append(lo_i)
            self.hi_at.append(hi_i)
        return self


class Floats(Sequence):
    """The first `n` values of a growing array (a column of engine.metric_columns.Columns), without a copy; compares
    equal to a list of the same values. `extremes`, when given, summarizes the array by blocks (downsample)."""

    def __init__(self, arr, n: int, extremes: Extremes | None = None):
        self.arr, self.n, self.extremes = arr, n, extremes

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index):
        if isinstance(index, slice):
            return self.arr[:self.n][index].tolist()
        if index < 0:
            index += self.n
        if not 0 <= index < self.n:
            raise IndexError("index out of range")
        return self.arr[index]

    def __iter__(self):
        return iter(self.arr[:self.n])

    def __eq__(self, other) -> bool:
        if isinstance(other, (list, tuple, Floats)):
            return len(other) == self.n and self.arr[:self.n].tolist() == list(other)
        return NotImplemented

    def __repr__(self) -> str:
        return f"Floats({self.arr[:min(self.n, 8)].tolist()}{'…' if self.n > 8 else ''}, n={self.n})"


class ColumnSeries:
    """One metric read from a run's columns (engine.metric_columns.Columns) up to the rows handed out so far
    (`update`): no copy of the history; the debiased EMA is kept incrementally in an array, made when asked for. A
    key that some rows lack is read as the rows that logged it (a copy, remade per update)."""

    def __init__(self, cols, key: str, weight: float = 0.6):
        self.cols, self.key, self.weight = cols, key, weight
        self.n = 0
        self._xs = self._ys = None
        self._ema = array("d")
        self._last, self._count = 0.0, 0
        self._ys_extremes, self._ema_extremes = Extremes(), Extremes()

    def update(self, n: int) -> None:
        cols, key = self.cols, self.key
        col = cols.cols.get(key)
        if col is None:
            self._xs, self._ys, self.n = array("q"), array("d"), 0
        elif key in cols.absent:
            xs, ys = cols.series(key)
            keep = bisect.bisect_right(xs, cols.steps[n - 1]) if n else 0
            self._xs, self._ys, self.n = xs, ys, keep
        else:
            self._xs, self._ys, self.n = cols.steps, col, n
        if len(self._ema) > self.n or (self._ys is not col and self._ema):  # rows went away, or read as a copy
            self.set_weight(self.weight)
        if self._ys is not col:  # a copy: no block summary kept across updates
            self._ys_extremes = Extremes()

    @property
    def xs(self) -> Floats:
        return Floats(self._xs if self._xs is not None else array("q"), self.n)

    @property
    def ys(self) -> Floats:
        ys = self._ys if self._ys is not None else array("d")
        return Floats(ys, self.n, self._ys_extremes.update(ys, self.n))

    def set_weight(self, weight: float) -> None:
        self.weight = weight
        self._ema, self._last, self._count = array("d"), 0.0, 0
        self._ema_extremes = Extremes()

    @property
    def ema(self) -> Floats:
        w, ys, ema, n = self.weight, self._ys, self._ema, self.n
        last, count = self._last, self._count
        isfinite = math.isfinite
        # after `settled` finite values the debias 1 - w**count is exactly 1.0 in floating point: from there on a
        # stretch of finite values is the plain EMA, one itertools.accumulate instead of a Python step per value
        settled = 1 if w <= 0 else math.ceil(math.log(1e-17) / math.log(w))
        i = len(ema)
        while i < n:
            if count >= settled and n - i > 1024 and isfinite(sum(ys[i:n])):
                a, b = 1 - w, w
                run = itertools.accumulate(ys[i:n], lambda acc, v: acc * b + a * v, initial=last)
                next(run)
                ema.extend(run)
                last, count, i = ema[-1], count + n - i, n
                break
            v = ys[i]
            i += 1
            if not isfinite(v):
                ema.append(v)
                continue
            last = last * w + (1 - w) * v
            count += 1
            debias = 1 - w ** count
            ema.append(last / debias if debias else v)
        self._last, self._count = last, count
        return Floats(ema, n, self._ema_extremes.update(ema, n))

    def __len__(self) -> int:
        return self.n


def _raw(values) -> tuple[Sequence, int]:
    """(indexable values, how many) of a list or a Floats view, without a copy."""
    if isinstance(values, Floats):
        return values.arr, values.n
    return values, len(values)


def _scan(ys, a: int, e: int, out: list) -> None:
    """(value, index) of the lowest and the highest finite value of ys[a:e] onto `out`."""
    if e <= a:
        return
    chunk = ys[a:e]
    if math.isfinite(sum(chunk)):
        lo, hi = min(chunk), max(chunk)
        out.append((lo, a + chunk.index(lo)))
        out.append((hi, a + chunk.index(hi)))
        return
    for i in range(a, e):
        if math.isfinite(ys[i]):
            out.append((ys[i], i))


def _extremes(ys, a: int, e: int, ext: Extremes | None) -> tuple[int, int] | None:
    """Indexes of the lowest and the highest finite value in ys[a:e] (the first of equals), None when none is."""
    found: list[tuple[float, int]] = []
    B = Extremes.BLOCK
    fb, lb = -(-a // B), min(e // B, len(ext.lo) if ext is not None else 0)
    if ext is None or lb - fb < 2:
        _scan(ys, a, e, found)
    else:
        _scan(ys, a, fb * B, found)
        lo = ext.lo[fb:lb]
        hi = ext.hi[fb:lb]
        lo_b, hi_b = fb + lo.index(min(lo)), fb + hi.index(max(hi))
        if ext.lo_at[lo_b] >= 0:
            found.append((ext.lo[lo_b], ext.lo_at[lo_b]))
            found.append((ext.hi[hi_b], ext.hi_at[hi_b]))
        _scan(ys, lb * B, e, found)
    if not found:
        return None
    return min(found)[1], min(found, key=lambda f: (-f[0], f[1]))[1]


def downsample(xs, ys, max_points: int) -> tuple[list[float], list[float]]:
    """At most ~max_points points: the x range is cut into max_points // 2 equal columns (xs rise), and each column
    keeps its lowest and its highest point (in x order), so spikes survive; the latest point is always kept.
    Non-finite y values are dropped (a chart cannot place them). `xs`/`ys` may be lists or Floats views of a run's
    columns; a view with `extremes` (ColumnSeries) costs per column a bisect, the block summaries inside it and a
    scan of its two ends, so a frame does not grow with the history."""
    ext = ys.extremes if isinstance(ys, Floats) else None
    xs, n = _raw(xs)
    ys, ny = _raw(ys)
    n = min(n, ny)
    if n <= max_points:
        pts = [(xs[i], ys[i]) for i in range(n) if math.isfinite(ys[i])]
        return [p[0] for p in pts], [p[1] for p in pts]
    columns = max(1, max_points // 2)
    x0, x1 = xs[0], xs[n - 1]
    out_x: list[float] = []
    out_y: list[float] = []
    a = 0
    for c in range(1, columns + 1):
        e = n if c == columns else bisect.bisect_left(xs, x0 + (x1 - x0) * c / columns, a, n)
        if e <= a:
            continue
        found = _extremes(ys, a, e, ext)
        if found is None:
            a = e
            continue
        for i in sorted(set(found)):
            out_x.append(xs[i])
            out_y.append(ys[i])
        a = e
    last = n - 1
    if math.isfinite(ys[last]) and (not out_x or out_x[-1] != xs[last]):  # the latest point is always shown
        out_x.append(xs[last])
        out_y.append(ys[last])
    return out_x, out_y
