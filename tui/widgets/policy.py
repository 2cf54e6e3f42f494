"""The app's --readonly policy, handed down to a pane whose keys start, stop or change something."""
from __future__ import annotations


class ActionPolicy:
    """A mixin before the widget class: `refused` (the actions the app turns off) comes down when the app composes
    the pane; Textual asks check_action before it shows a key in the footer."""

    def __init__(self, *, refused: frozenset[str] = frozenset(), **kwargs) -> None:
        super().__init__(**kwargs)
        self.refused = refused

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        return action not in self.refused
