"""Keys that users of htop, lazygit and k9s expect in every list: j/k down/up, g/G first/last, Home/End first/last.

The dashboard (tui/app.py) carries these bindings at the app level, so they reach every list on every screen (the
checkpoint tree, the run switcher, the remedies of the relaunch dialog, the chat-target picker, the disk and
leftovers tables, the help and chat scrolls) without each widget repeating them. They are priority bindings (a
modal screen sees no other app binding) that step aside (SkipAction: the key goes on as if they were not there)
when the focused widget is not a list (an input types the letter) or when the focused widget's screen or panes bind
the same key themselves (the run switcher's `j`, the disk view's `g`, the log's g/G). A list widget's own Home/End
are replaced: a Tree scrolls on them without moving its cursor."""
from __future__ import annotations

from textual.actions import SkipAction
from textual.binding import Binding
from textual.containers import ScrollableContainer
from textual.widgets import DataTable, ListView, OptionList, Tree

BINDINGS = [
    Binding("j", "list('down', 'j')", "Down (lists)", show=False, priority=True),
    Binding("k", "list('up', 'k')", "Up (lists)", show=False, priority=True),
    Binding("g", "list('first', 'g')", "First (lists)", show=False, priority=True),
    Binding("G", "list('last', 'G')", "Last (lists)", show=False, priority=True),
    Binding("home", "list('first', 'home')", "First (lists)", show=False, priority=True),
    Binding("end", "list('last', 'end')", "Last (lists)", show=False, priority=True),
]
ACTIONS = {"list"}  # on in dialogs that own their keys too: moving in a list types nothing

LISTS = (Tree, DataTable, OptionList, ListView)


def move(widget, where: str, key: str = "") -> None:
    """Move the cursor of the focused list `widget` down, up, to the first or the last row; SkipAction when it is
    not a list, or when something between it and the app binds `key` itself (the focused list's own binding
    excepted when it is one of Textual's list widgets)."""
    if widget is None:
        raise SkipAction()
    is_list = isinstance(widget, LISTS)
    for node in widget.ancestors_with_self:
        if node is widget.app or (node is widget and is_list):
            continue
        if key and key in node._bindings.key_to_bindings:
            raise SkipAction()
    if isinstance(widget, Tree):
        if where in ("down", "up"):
            getattr(widget, f"action_cursor_{where}")()
        else:
            widget.cursor_line = 0 if where == "first" else max(0, widget.last_line)
    elif isinstance(widget, DataTable):
        if where in ("down", "up"):
            getattr(widget, f"action_cursor_{where}")()
        else:
            widget.move_cursor(row=0 if where == "first" else max(0, widget.row_count - 1))
    elif isinstance(widget, OptionList):
        getattr(widget, {"down": "action_cursor_down", "up": "action_cursor_up", "first": "action_first",
                         "last": "action_last"}[where])()
    elif isinstance(widget, ListView):
        if where in ("down", "up"):
            getattr(widget, f"action_cursor_{where}")()
        elif len(widget):
            widget.index = 0 if where == "first" else len(widget) - 1
    elif isinstance(widget, ScrollableContainer):  # a scrolled list without a cursor (help, the chat log)
        {"down": widget.scroll_down, "up": widget.scroll_up, "first": widget.scroll_home,
         "last": widget.scroll_end}[where](animate=False)
    else:
        raise SkipAction()
