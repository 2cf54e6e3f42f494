"""The identity check (the tutorial's 三问) of a checkpoint: each question asked to the base and to the adapter at
temperature 0 through the chat pane's worker; a table with both answers and pass/fail, the full row below."""
from __future__ import annotations

from rich.text import Text
from textual.binding import Binding
from textual.containers import Vertical
from textual.message import Message
from textual.screen import ModalScreen
from textual.widgets import DataTable, LoadingIndicator, Static


def _cut(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


class IdentityScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,q", "dismiss(None)", "Close")]

    class Done(Message):
        """From the thread worker: the engine's IdentityReport, or a one-line error."""

        def __init__(self, report, error: str | None = None) -> None:
            super().__init__()
            self.report, self.error = report, error

    def __init__(self, label: str) -> None:
        super().__init__()
        self.label = label
        self.report = None

    def compose(self):
        with Vertical(id="identity-box"):
            yield Static(f"identity check of {self.label}: base vs adapter, temperature 0", id="identity-title")
            yield Static("loading the base in the chat worker (if needed) and asking the three identity questions "
                         "plus a sample of the dataset's own …", id="identity-status")
            yield LoadingIndicator(id="identity-loading")
            table = DataTable(id="identity-table", cursor_type="row", zebra_stripes=True)
            table.display = False
            yield table
            yield Static("", id="identity-detail", markup=False)

    def on_identity_screen_done(self, message: Done) -> None:
        self.query_one("#identity-loading").display = False
        status = self.query_one("#identity-status", Static)
        if message.report is None:
            status.update(Text(f"identity check failed: {message.error}", style="bold red"))
            return
        self.report = r = message.report
        n = len(r.rows)
        verdict = Text.assemble((f"adapter {r.adapter_passed}/{n} passed", "bold green" if r.adapter_passed == n
                                 else "bold yellow"), f", base {r.base_passed}/{n}.  expected identity: ",
                                (", ".join(r.identity) or "(none found in the dataset)", "bold"))
        status.update(verdict)
        table = self.query_one(DataTable)
        table.add_columns("question", "base answer", "base", "adapter answer", "adapter")
        for row in r.rows:
            table.add_row(_cut(row.question, 24), _cut(row.base, 30), self._mark(row.base_pass, base=True),
                          _cut(row.adapter, 30), self._mark(row.adapter_pass))
        table.display = True
        table.focus()
        self._detail(0)

    @staticmethod
    def _mark(ok: bool, base: bool = False) -> Text:
        if ok:
            return Text("PASS", style="bold green")
        return Text("fail", style="dim") if base else Text("FAIL", style="bold red")

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        self._detail(event.cursor_row)

    def _detail(self, index: int) -> None:
        if self.report is None or not 0 <= index < len(self.report.rows):
            return
        row = self.report.rows[index]
        lines = [f"Q: {row.question}"]
        if row.expected is not None:
            lines.append(f"expected: {_cut(row.expected, 400)}")
        lines.append(f"adapter:  {_cut(row.adapter, 400)}" + (f"   ({row.adapter_why})" if row.adapter_why else ""))
        lines.append(f"base:     {_cut(row.base, 400)}")
        self.query_one("#identity-detail", Static).update("\n".join(lines))
