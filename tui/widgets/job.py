"""The view of a deploy, merge or chat-worker job, in place of the training charts: what it serves or writes (URL,
served adapters, requests; the merge's output folder), from engine.ops.jobs.facts, not "no step was logged"."""
from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

from engine.textsafe import printable
from tui.widgets.style import BOLD, INK, ink, redraw_on_theme_change

TITLES = {"deploy": "Deploy", "export": "Merge", "chat": "Chat worker"}
NOTES = {
    "deploy": "swift deploy ends on Ctrl+C/SIGINT with a KeyboardInterrupt traceback in its log: that is its normal "
              "way out, not a crash. The API speaks OpenAI's protocol: POST {url}/chat/completions.",
    "export": "The merged folder is a full model: open it in the Checkpoints pane of its run, chat with it as a base.",
}


class JobPane(Static):
    """Rows of (what, value) for the job on screen."""

    COMPONENT_CLASSES = INK
    DEFAULT_CSS = """
    JobPane {
        display: none;
        height: auto;
        max-height: 14;
        padding: 0 1;
    }
    """

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.kind = ""
        self.rows: list[tuple[str, str]] = []
        self.status = ""

    def on_mount(self) -> None:
        redraw_on_theme_change(self, self._draw)

    def show(self, kind: str, rows: list[tuple[str, str]], status: str) -> None:
        if (kind, rows, status) != (self.kind, self.rows, self.status):
            self.kind, self.rows, self.status = kind, list(rows), status
            self.border_title = TITLES.get(kind, kind)
            self._draw()

    def _draw(self) -> None:
        muted = ink(self, "muted")
        text = Text()
        width = max([len(k) for k, _ in self.rows] + [6])
        for k, v in self.rows:
            text.append(f"{k:>{width}}  ", muted)
            text.append(printable(v, newlines=False) + "\n", BOLD if k in ("URL", "writes") else "")
        note = NOTES.get(self.kind)
        if note:
            url = dict(self.rows).get("URL", "").split("  ")[0]
            text.append("\n" + note.replace("{url}", url or "URL"), muted)
        text.rstrip()
        self.update(text)

    def plain(self) -> str:
        """The text shown (tests)."""
        return "\n".join(f"{k}: {v}" for k, v in self.rows)
