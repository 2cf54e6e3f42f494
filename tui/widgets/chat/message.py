"""One chat message: a header (who, answer stats) over its Markdown body, which answers stream into
(`Markdown.get_stream`: several pieces are written in one go when they arrive faster than the screen updates)."""
from __future__ import annotations

from rich.text import Text
from textual.binding import Binding
from textual.containers import Vertical
from textual.message import Message
from textual.widgets import Markdown, Static

from tui.chat import transcript


class ChatMessage(Vertical):
    """One message: a header (who, answer stats) over its Markdown body. Focus it (click) and press c to copy."""

    can_focus = True
    BINDINGS = [Binding("c", "copy", "Copy message")]

    class Piece(Message):
        def __init__(self, text: str) -> None:
            super().__init__()
            self.text = text

    class Note(Message):
        def __init__(self, note: str) -> None:
            super().__init__()
            self.note = note

    class Finished(Message):
        """The answer's last message from the thread that streams it (its stats, or an error)."""

        def __init__(self, info: dict, error: str | None = None) -> None:
            super().__init__()
            self.info, self.error = info, error

    class Shown(Message):
        """Posted (bubbling up to the chat pane) once Finished is handled: the whole answer and its stats are on
        screen. Pieces and Finished queue up here, so this comes after the streaming thread is long done."""

    def __init__(self, role: str, who: str, text: str = "", *, info: dict | None = None, note: str = "") -> None:
        super().__init__(classes=f"-{role}")
        self.role, self.who, self.text = role, who, text
        self.info = dict(info or {})
        self.note = note
        self.shown = False  # Finished handled: text, stats and any error are on screen
        self._stream = None

    def compose(self):
        yield Static(self._head(), classes="msg-head")
        yield Markdown(self.text, classes="msg-body")

    def _head(self) -> Text:
        text = Text(no_wrap=True, overflow="ellipsis")
        text.append(self.who, "bold")
        stats = transcript.answer_stats(self.info) if self.info else ""
        extra = stats or self.note
        if extra:
            style = "italic" if self.info.get("finish_reason") in (None, "stop") else "bold"
            text.append(f"  {extra}", style)
        return text

    def _update_head(self) -> None:
        self.query_one(".msg-head", Static).update(self._head())

    def on_chat_message_note(self, message: Note) -> None:
        message.stop()
        self.note = message.note
        self._update_head()

    async def on_chat_message_piece(self, message: Piece) -> None:
        message.stop()
        if self._stream is None:
            self.note = "…"
            self._update_head()
            self._stream = Markdown.get_stream(self.query_one(Markdown))
        self.text += message.text
        await self._stream.write(message.text)

    async def on_chat_message_finished(self, message: Finished) -> None:
        message.stop()
        if self._stream is not None:
            await self._stream.stop()
            self._stream = None
        self.info, self.note = dict(message.info), ""
        if message.error:
            self.info["finish_reason"] = "error"
            await self.mount(Static(Text(message.error), classes="msg-error"))  # coloured by TCSS: $error
        elif not self.text:
            self.note = "(no text)"
        self._update_head()
        self.shown = True
        self.post_message(self.Shown())

    def action_copy(self) -> None:
        self.app.copy_to_clipboard(self.text)  # the app's clipboard service, as Textual's own Input uses it
        self.notify(f"copied {len(self.text)} characters of {self.who}")

    def on_click(self) -> None:
        self.focus()
