"""The chat's widgets: the pane (pane.py) and one message (message.py)."""
from tui.widgets.chat.message import ChatMessage
from tui.widgets.chat.pane import ChatPane

__all__ = ["ChatMessage", "ChatPane"]
