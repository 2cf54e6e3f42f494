"""swiftdeck's looks: the app's TCSS (app.tcss, beside this file) and its themes.

Three of our own: a dark one (default), a light one, and a high-contrast one whose colours are all exact
xterm-256 palette entries, so it reads the same over SSH on a 256-colour terminal. Textual's built-in themes
stay available from the command palette too.
"""
from __future__ import annotations

from pathlib import Path

from textual.theme import Theme

TCSS = Path(__file__).with_name("app.tcss")
DEFAULT = "swiftdeck-dark"

THEMES = (
    Theme(
        name="swiftdeck-dark", dark=True,
        primary="#4ea1ff", secondary="#7c8cff", accent="#ffb454", foreground="#d8dee9",
        background="#0f1419", surface="#161d26", panel="#1f2933",
        success="#7fd962", warning="#ffcc66", error="#ff6b6b",
    ),
    Theme(
        name="swiftdeck-light", dark=False,
        primary="#0b5cad", secondary="#5a4fcf", accent="#b35900", foreground="#1b1f24",
        background="#f7f7f5", surface="#ffffff", panel="#e8e8e4",
        success="#1f7a1f", warning="#9a6700", error="#c62828",
    ),
    Theme(  # every colour is an xterm-256 entry (16, 233, 235, 231, 51, 226, 46, 203, 213)
        name="swiftdeck-contrast", dark=True,
        primary="#00ffff", secondary="#ff87ff", accent="#ffff00", foreground="#ffffff",
        background="#000000", surface="#121212", panel="#262626",
        success="#00ff00", warning="#ffff00", error="#ff5f5f",
        variables={"border": "#ffffff", "border-blurred": "#8a8a8a", "footer-key-foreground": "#ffff00",
                   "block-cursor-background": "#ffff00", "block-cursor-foreground": "#000000"},
    ),
)
NAMES = tuple(t.name for t in THEMES)
