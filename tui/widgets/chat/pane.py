"""Chat pane: talk to the base model or the checkpoint picked in the browser (Enter), or compare two targets side
by side (A/B). Answers stream into Markdown (`Markdown.get_stream`); Esc cancels. ctrl+s exports the checkpoint's
transcript (tui/chat/transcript.py) as Markdown.

The pane starts and stops nothing: it posts requests (a turn to answer, Esc, the identity check, deploy or stop the
deploy, a dialog to open) and the app acts on them (tui/chat/jobs.py: the chat worker process and the deploy live in
the app's tui/chat/session.ChatSession). What it shows comes down: the run (`show_run`), the checkpoint picked
(`choose`), the worker's and the deploy's state, and each answer's pieces through `feed()`.
"""
from __future__ import annotations

import time
from pathlib import Path

from rich.text import Text
from textual import on, work
from textual.actions import SkipAction
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.message import Message
from textual.widgets import Input, Static

from engine.errors import SwiftdeckError
from tui.chat import transcript
from tui.chat.settings import ChatSettings
from tui.chat.target import ChatTarget, TargetError, for_base, for_checkpoint
from tui.chat.turn import Leg
from tui.widgets.chat.input import ChatInput
from tui.widgets.chat.message import ChatMessage
from tui.widgets.policy import ActionPolicy
from tui.widgets.style import BOLD, INK, fit, ink, redraw_on_theme_change


class Feed:
    """A turn's progress, from the thread that runs it (tui/chat/turn.Feed), posted as messages to the pane and its
    answer widgets."""

    def __init__(self, pane: ChatPane) -> None:
        self.pane = pane

    def worker(self, loading: str | None, status: str) -> None:
        self.pane.post_message(ChatPane.WorkerState(loading, status))

    def note(self, leg: Leg, text: str) -> None:
        leg.widget.post_message(ChatMessage.Note(text))

    def piece(self, leg: Leg, text: str) -> None:
        leg.widget.post_message(ChatMessage.Piece(text))

    def finished(self, leg: Leg, error: str | None) -> None:
        leg.widget.post_message(ChatMessage.Finished(leg.info, error))

    def warning(self, text: str) -> None:
        self.pane.notify(text, severity="warning", timeout=10)


