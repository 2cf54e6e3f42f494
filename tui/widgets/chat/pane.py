"""Chat pane: talk to the base model or the checkpoint picked in the browser (Enter), or compare two targets side
by side (A/B). Answers come from a chat worker (one process per base model, started on the first message; other
checkpoints of the same base are attached without a reload) or from a running `swift deploy` (ctrl+f), and stream
into Markdown (`Markdown.get_stream`). Esc cancels. Every message is appended to the checkpoint's transcript
(tui/chat/transcript.py); ctrl+s exports it as Markdown. The identity check, deploy and merge start here too
(tui/widgets/chat/jobs.py).

Nothing blocks the UI thread: backends run in thread workers and post their text pieces back as messages.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from rich.text import Text
from textual import on, work
from textual.actions import SkipAction
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.message import Message
from textual.widgets import Input, Static

from engine.chat_client import ChatClientError
from tui.chat import transcript
from tui.chat.backend import BackendError, ChatSettings, DeployBackend, Reply, WorkerBackend
from tui.chat.target import ChatTarget, for_base, for_checkpoint
from tui.widgets.chat.jobs import ChatJobs
from tui.widgets.chat.message import ChatMessage
from tui.widgets.style import BOLD, INK, ink, redraw_on_theme_change


@dataclass
class Leg:
    """One answer of a turn: single chat ('main'), or side 'A'/'B' of an A/B comparison."""

    side: str
    target: ChatTarget
    messages: list[dict]  # what is sent: the side's history + the new user message
    widget: ChatMessage
    vs: str | None = None
    text: str = ""
    info: dict = field(default_factory=dict)


class ChatPane(ChatJobs, Vertical):
    ALLOW_MAXIMIZE = True
    BINDINGS = [
        Binding("escape", "cancel", "Cancel answer"),
        Binding("ctrl+l", "clear", "Clear chat"),
        Binding("ctrl+b", "ab", "A/B"),
        Binding("ctrl+o", "pick", "Chat target", show=False),
        Binding("ctrl+t", "settings", "Settings"),
        Binding("ctrl+y", "copy_last", "Copy last answer", show=False),
        Binding("ctrl+s", "export", "Export chat (.md)", show=False),
        Binding("ctrl+g", "identity", "Identity check", show=False),
        Binding("ctrl+r", "deploy", "Deploy / stop deploy", show=False),
        Binding("ctrl+f", "backend", "Chat via worker / deploy", show=False),
        Binding("ctrl+z", "zoom", "Zoom chat"),
    ]
    HELP_BINDINGS = BINDINGS + ChatMessage.BINDINGS  # c copies a message focused with a click
    COMPONENT_CLASSES = INK

    class TurnDone(Message):
        def __init__(self, legs: list[Leg]) -> None:
            super().__init__()
            self.legs = legs

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.border_title = "Chat"
        self.checkpoint = None  # engine.checkpoints.CheckpointInfo picked for chat
        self.base_model: str | None = None
        self.partner = None  # A/B: the checkpoint on side A (None: the base model)
        self.ab = False
        self.settings = ChatSettings()
        self.worker = WorkerBackend()
        self.deploy: DeployBackend | None = None  # a ready deploy
        self.deploy_rec = None  # the deploy starting or ready
        self.use_deploy = False
        self.histories: dict[str, list[dict]] = {}
        self.busy = False
        self.turns = 0  # turns over: every answer shown (tests wait on it)
        self.last_legs: list[Leg] = []
        self._ended: list[Leg] | None = None  # the turn whose thread is done, until its answers are shown
        self._reply: Reply | None = None
        self._cancel = threading.Event()
        self._loading: tuple[str, float] | None = None
        self._paths: dict[str, Path] = {}

    def compose(self):
        yield Static("", id="chat-target")
        yield Static("", id="chat-status")
        yield Static("", id="chat-deploy")
        yield VerticalScroll(id="chat-log")
        yield Input(placeholder="message (Enter sends) · Esc cancels · ctrl+o target · ctrl+b A/B · ? keys",
                    id="chat-input")

    def on_mount(self) -> None:
        self.query_one("#chat-log").anchor()
        self.set_interval(1.0, self._tick)
        redraw_on_theme_change(self, self._show)
        self._show()
        self._adopt_deploy()

    def on_unmount(self) -> None:
        self._cancel.set()
        if self._reply is not None:
            self._reply.cancel()
        self.worker.close()  # the worker is ours; a deploy is a managed job and outlives the dashboard

    def focus(self, scroll_visible: bool = True):
        self.query_one("#chat-input", Input).focus(scroll_visible)
        return self

    # ------------------------------------------------------------ what we talk to

    @property
    def target(self) -> str | None:
        """The path a chat session would load: the chosen adapter/checkpoint, else the base model."""
        return str(self.checkpoint.path) if self.checkpoint is not None else self.base_model

    def choose(self, checkpoint) -> None:
        self.checkpoint = checkpoint
        self._retarget()

    def set_base_model(self, model: str | None) -> None:
        if model != self.base_model:
            self.base_model = model
            self._show()

    def reset(self) -> None:
        self.checkpoint, self.base_model, self.partner = None, None, None
        self._retarget()

    def _folders(self) -> list:
        from tui.widgets.checkpoints import CheckpointsPane

        panes = self.screen.query(CheckpointsPane)
        return list(panes.first().folders) if panes else []

    def _record(self):
        watch = getattr(self.app, "watch", None)
        src = getattr(watch, "source", None)
        return src.record if src is not None else None

    def current_target(self) -> ChatTarget:
        """The single-chat target (side B in A/B). Raises ChatClientError/BackendError with one line."""
        if self.checkpoint is not None:
            return for_checkpoint(self.checkpoint)
        if self.base_model:
            rec = self._record()
            return for_base(self.base_model, self._folders(), rec.argv if rec else None)
        raise BackendError("nothing to chat with yet: pick a checkpoint (Enter in Checkpoints)")

    def _base_of(self, target: ChatTarget) -> ChatTarget:
        return ChatTarget(f"base {Path(str(target.base.get('model'))).name}", target.base)

    def legs_targets(self) -> list[tuple[str, ChatTarget, str | None]]:
        """[(side, target, the other side's label)] of the next turn."""
        b = self.current_target()
        if not self.ab:
            return [("main", b, None)]
        a = for_checkpoint(self.partner) if self.partner is not None else self._base_of(b)
        if a.label == b.label:
            raise BackendError(f"A/B needs two different targets (both are {b.label}): pick a checkpoint with "
                               "Enter in Checkpoints, or side A with ctrl+o")
        if a.base_key != b.base_key:
            raise BackendError(f"A/B runs on one loaded base: {a.label} and {b.label} use different bases "
                               f"({a.base.get('model')} vs {b.base.get('model')})")
        return [("A", a, b.label), ("B", b, a.label)]

    def _retarget(self) -> None:
        """Another target: the conversation starts over (a divider in the log, empty histories)."""
        self.histories.clear()
        log = self.query_one("#chat-log")
        if log.children:
            try:
                label = " vs ".join(t.label for _, t, _ in self.legs_targets())
            except (BackendError, ChatClientError):
                label = "nothing"
            log.mount(Static(f"── now: {label} ──", classes="chat-divider"))
        if not self.busy and not self.ab:
            try:
                target = self.current_target()
            except (BackendError, ChatClientError):
                target = None
            if target is not None and target.is_adapter and not self.worker.needs_load(target):
                self._attach_adapter(target)  # attach the adapter now (a few ms), not on the next message
        self._show()

    @work(thread=True, group="chat-attach")
    def _attach_adapter(self, target: ChatTarget) -> None:
        with self.worker.lock:
            try:
                if not self.worker.needs_load(target):
                    self.worker.ensure(target)
            except ChatClientError as exc:
                self.post_message(self.Note(str(exc), "warning"))

    # ------------------------------------------------------------ display

    def _show(self) -> None:
        muted, acc = ink(self, "muted"), ink(self, "accent", bold=True)
        text = Text(no_wrap=True, overflow="ellipsis")
        c = self.checkpoint
        if self.ab:
            try:
                (_, a, _), (_, b, _) = self.legs_targets()
                text.append("A/B ", muted)
                text.append(a.label, acc)
                text.append(" ⟷ ", muted)
                text.append(b.label, acc)
                text.append(f"  on {a.base.get('model')}", muted)
            except (BackendError, ChatClientError, ValueError) as exc:
                text.append(f"A/B: {exc}", muted)
        elif c is not None:
            text.append("adapter " if c.kind == "lora" else f"{c.kind} model ", muted)
            text.append(c.name, acc)
            if c.lora_rank is not None:
                text.append(f" (LoRA r={c.lora_rank})", muted)
            text.append(" on base " if c.kind == "lora" else " ", muted)
            text.append((c.base_model or self.base_model or "?") if c.kind == "lora" else str(c.path))
        elif self.base_model:
            text.append("base model ", muted)
            text.append(self.base_model, BOLD)
            text.append("  (no checkpoint picked: Enter on one in Checkpoints)", muted)
        else:
            text.append("nothing to chat with yet: pick a checkpoint (Enter in Checkpoints)", muted)
        self.query_one("#chat-target", Static).update(text)
        self._show_status()

    def _show_status(self) -> None:
        muted = ink(self, "muted")
        if self._loading is not None:
            model, since = self._loading
            status = Text(f"loading {Path(model).name} in a chat worker … {time.monotonic() - since:.0f} s "
                          "(once per base model)", style="bold")
        else:
            backend = self.deploy if self.use_deploy and self.deploy else self.worker
            status = Text(f"{backend.describe()} · {self.settings.describe()}", style=muted)
        self.query_one("#chat-status", Static).update(status)
        line = self.query_one("#chat-deploy", Static)
        line.display = self.deploy_rec is not None
        if self.deploy is not None:
            use = "in use (ctrl+f: back to the worker)" if self.use_deploy else "ctrl+f chats through it"
            line.update(Text.assemble(("deploy ", muted), (self.deploy.url, "bold"),
                                      f" serves {', '.join(self.deploy.models)} · {use}"))
        elif self.deploy_rec is not None:
            line.update(Text(f"deploy starting (run {self.deploy_rec.id}): waiting for /health …", style=muted))

    def _tick(self) -> None:
        if self._loading is not None:
            self._show_status()

    async def show_records(self, records: list[dict]) -> None:
        """Show recorded transcript records (as the transcript file holds them) in the log."""
        log = self.query_one("#chat-log")
        for rec in records:
            if rec.get("role") == "user":
                await log.mount(ChatMessage("user", "you", rec.get("content", "")))
            elif rec.get("role") == "assistant":
                await log.mount(ChatMessage("assistant", rec.get("target", "assistant"), rec.get("content", ""),
                                            info=rec))

    # ------------------------------------------------------------ a turn

    @on(Input.Submitted, "#chat-input")
    async def _submitted(self, event: Input.Submitted) -> None:
        event.stop()
        prompt = event.value.strip()
        if not prompt:
            return
        if await self.send(prompt):
            event.input.value = ""

    async def send(self, prompt: str) -> bool:
        """Start a turn (one answer, or two in A/B). False (with a notification) when it cannot start."""
        if self.busy:
            self.app.notify("an answer is still streaming: Esc cancels it", severity="warning")
            return False
        try:
            sides = self.legs_targets()
        except (BackendError, ChatClientError) as exc:
            self.app.notify(str(exc), severity="warning", timeout=8)
            return False
        log = self.query_one("#chat-log")
        legs = []
        for side, target, vs in sides:
            history = self.histories.get(side, []) if self.settings.history else []
            who = f"{side}: {target.label}" if self.ab else target.label
            widget = ChatMessage("assistant", who, note="waiting for the answer …")
            legs.append(Leg(side, target, [*history, {"role": "user", "content": prompt}], widget, vs))
        user = ChatMessage("user", "you → A/B" if self.ab else "you", prompt)
        answers = Horizontal(*(leg.widget for leg in legs), classes="ab-row") if self.ab else legs[0].widget
        await log.mount(user, answers)
        log.anchor()
        self.busy = True
        self._cancel.clear()
        backend = self.deploy if self.use_deploy and self.deploy is not None else self.worker
        self._turn(legs, prompt, backend, replace(self.settings))
        return True

    @work(thread=True, group="chat-turn")
    def _turn(self, legs: list[Leg], prompt: str, backend, settings: ChatSettings) -> None:
        with backend.lock:
            for leg in legs:
                self._answer(leg, prompt, backend, settings)
        self._reply = None
        self.post_message(self.TurnDone(legs))

    def _answer(self, leg: Leg, prompt: str, backend, settings: ChatSettings) -> None:
        extra = {"side": leg.side, "vs": leg.vs} if leg.vs else {}
        self._save(leg.target, {"role": "user", "target": leg.target.label, "content": prompt, **extra})
        error = None
        if self._cancel.is_set():
            leg.info = {"finish_reason": "cancelled"}
        else:
            reply = self._reply = Reply()
            try:
                if isinstance(backend, WorkerBackend) and backend.needs_load(leg.target):
                    self.post_message(self.Status(str(leg.target.base.get("model"))))
                    leg.widget.post_message(ChatMessage.Note("loading the base model (once per base) …"))
                    try:
                        backend.ensure(leg.target)
                    finally:
                        self.post_message(self.Status(None))
                if self._cancel.is_set():
                    reply.cancel()
                for piece in backend.stream(leg.target, leg.messages, settings, reply):
                    leg.text += piece
                    leg.widget.post_message(ChatMessage.Piece(piece))
                leg.info = {k: v for k, v in reply.info.items() if k not in ("event", "id", "text", "conv", "target")}
            except (ChatClientError, BackendError) as exc:
                error = str(exc)
            except Exception as exc:  # an unexpected failure: one line in the message, never a traceback
                error = f"{type(exc).__name__}: {exc}"
            if error:
                leg.info = {"finish_reason": "error", "error": error}
        leg.widget.post_message(ChatMessage.Finished(leg.info, error))
        self._save(leg.target, {"role": "assistant", "target": leg.target.label, "content": leg.text,
                                **leg.info, "settings": settings.to_json(), "backend": backend.kind, **extra})

    def _transcript(self, target: ChatTarget) -> Path:
        if target.name not in self._paths:
            run_id = transcript.run_id_for(target.folder, self._record())
            self._paths[target.name] = transcript.transcript_path(target.name, target.folder, run_id)
        return self._paths[target.name]

    def _save(self, target: ChatTarget, record: dict) -> None:
        try:
            transcript.append(self._transcript(target), record)
        except OSError as exc:
            self.post_message(self.Note(f"transcript not saved: {exc}", "warning"))

    def on_chat_pane_turn_done(self, message: TurnDone) -> None:
        self._ended = message.legs
        self._end_turn()

    def on_chat_message_shown(self, message: ChatMessage.Shown) -> None:
        message.stop()
        self._end_turn()

    def _end_turn(self) -> None:
        """The turn is over when its thread is done (answers saved) and every answer shows its end: the answer
        widgets take the streamed pieces at their own pace, after the thread has posted the last one."""
        if self._ended is None or not all(leg.widget.shown for leg in self._ended):
            return
        legs, self._ended = self._ended, None
        self.busy = False
        for leg in legs:
            if leg.info.get("finish_reason") in ("stop", "length"):  # a cancelled or failed turn is not kept
                self.histories[leg.side] = [*leg.messages, {"role": "assistant", "content": leg.text}]
        self.last_legs = legs
        self.turns += 1
        self._show_status()

    def on_chat_jobs_status(self, message: ChatJobs.Status) -> None:
        self._loading = (message.loading, time.monotonic()) if message.loading else None
        self._show_status()

    def on_chat_jobs_note(self, message: ChatJobs.Note) -> None:
        self.app.notify(message.text, severity=message.severity, timeout=10)

    # ------------------------------------------------------------ keys

    def check_action(self, action: str, parameters) -> bool | None:
        return self.app.check_action(action, parameters)  # the app's --readonly policy hides deploy

    def action_cancel(self) -> None:
        if self.busy:
            self._cancel.set()
            if self._reply is not None:
                self._reply.cancel()
        elif self.is_maximized:
            self.screen.minimize()
        else:
            raise SkipAction()

    def action_clear(self) -> None:
        if self.busy:
            self.app.notify("an answer is still streaming: Esc cancels it first", severity="warning")
            return
        try:
            targets = [t for _, t, _ in self.legs_targets()]
        except (BackendError, ChatClientError):
            targets = []
        if self.histories:
            for t in targets:
                self._save(t, {"role": "clear", "target": t.label})
        self.histories.clear()
        self.query_one("#chat-log").remove_children()
        self.app.notify("conversation cleared (the transcript keeps it)")

    def action_ab(self) -> None:
        if self.busy:
            self.app.notify("an answer is still streaming: Esc cancels it first", severity="warning")
            return
        self.ab = not self.ab
        self._retarget()
        if self.ab:
            try:
                self.legs_targets()
            except (BackendError, ChatClientError) as exc:
                self.app.notify(str(exc), severity="warning", timeout=8)

    def action_pick(self) -> None:
        from tui.screens.chat_target import BASE, ChatTargetScreen

        side = "side A of the A/B comparison" if self.ab else "the chat"
        current = (str(self.partner.path) if self.partner is not None else BASE) if self.ab else (
            str(self.checkpoint.path) if self.checkpoint is not None else BASE)

        def picked(choice) -> None:
            if choice is None:
                return
            if self.ab:
                self.partner = None if choice == BASE else choice
                self._retarget()
            else:
                self._pick_main(None if choice == BASE else choice)

        base = self.base_model or (self.checkpoint.base_model if self.checkpoint is not None else None)
        self.app.push_screen(ChatTargetScreen(f"What {side} talks to", base, self._folders(), current), picked)

    def _pick_main(self, checkpoint) -> None:
        from tui.widgets.checkpoints import CheckpointsPane

        for pane in self.screen.query(CheckpointsPane):  # keep the browser's "◀ chat" mark in step
            pane.chosen = str(checkpoint.path) if checkpoint is not None else None
            pane.show(pane.folders)
        if checkpoint is None and self.base_model is None and self.checkpoint is not None:
            self.base_model = self.checkpoint.base_model
        self.choose(checkpoint)

    def action_settings(self) -> None:
        from tui.screens.chat_settings import ChatSettingsScreen

        def saved(settings: ChatSettings | None) -> None:
            if settings is not None:
                self.settings = settings
                self._show_status()

        self.app.push_screen(ChatSettingsScreen(self.settings), saved)

    def action_copy_last(self) -> None:
        answers = [m for m in self.query(ChatMessage) if m.role == "assistant" and m.text]
        if not answers:
            self.app.notify("no answer to copy yet", severity="warning")
            return
        answers[-1].action_copy()

    def action_export(self) -> None:
        try:
            targets = [t for _, t, _ in self.legs_targets()]
        except (BackendError, ChatClientError) as exc:
            self.app.notify(str(exc), severity="warning")
            return
        self._export(targets)

    @work(thread=True, group="chat-export")
    def _export(self, targets: list[ChatTarget]) -> None:
        for t in targets:
            try:
                md = transcript.export_markdown(self._transcript(t), t.label)
                self.post_message(self.Note(f"exported the {t.label} transcript to {md}"))
            except OSError as exc:
                self.post_message(self.Note(str(exc), "warning"))

    def action_zoom(self) -> None:
        if self.is_maximized:
            self.screen.minimize()
        else:
            self.screen.maximize(self, container=False)
            self.focus()

    # ------------------------------------------------------------ command palette

    def system_commands(self) -> list[tuple[str, str, object]]:
        return [
            ("Chat: pick target", "Base model or any checkpoint for the chat", self.action_pick),
            ("Chat: A/B compare", "Same prompt to two targets side by side (one loaded base)", self.action_ab),
            ("Chat: clear conversation", "Start the conversation over", self.action_clear),
            ("Chat: settings", "Temperature, top_p, max new tokens, system prompt, history", self.action_settings),
            ("Chat: export transcript", "Write the checkpoint's transcript as Markdown", self.action_export),
            ("Chat: copy last answer", "Copy the last answer to the clipboard", self.action_copy_last),
            ("Identity check (三问)", "Base vs adapter on the identity questions, temperature 0",
             self.action_identity),
            ("Deploy / stop deploy", "swift deploy of the chat target on 127.0.0.1", self.action_deploy),
            ("Chat via worker / deploy", "Send the chat through the running deploy, or the worker",
             self.action_backend),
            ("Zoom chat", "Chat pane full screen (ctrl+z again, or Esc, to restore)", self.action_zoom),
        ]
