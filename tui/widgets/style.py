"""Theme colours for Rich text drawn by our widgets (theme variables may carry alpha; Rich needs plain hex)."""
from __future__ import annotations

from textual.color import Color


def theme_color(app, name: str, fallback: str = "#ffffff") -> str:
    variables = app.theme_variables
    try:
        color = Color.parse(variables.get(name, fallback))
        if color.a < 1:
            color = Color.parse(variables.get("surface", "#000000")) + color
        return color.hex
    except Exception:  # an odd value in a user theme: draw in the fallback colour
        return fallback