class ChatPane(ActionPolicy, Vertical):
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
    # c copies a message focused with a click; Esc in the input (nothing streaming) leaves it
    HELP_BINDINGS = BINDINGS + [Binding("escape", "cancel", "Leave the chat input (when no answer streams)")] + \
        ChatInput.BINDINGS + ChatMessage.BINDINGS
    COMPONENT_CLASSES = INK

    # ------------------------------------------------------------ requests: the app acts on them

    class Send(Message):
        """Answer a turn: every leg, through the deploy or the chat worker; `record`: the run shown."""

        def __init__(self, legs: list[Leg], prompt: str, settings: ChatSettings, via_deploy: bool, record) -> None:
            super().__init__()
            self.legs, self.prompt, self.settings, self.via_deploy, self.record = legs, prompt, settings, \
                via_deploy, record

    class Cancel(Message):
        """Esc while an answer streams."""

    class _ForTarget(Message):
        def __init__(self, target: ChatTarget) -> None:
            super().__init__()
            self.target = target

    class Attach(_ForTarget):
        """A LoRA target was picked: attach it to the loaded base now, not on the next message."""

    class IdentityRequested(_ForTarget):
        """ctrl+g: the identity check of the target (a LoRA checkpoint)."""

    class DeployRequested(_ForTarget):
        """ctrl+r without a deploy: `swift deploy` of the target (the app asks first)."""

    class StopDeployRequested(Message):
        """ctrl+r with a deploy starting or serving (at `url`): stop it (the app asks first)."""

        def __init__(self, rec, url: str | None) -> None:
            super().__init__()
            self.rec, self.url = rec, url

    class PickRequested(Message):
        """ctrl+o: the dialog that picks what `side` ("A" or the chat) talks to; the app hands the choice back to
        set_partner (A) or to choose (with the browser's mark)."""

        def __init__(self, side: str, title: str, base: str | None, folders: list, current: str) -> None:
            super().__init__()
            self.side, self.title, self.base, self.folders, self.current = side, title, base, folders, current

    class SettingsRequested(Message):
        """ctrl+t: the settings dialog; the app hands the new settings back to set_settings."""

        def __init__(self, settings: ChatSettings) -> None:
            super().__init__()
            self.settings = settings

    # ------------------------------------------------------------ from the app's workers

    class WorkerState(Message):
        """The chat worker is loading the base `loading`, or (None) is ready; `status` describes it."""

        def __init__(self, loading: str | None, status: str) -> None:
            super().__init__()
            self.loading, self.status = loading, status

    class TurnDone(Message):
        """The turn's thread is done: every answer and its transcript lines are written."""

        def __init__(self, legs: list[Leg]) -> None:
            super().__init__()
            self.legs = legs

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.border_title = "Chat"
        self.record = None  # the registry record of the run shown (data down)
        self.folders: list = []  # its run folders (engine.checkpoints.RunFolder), as the browser shows them
        self.checkpoint = None  # engine.checkpoints.CheckpointInfo picked for chat
        self.base_model: str | None = None
        self.partner = None  # A/B: the checkpoint on side A (None: what the run started from, else the base model)
        self.ab = False
        self.settings = ChatSettings()
        self.worker_status = ""  # what the app's chat worker is (data down)
        self.deploy = None  # tui.chat.backend.DeployBackend: a ready deploy (shown; the app chats through it)
        self.deploy_rec = None  # the deploy starting or ready
        self.use_deploy = False
        self.histories: dict[str, list[dict]] = {}
        self.turn: list[Leg] | None = None  # the legs of the turn under way
        self._ended = False  # its thread is done; the turn is over once every answer shows its end
        self._loading: tuple[str, float] | None = None

    def compose(self):
        yield Static("", id="chat-target")
        yield Static("", id="chat-status")
        yield Static("", id="chat-deploy")
        yield VerticalScroll(id="chat-log")
        yield ChatInput(placeholder="message (Enter sends) · Esc cancels · ctrl+o target · ctrl+b A/B · ? keys",
                    id="chat-input")

    def on_mount(self) -> None:
        self.query_one("#chat-log").anchor()
        self.set_interval(1.0, self._tick)
        redraw_on_theme_change(self, self._show)
        self._show()

    def on_resize(self) -> None:
        """The input's hint, shortened by whole parts to its width (ranks: tui.widgets.style.fit)."""
        parts = ((0, "message (Enter sends)"), (2, " · Esc cancels"), (3, " · ctrl+o target"), (4, " · ctrl+b A/B"),
                 (1, " · ? keys"))
        self.query_one("#chat-input", Input).placeholder = fit([(r, Text(t)) for r, t in parts],
                                                               self.content_size.width - 3).plain

    def focus(self, scroll_visible: bool = True):
        self.query_one("#chat-input", Input).focus(scroll_visible)
        return self

    def feed(self) -> Feed:
        return Feed(self)

    # ------------------------------------------------------------ data down

    def show_run(self, record, folders: list | None) -> None:
        """With each poll: the run's record (None: not a registry run) and its run folders (None: unchanged). The
        base model is the one its checkpoints name, else the run's `--model`."""
        from engine.swift_args import flag_value

        self.record = record
        if folders is not None:
            self.folders = folders
        model = next((f.model for f in self.folders if f.model), None) or self.base_model or (
            flag_value(record.argv, "--model") if record is not None else None)
        if model != self.base_model:
            self.base_model = model
            self._show()

    def reset(self) -> None:
        """Another run is shown."""
        self.record, self.folders = None, []
        self.checkpoint, self.base_model, self.partner = None, None, None
        self._retarget()

    def choose(self, checkpoint) -> None:
        """What the chat talks to: a checkpoint (Enter in the browser, or the picker), None for the base model."""
        if checkpoint is None and self.base_model is None and self.checkpoint is not None:
            self.base_model = self.checkpoint.base_model
        self.checkpoint = checkpoint
        self._retarget()

    def set_partner(self, checkpoint) -> None:
        """A/B: what side A talks to (None: the base model)."""
        self.partner = checkpoint
        self._retarget()

    def set_settings(self, settings: ChatSettings) -> None:
        self.settings = settings
        self._show_status()

    def show_deploy(self, rec, deploy) -> None:
        """A deploy started (`deploy` None until it is ready) or is gone (rec None)."""
        self.deploy_rec, self.deploy = rec, deploy
        if deploy is None:
            self.use_deploy = False
        self._show_status()

    def show_worker(self, loading: str | None, status: str) -> None:
        """The chat worker is loading the base `loading`, or (None) is ready; `status` describes it."""
        self._loading = (loading, time.monotonic()) if loading else None
        self.worker_status = status
        self._show_status()

    def on_chat_pane_worker_state(self, message: WorkerState) -> None:
        self.show_worker(message.loading, message.status)

    # ------------------------------------------------------------ what we talk to

    @property
    def target(self) -> str | None:
        """The path a chat session would load: the chosen adapter/checkpoint, else the base model."""
        return str(self.checkpoint.path) if self.checkpoint is not None else self.base_model

    def current_target(self) -> ChatTarget:
        """The single-chat target (side B in A/B). Raises a SwiftdeckError with one line."""
        if self.checkpoint is not None:
            return for_checkpoint(self.checkpoint)
        if self.base_model:
            return for_base(self.base_model, self.folders, self.record.argv if self.record is not None else None)
        raise TargetError("nothing to chat with yet: pick a checkpoint (Enter in Checkpoints)")

    def _base_of(self, target: ChatTarget) -> ChatTarget:
        return ChatTarget(f"base {Path(str(target.base.get('model'))).name}", target.base)

    def _origin_of(self, target: ChatTarget) -> ChatTarget | None:
        """The LoRA checkpoint the shown run started from (--adapters, e.g. the SFT adapter of a DPO run), when it is
        still there and is not `target` itself: A/B compares against it by default."""
        origin = next((Path(a) for f in self.folders for a in getattr(f, "adapters", ())), None)
        if origin is None or str(origin) == target.folder or not (origin / "adapter_config.json").is_file():
            return None
        return for_checkpoint(origin)

    def legs_targets(self) -> list[tuple[str, ChatTarget, str | None]]:
        """[(side, target, the other side's label)] of the next turn."""
        b = self.current_target()
        if not self.ab:
            return [("main", b, None)]
        a = for_checkpoint(self.partner) if self.partner is not None else self._origin_of(b) or self._base_of(b)
        if a.label == b.label:
            raise TargetError(f"A/B needs two different targets (both are {b.label}): pick a checkpoint with "
                              "Enter in Checkpoints, or side A with ctrl+o")
        if a.base_key != b.base_key:
            raise TargetError(f"A/B runs on one loaded base: {a.label} and {b.label} use different bases "
                              f"({a.base.get('model')} vs {b.base.get('model')})")
        return [("A", a, b.label), ("B", b, a.label)]

    def _targets(self, notify: bool = True) -> list[ChatTarget]:
        """The targets of the next turn; none (after saying why, when `notify`) when there is nothing to talk to."""
        try:
            return [t for _, t, _ in self.legs_targets()]
        except SwiftdeckError as exc:
            if notify:
                self.notify(str(exc), severity="warning", timeout=8)
            return []

    def _retarget(self) -> None:
        """Another target: the conversation starts over (a divider in the log, empty histories)."""
        self.histories.clear()
        log = self.query_one("#chat-log")
        label = " vs ".join(t.label for t in self._targets(notify=False))
        if log.children and label:  # nothing to talk to: no divider (the target line says so)
            log.mount(Static(f"── now: {label} ──", classes="chat-divider"))
        if self.turn is None and not self.ab:
            target = next(iter(self._targets(notify=False)), None)
            if target is not None and target.is_adapter:
                self.post_message(self.Attach(target))
        self._show()

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
            except (SwiftdeckError, ValueError) as exc:
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
            backend = self.deploy.describe() if self.use_deploy and self.deploy else self.worker_status
            status = Text(f"{backend} · {self.settings.describe()}", style=muted)
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

    # ------------------------------------------------------------ a turn

    @on(Input.Submitted, "#chat-input")
    async def _submitted(self, event: Input.Submitted) -> None:
        event.stop()
        prompt = event.value.strip()
        if not prompt:
            return
        if await self.send(prompt):
            event.input.remember(prompt)
            event.input.value = ""

    def _streaming(self) -> bool:
        """True, after a notification, while an answer streams."""
        if self.turn is not None:
            self.notify("an answer is still streaming: Esc cancels it first", severity="warning")
        return self.turn is not None

    async def send(self, prompt: str) -> bool:
        """Start a turn (one answer, or two in A/B). False (with a notification) when it cannot start."""
        if self._streaming():
            return False
        try:
            sides = self.legs_targets()
        except SwiftdeckError as exc:
            self.notify(str(exc), severity="warning", timeout=8)
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
        self.turn, self._ended = legs, False
        await log.mount(user, answers)
        log.anchor()
        self.post_message(self.Send(legs, prompt, self.settings, self.use_deploy and self.deploy is not None,
                                    self.record))
        return True

    def on_chat_pane_turn_done(self, message: TurnDone) -> None:
        message.stop()
        self._ended = True
        self._end_turn()

    def on_chat_message_shown(self, message: ChatMessage.Shown) -> None:
        message.stop()
        self._end_turn()

    def _end_turn(self) -> None:
        """The turn is over when its thread is done (answers saved) and every answer shows its end: the answer
        widgets take the streamed pieces at their own pace, after the thread has posted the last one."""
        legs = self.turn
        if legs is None or not self._ended or not all(leg.widget.shown for leg in legs):
            return
        self.turn = None
        for leg in legs:
            if leg.info.get("finish_reason") in ("stop", "length"):  # a cancelled or failed turn is not kept
                self.histories[leg.side] = [*leg.messages, {"role": "assistant", "content": leg.text}]
        self._show_status()

    # ------------------------------------------------------------ keys

    def action_cancel(self) -> None:
        if self.turn is not None:
            self.post_message(self.Cancel())
        elif self.is_maximized:
            self.screen.minimize()
        elif self.app.focused is self.query_one("#chat-input"):  # leave the input: the dashboard's keys act again
            self.query_one("#chat-log").focus()
        else:
            raise SkipAction()

    def action_clear(self) -> None:
        if self._streaming():
            return
        if self.histories:
            self._clear_transcripts(self._targets(notify=False), self.record)
        self.histories.clear()
        self.query_one("#chat-log").remove_children()
        self.notify("conversation cleared (the transcript keeps it)")

    @work(thread=True, group="chat-transcript")
    def _clear_transcripts(self, targets: list[ChatTarget], record) -> None:
        for t in targets:
            try:
                transcript.append(transcript.path_for(t, record), {"role": "clear", "target": t.label})
            except OSError as exc:
                self.notify(f"transcript not saved: {exc}", severity="warning")

    def action_ab(self) -> None:
        """A/B on, when there are two different targets on one base (else it says why and the chat stays as it
        was, able to send); A/B off: back to the chat's own target (side B), said in a notification."""
        if self._streaming():
            return
        if not self.ab:
            self.ab = True
            try:
                self.legs_targets()
            except SwiftdeckError as exc:
                self.ab = False
                self.notify(f"A/B not started: {exc}", severity="warning", timeout=8)
                return
            self._retarget()
            return
        self.ab = False
        self._retarget()
        label = next((t.label for t in self._targets(notify=False)), None)
        self.notify(f"A/B off: the chat talks to {label} again" if label else "A/B off")

    def action_pick(self) -> None:
        from tui.screens.chat_target import BASE

        side = "side A of the A/B comparison" if self.ab else "the chat"
        chosen = self.partner if self.ab else self.checkpoint
        base = self.base_model or (self.checkpoint.base_model if self.checkpoint is not None else None)
        self.post_message(self.PickRequested("A" if self.ab else "main", f"What {side} talks to", base, self.folders,
                                             str(chosen.path) if chosen is not None else BASE))

    def action_settings(self) -> None:
        self.post_message(self.SettingsRequested(self.settings))

    def action_copy_last(self) -> None:
        answers = [m for m in self.query(ChatMessage) if m.role == "assistant" and m.text]
        if not answers:
            self.notify("no answer to copy yet", severity="warning")
            return
        answers[-1].action_copy()

    def action_export(self) -> None:
        targets = self._targets()
        if targets:
            self._export(targets, self.record)

    @work(thread=True, group="chat-transcript")
    def _export(self, targets: list[ChatTarget], record) -> None:
        for t in targets:
            try:
                md = transcript.export_markdown(transcript.path_for(t, record), t.label)
                self.notify(f"exported the {t.label} transcript to {md}", timeout=10)
            except OSError as exc:
                self.notify(str(exc), severity="warning", timeout=10)

    def action_zoom(self) -> None:
        if self.is_maximized:
            self.screen.minimize()
        else:
            self.screen.maximize(self, container=False)
            self.focus()

    # ------------------------------------------------------------ the identity check, deploy (the app acts)

    def action_identity(self) -> None:
        try:
            target = self.current_target()
        except SwiftdeckError as exc:
            self.notify(str(exc), severity="warning")
            return
        if not target.is_adapter:
            self.notify("the identity check compares the base with a LoRA checkpoint: pick one (Enter in "
                        "Checkpoints)", severity="warning", timeout=8)
            return
        self.post_message(self.IdentityRequested(target))

    def action_deploy(self) -> None:
        if self.deploy_rec is not None:
            self.post_message(self.StopDeployRequested(self.deploy_rec, self.deploy.url if self.deploy else None))
            return
        try:
            target = self.current_target()
        except SwiftdeckError as exc:
            self.notify(str(exc), severity="warning")
            return
        self.post_message(self.DeployRequested(target))

    def action_backend(self) -> None:
        if self.deploy is None:
            self.notify("no deploy is serving: ctrl+r deploys the current target", severity="warning")
            return
        self.use_deploy = not self.use_deploy
        self._show_status()

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
