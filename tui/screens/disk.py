"""Disk (D, or the palette): where the disk went in the output dir of the run shown — each run folder and each
of its checkpoints with its size (best / last marked, the optimizer state that stripping would free), and the free
space on the volume (engine.ops.disk). `p` prunes the run under the cursor: keep the best and the last N (`+`/`-`),
a preview of what goes and the bytes freed, a confirmation, then engine.ops.checkpoints.apply (guarded: a
checkpoint a live process needs is kept). Refused in --readonly."""
from __future__ import annotations

from pathlib import Path

from textual import work
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import DataTable, Static

from engine.errors import SwiftdeckError
from engine.ops import checkpoints as ckpt_ops
from engine.ops.disk import DiskSummary, disk_summary, fmt_bytes
from engine.textsafe import printable
from tui.screens.confirm import ConfirmScreen

MAX_LISTED = 12  # checkpoints named in the confirmation (then "… and N more")


def output_dir_of(source, fallback: Path | None) -> Path | None:
    """Where the run shown writes: its --output_dir, else the folder holding its run folder, else `fallback`."""
    rec = source.record if source else None
    if rec is not None and rec.output_dir:
        return Path(rec.output_dir)
    if source is not None and source.run_dir:
        return Path(source.run_dir).parent
    return fallback


class DiskScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,q", "dismiss(None)", "Close"), Binding("p", "prune", "Prune"),
                Binding("plus,equals_sign", "keep(1)", "Keep more"), Binding("minus", "keep(-1)", "Keep fewer"),
                Binding("g", "reload", "Reload")]

    def __init__(self, output_dir: Path | None, *, keep_last: int = 1) -> None:
        super().__init__()
        self.output_dir = output_dir
        self.keep_last = keep_last
        self.summary: DiskSummary | None = None
        self.rows: list[Path] = []  # the run folder of each row

    def compose(self):
        with Vertical(id="disk-box"):
            yield Static("Disk — reading …", id="disk-title")
            table = DataTable(id="disk-table", cursor_type="row", zebra_stripes=True)
            table.add_columns("folder", "size", "optimizer", "what", "status")
            yield table
            yield Static("", id="disk-hint")

    def on_mount(self) -> None:
        self._hint()
        self.action_reload()

    def _hint(self) -> None:
        prune = "" if getattr(self.app, "readonly", False) else \
            f"p prunes the run under the cursor: keeps the best and the last {self.keep_last} (+/- to change) · "
        self.query_one("#disk-hint", Static).update(prune + "g reloads · Esc closes")

    def action_reload(self) -> None:
        if self.output_dir is None:
            self.query_one("#disk-title", Static).update("Disk — no output folder: open a run first (w)")
            return
        self.query_one(DataTable).loading = True
        self._load(self.output_dir)

    @work(thread=True, exclusive=True, group="disk")
    def _load(self, output_dir: Path) -> None:
        try:
            summary, error = disk_summary(output_dir), None
        except (SwiftdeckError, OSError) as exc:
            summary, error = None, str(exc)
        self.app.call_from_thread(self._show, summary, error)

    def _show(self, s: DiskSummary | None, error: str | None) -> None:
        table = self.query_one(DataTable)
        table.loading = False
        title = self.query_one("#disk-title", Static)
        if s is None:
            title.update(f"Disk — {printable(error, newlines=False)}")
            return
        self.summary = s
        title.update(f"Disk — {printable(str(s.output_dir), newlines=False)}: {fmt_bytes(s.size_bytes)} in "
                     f"{len(s.runs)} run folder(s) · {fmt_bytes(s.volume_free)} free of {fmt_bytes(s.volume_total)}")
        table.clear()
        self.rows = []
        for r in reversed(s.runs):  # newest first
            who = f"{r.label} {r.run_id}".strip() if r.run_id else ""
            table.add_row(printable(r.name, newlines=False), fmt_bytes(r.size_bytes),
                          fmt_bytes(r.optimizer_bytes) if r.optimizer_bytes else "-",
                          f"{len(r.checkpoints)} checkpoint(s)", printable(f"{r.status} {who}".strip(), newlines=False))
            self.rows.append(r.path)
            for c in r.checkpoints:
                marks = [m for m, on in (("best", c.is_best), ("last", c.is_last)) if on]
                table.add_row(f"  {printable(c.name, newlines=False)}", fmt_bytes(c.size_bytes),
                              fmt_bytes(c.optimizer_bytes) if c.optimizer_bytes else "-",
                              " ".join([c.kind, *marks]), "" if c.resumable else "not resumable")
                self.rows.append(r.path)
        table.focus()

    def action_keep(self, delta: int) -> None:
        self.keep_last = max(0, self.keep_last + delta)
        self._hint()

    def action_prune(self) -> None:
        if getattr(self.app, "readonly", False):
            self.notify("read-only dashboard: pruning checkpoints is turned off", severity="warning")
            return
        table = self.query_one(DataTable)
        if not self.rows or table.cursor_row is None:
            self.notify("no run folder here to prune", severity="warning")
            return
        run_dir = self.rows[table.cursor_row]
        try:
            plan = ckpt_ops.plan_prune(run_dir, keep_last=self.keep_last)
        except (SwiftdeckError, OSError) as exc:
            self.notify(str(exc), severity="warning", timeout=8)
            return
        if not plan.chosen:
            self.notify(f"nothing to prune in {run_dir.name}: every checkpoint is kept", severity="warning")
            return
        gone = [f"  delete {i.name} ({fmt_bytes(i.size_bytes)})" for i in plan.chosen]
        if len(gone) > MAX_LISTED:
            gone = gone[:MAX_LISTED] + [f"  … and {len(gone) - MAX_LISTED} more"]
        kept = [f"  keep {i.name}: {', '.join(i.reasons)}" for i in plan.kept]
        body = "\n".join([*gone, *kept, "", f"frees {fmt_bytes(plan.freed_bytes)}. This cannot be undone."])
        self.app.push_screen(ConfirmScreen(f"Prune {run_dir.name}: free {fmt_bytes(plan.freed_bytes)}?", body,
                                           yes="Prune"), lambda yes: self._apply(plan) if yes else None)

    @work(thread=True, exclusive=True, group="prune")
    def _apply(self, plan) -> None:
        done = ckpt_ops.apply(plan)
        msg = f"pruned {plan.run_dir.name}: deleted {len(done.done)}, freed {fmt_bytes(done.freed_bytes)}"
        if done.refused:
            msg += "; kept " + "; ".join(why for _, why in done.refused)
        self.app.call_from_thread(self.notify, msg, severity="warning" if done.refused else "information",
                                  timeout=10)
        self.app.call_from_thread(self.action_reload)
