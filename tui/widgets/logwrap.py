"""Line wrap for the log view (`W` in the log): which piece of which log row each screen row shows. Only the rows on
screen are wrapped, so a wrapped log of millions of lines costs what fits in the window. Scrolling stays by whole
log rows (the top row is the scroll position); at the end of the log (follow mode) the last row ends at the
bottom."""
from __future__ import annotations

from typing import Callable

from rich.cells import chop_cells


def pieces(text: str, width: int) -> list[str]:
    """`text` cut into pieces of at most `width` cells (a wide character is never split)."""
    return chop_cells(text, max(1, width)) or [""]


def window(line: Callable[[int], str], total: int, top: int, height: int, width: int,
           at_end: bool) -> list[tuple[int, str]]:
    """(log row, piece) for each of the `height` screen rows: rows from `top` down, or (`at_end`) the last rows
    with the final piece on the bottom row."""
    out: list[tuple[int, str]] = []
    if at_end:
        row = total - 1
        while row >= 0 and len(out) < height:
            out[:0] = [(row, p) for p in pieces(line(row), width)]
            row -= 1
        return out[-height:] if height else []
    row = max(0, top)
    while row < total and len(out) < height:
        out += [(row, p) for p in pieces(line(row), width)]
        row += 1
    return out[:height]
