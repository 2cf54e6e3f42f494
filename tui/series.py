"""Chart data helpers (no Textual): TensorBoard's debiased EMA and min/max downsampling."""
from __future__ import annotations

import math
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


def downsample(xs: list[float], ys: list[float], max_points: int) -> tuple[list[float], list[float]]:
    """At most ~max_points points: per bucket keep the min and the max (in x order), so spikes survive.
    Non-finite y values are dropped (a chart cannot place them). A frame costs a few C-speed passes over the
    points (min, max, index per bucket slice), not a Python object per point."""
    if not math.isfinite(sum(ys)):  # some value is nan/inf (or the sum overflows): drop the non-finite ones
        keep = [i for i, y in enumerate(ys) if math.isfinite(y)]
        xs, ys = [xs[i] for i in keep], [ys[i] for i in keep]
    n = len(ys)
    if n <= max_points:
        return list(xs), list(ys)
    buckets = max(1, max_points // 2)
    size = n / buckets
    out_x: list[float] = []
    out_y: list[float] = []
    for b in range(buckets):
        a, e = int(b * size), int((b + 1) * size)
        if e <= a:
            a, e = n - 1, n
        chunk = ys[a:e]
        lo, hi = a + chunk.index(min(chunk)), a + chunk.index(max(chunk))
        for i in sorted({lo, hi}, key=lambda i: (xs[i], i)):
            out_x.append(xs[i])
            out_y.append(ys[i])
    if out_x[-1] != xs[-1]:  # the latest point is always shown
        out_x.append(xs[-1])
        out_y.append(ys[-1])
    return out_x, out_y
