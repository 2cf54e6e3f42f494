"""Colours of the text our widgets draw in Python (Rich `Text`, strips, plotext lines).

No colour name or hex value is written in Python: a widget that colours text lists the INK component classes
(`COMPONENT_CLASSES = INK`), themes/app.tcss gives each a theme variable (`.ink--accent { color: $accent; }`), and
`ink(widget, role)` looks the colour up when the text is drawn. Text drawn once stays as drawn, so such a widget
also calls `redraw_on_theme_change(self, draw)` when mounted: after a theme switch (the command palette) it draws
again with the new theme's colours, also on a run that will never change again.
"""
from __future__ import annotations

from typing import Callable

from rich.style import Style
from rich.text import Text
from textual.widget import Widget

ROLES = ("text", "muted", "primary", "primary-muted", "secondary", "accent", "success", "warning", "error")
INK = frozenset(f"ink--{role}" for role in ROLES)
BOLD = Style(bold=True)


def ink(widget: Widget, role: str, *, bold: bool = False) -> Style:
    """The colour of `role` (one of ROLES) in the active theme, as drawn over the widget's background (alpha
    colours such as $foreground-muted blended in). Only the colour: the text keeps the widget's background, and a
    tree's cursor line its highlight. Plain until the widget's styles are applied."""
    color = widget.get_component_rich_style(f"ink--{role}", default=Style()).color
    return Style(color=color, bold=True if bold else None)


def redraw_on_theme_change(widget: Widget, draw: Callable[[], object]) -> None:
    """Call `draw()` after every theme switch, once the new theme's styles apply (the component classes too)."""
    widget.app.theme_changed_signal.subscribe(widget, lambda _theme: draw())


def theme_color(app, name: str, fallback: str = "#ffffff") -> str:
    """A theme variable as plain hex (alpha blended over $surface). Left for the dialogs in tui/screens, which draw
    once per change of their own data; a widget uses `ink` (a theme switch repaints it)."""
    from textual.color import Color

    variables = app.theme_variables
    try:
        color = Color.parse(variables.get(name, fallback))
        if color.a < 1:
            color = Color.parse(variables.get("surface", "#000000")) + color
        return color.hex
    except Exception:  # an odd value in a user theme: draw in the fallback colour
        return fallback


def fit(parts: list[tuple[int, Text]], width: int) -> Text:
    """The parts, in their order, that fit in `width` cells: while they don't, the part with the highest rank
    (least needed) is left out; rank 0 parts always stay. A hint is shortened by whole parts, never cut
    mid-word."""
    kept = list(parts)
    while sum(t.cell_len for _, t in kept) > width:
        droppable = [n for n, (rank, _) in enumerate(kept) if rank > 0]
        if not droppable:
            break
        del kept[max(reversed(droppable), key=lambda n: kept[n][0])]  # of equal ranks, the later goes first
    return Text("").join(t for _, t in kept)
