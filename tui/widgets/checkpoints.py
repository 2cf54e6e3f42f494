"""Checkpoints pane: run folder → checkpoint-N with the engine's metadata. Enter picks a checkpoint for chat;
R resume from here, D delete, O strip optimizer state, M merge a LoRA into a full model (each asks first)."""
from __future__ import annotations

import os

from rich.text import Text
from textual import on
from textual.binding import Binding
from textual.containers import Vertical
from textual.message import Message
from textual.widgets import Static, Tree

from tui.actions import fmt_bytes
from tui.model import fmt_num
from tui.widgets.policy import ActionPolicy
from tui.widgets.style import BOLD, INK, fit, ink, redraw_on_theme_change


class CheckpointTree(Tree):
    """Tree of run folders and their checkpoints (Enter on a checkpoint picks it for chat)."""


class CheckpointsPane(ActionPolicy, Vertical):
    BINDINGS = [
        Binding("c", "choose", "Chat with"),
        Binding("R", "resume", "Resume"),
        Binding("D", "delete", "Delete"),
        Binding("O", "strip", "Strip optimizer"),
        Binding("M", "merge", "Merge LoRA"),
        Binding("f5", "refresh", "Refresh checkpoints"),
    ]
    COMPONENT_CLASSES = INK

    class Chosen(Message):
        """A checkpoint was picked (Enter) for chat."""

        def __init__(self, checkpoint) -> None:
            super().__init__()
            self.checkpoint = checkpoint

    class Act(Message):
        """resume / delete / strip on a checkpoint; the app confirms and carries it out."""

        def __init__(self, action: str, checkpoint) -> None:
            super().__init__()
            self.action, self.checkpoint = action, checkpoint

    class Merge(Message):
        """M on a checkpoint: the app confirms and runs `swift export --merge_lora` in the background."""

        def __init__(self, checkpoint) -> None:
            super().__init__()
            self.checkpoint = checkpoint

    class Refresh(Message):
        """F5: read the run folder again now (a merge from the CLI, a copied checkpoint)."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.border_title = "Checkpoints"
        self.folders: list = []
        self.chosen: str | None = None
        self.empty_note: str | None = None  # what an empty list says (a job has no run folder)
        self.live_label: tuple[str, str] | None = None  # (run folder, label) from the header's numbers

    def compose(self):
        tree = CheckpointTree("runs", id="ckpt-tree")
        tree.show_root = False
        tree.guide_depth = 2
        yield tree
        yield Static("", id="ckpt-detail")

    def on_mount(self) -> None:
        redraw_on_theme_change(self, lambda: self.show(self.folders) if self.folders else None)

    def show(self, folders: list, empty_note: str | None = None) -> None:
        """Rebuild from engine.checkpoints.RunFolder objects, keeping the cursor on the same checkpoint."""
        self.folders, self.empty_note = folders, empty_note
        tree = self.query_one(CheckpointTree)
        keep = self.current()
        keep_path = str(keep.path) if keep else None
        tree.clear()
        line = None
        for folder in folders:
            node = tree.root.add(self._folder_label(folder), data=folder, expand=True)
            for c in folder.checkpoints:
                leaf = node.add_leaf(self._label(c), data=c)
                if str(c.path) == keep_path:
                    line = leaf
            if not folder.checkpoints:
                node.add_leaf(Text("no checkpoint yet" if not folder.ended else "no checkpoint saved",
                                   style="italic"))
        if not folders:
            tree.root.add_leaf(Text(empty_note or "no run folder yet (ms-swift creates it when training starts)",
                                    style="italic"))
        if line is None and folders and folders[-1].checkpoints:
            line = tree.root.children[-1].children[-1]
        if line is not None:
            tree.call_after_refresh(self._move, line)
        self._detail()

    def mark_chosen(self, path: str | None) -> None:
        """The checkpoint the chat talks to ("◀ chat"), when it was picked elsewhere (the chat's target picker)."""
        if path != self.chosen:
            self.chosen = path
            self.show(self.folders)

    def _move(self, node) -> None:
        self.query_one(CheckpointTree).move_cursor(node)
        self._detail()

    def _folder_label(self, folder) -> Text:
        label = folder.label  # e.g. "stopped step 22/900"
        if self.live_label and self.live_label[0] == os.path.realpath(folder.path):
            label = self.live_label[1]  # the run on screen: the header's numbers, not the last scan's
        return Text.assemble((folder.name, "bold"), f"  {label}")

    def relabel(self, run_dir: str | None, label: str | None) -> None:
        """The run on screen moved on (a step, a status): its folder's line says what the header says."""
        live = (os.path.realpath(run_dir), label) if run_dir and label else None
        if live == self.live_label:
            return
        self.live_label = live
        for node in self.query_one(CheckpointTree).root.children:
            if node.data is not None and hasattr(node.data, "checkpoints"):
                node.set_label(self._folder_label(node.data))

    def action_refresh(self) -> None:
        self.post_message(self.Refresh())

    def _label(self, c) -> Text:
        """One checkpoint's row, fitted to the tree's width by leaving out whole parts, the least needed first
        (r8, resumable, size, last, eval): name, loss and ★best always show."""
        ok, acc, muted = (ink(self, role) for role in ("success", "accent", "muted"))
        chosen = str(c.path) == self.chosen
        parts = [(0, Text(c.name, BOLD if chosen else ""))]
        if chosen:
            parts.append((0, Text(" ◀ chat", acc)))
        if c.kind != "lora":
            parts.append((0, Text(f"  {c.kind}: full model", acc)))
        parts.append((0, Text(f"  loss {fmt_num(c.loss)}")))
        if c.eval_loss is not None:
            parts.append((1, Text(f"  eval {fmt_num(c.eval_loss)}")))
        if c.is_best:
            parts.append((0, Text("  ★best", ok)))
        if c.is_last:
            parts.append((2, Text("  last", acc)))
        parts.append((3, Text(f"  {fmt_bytes(c.size_bytes)}", muted)))
        if c.resumable:
            parts.append((4, Text("  resumable", muted)))
        if c.lora_rank is not None:
            parts.append((5, Text(f"  r{c.lora_rank}", muted)))
        tree = self.query_one(CheckpointTree)
        room = tree.content_size.width - 2 * tree.guide_depth if tree.content_size.width else 10 ** 6
        return fit(parts, room)

    def on_resize(self) -> None:
        if self.folders:
            self.show(self.folders)  # the rows are fitted to the width

    def current(self):
        """The checkpoint under the cursor (engine.checkpoints.CheckpointInfo), or None."""
        tree = self.query_one(CheckpointTree)
        node = tree.cursor_node
        data = node.data if node is not None else None
        return data if data is not None and hasattr(data, "resumable") else None

    @on(Tree.NodeHighlighted)
    def _highlighted(self) -> None:
        self._detail()

    def _detail(self) -> None:
        c = self.current()
        detail = self.query_one("#ckpt-detail", Static)
        if c is None:
            detail.update("")
            return
        muted = ink(self, "muted")
        rows = [("step", str(c.step)), ("kind", c.kind), ("loss", f"{fmt_num(c.loss)} (step {c.loss_step})"),
                ("eval loss", fmt_num(c.eval_loss)), ("size", fmt_bytes(c.size_bytes)),
                ("resumable", "yes" if c.resumable else "no")]
        if c.lora_rank is not None:
            alpha = f"{c.lora_alpha:g}" if c.lora_alpha is not None else "?"
            targets = c.target_modules if isinstance(c.target_modules, str) else ",".join(c.target_modules or [])
            rows.append(("LoRA", f"r={c.lora_rank} alpha={alpha} on {targets}"))
        rows.append(("base", f"{c.base_model or '?'} ({c.model_type or '?'}/{c.template or '?'})"))
        text = Text(no_wrap=True, overflow="ellipsis")
        for k, v in rows:
            text.append(f"{k:>10} ", muted)
            text.append(f"{v}\n")
        for note in c.notes:
            text.append(f"{'':>10} {note}\n", muted)
        text.rstrip()
        detail.update(text)

    @on(Tree.NodeSelected)
    def _selected(self, event: Tree.NodeSelected) -> None:
        event.stop()
        if hasattr(event.node.data, "resumable"):
            self.action_choose()

    def action_choose(self) -> None:
        c = self.current()
        if c is None:
            self.notify("Move the cursor onto a checkpoint first", severity="warning")
            return
        self.chosen = str(c.path)
        self.show(self.folders)
        self.post_message(self.Chosen(c))

    def _act(self, action: str) -> None:
        c = self.current()
        if c is None:
            self.notify("Move the cursor onto a checkpoint first", severity="warning")
            return
        self.post_message(self.Act(action, c))

    def action_resume(self) -> None:
        self._act("resume")

    def action_delete(self) -> None:
        self._act("delete")

    def action_strip(self) -> None:
        self._act("strip")

    def action_merge(self) -> None:
        c = self.current()
        if c is None:
            self.notify("Move the cursor onto a checkpoint first", severity="warning")
            return
        self.post_message(self.Merge(c))
