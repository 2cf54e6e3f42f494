"""`r` on a failed run: "relaunch with these changes". Pick one of the diagnosis' remedies (those that name
a `--flag value` pair; advice-only ones are listed greyed out), or type flags; see exactly what changes
(engine.ops.launch.plan_relaunch: the flags, and --resume_from_checkpoint of the newest resumable checkpoint; the
run's environment and folder are kept) and the full command after engine.ops.launch.check_launch; confirm ->
engine.ops.launch.start -> the dashboard attaches to the new run (dismissed with its RunRecord).

ResumeScreen is the same dialog for `R` on a checkpoint at the run's last step (engine.ops.launch.AtMaxSteps): it says
so and proposes to raise the epochs (or --max_steps), with the same editable flags; the plan is
engine.ops.launch.plan_resume's, as for `swiftdeck resume`."""
from __future__ import annotations

from engine.errors import SwiftdeckError
import re

from rich.text import Text
from textual import on, work
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import Screen
from textual.widgets import Button, Footer, Input, OptionList, Static
from textual.widgets.option_list import Option

from engine.command import TRAINING_KINDS, swift_args_of
from engine.relaunch import remedy_flags
from tui.screens.confirm import leave
from tui.screens.launch import check_text
from tui.widgets.failure import applicable, clean, evidence_lines
from tui.widgets.style import theme_color


_VALUE = re.compile(r"[^\s('\"]+")  # one value as engine.relaunch.remedy_flags reads it


class RelaunchError(SwiftdeckError):
    """Why this run cannot be relaunched (one line)."""


def flags_of(remedy: str | None) -> str:
    """The `--flag value` pairs a remedy starts with, as typed in the flags field."""
    return " ".join(f"{flag} {value}" for flag, value in remedy_flags(remedy or ""))


def parse_changes(text: str) -> str:
    """Validate the flags field: `--flag value` pairs only, one plain value each (what engine.relaunch applies).
    Returns them normalised."""
    tokens = text.split()
    pairs = []
    for i in range(0, len(tokens), 2):
        flag, value = tokens[i], tokens[i + 1] if i + 1 < len(tokens) else None
        if not flag.startswith("--"):
            raise RelaunchError(f"flags must be `--flag value` pairs: {flag!r} is not a --flag")
        if value is None or value.startswith("--") or not _VALUE.fullmatch(value):
            raise RelaunchError(f"flags must be `--flag value` pairs: {flag} needs one plain value"
                                + (f", not {value!r}" if value else ""))
        pairs.append(f"{flag} {value}")
    return " ".join(pairs)


def can_relaunch(rec) -> None:
    """Raise RelaunchError when `rec` is not a run that can be relaunched from the dashboard."""
    if rec is None:
        raise RelaunchError("this run was not started by swiftdeck, so its command line is unknown")
    if rec.kind not in TRAINING_KINDS or swift_args_of(rec) is None:
        raise RelaunchError(f"run {rec.id} is not a `swift sft|pt|rlhf` run: only training runs are relaunched")
    if rec.status not in ("failed", "lost"):
        raise RelaunchError(f"run {rec.id} is {rec.status}, not failed: nothing to relaunch (to continue a run, "
                            "resume from a checkpoint with R in the Checkpoints pane)")


class RelaunchScreen(Screen):
    OWNS_KEYS = True  # the dashboard's letter keys are off while the dialog is up (SwiftdeckApp.check_action)
    BINDINGS = [
        Binding("escape", "cancel", "Cancel"),
        Binding("ctrl+l", "relaunch", "Relaunch", priority=True),
    ]

    def __init__(self, rec, diagnosis: dict | None) -> None:
        super().__init__()
        self._allowed(rec)
        self.rec = rec
        self.diagnosis = diagnosis or {}
        self.remedies: list[str] = list(self.diagnosis.get("remedies") or [])
        self.plan = None  # (Command, changes) for the flags shown
        self.check = None  # engine.ops.launch.LaunchCheck of that command
        self._planned_for: str | None = None
        self._picked = ""  # the flags of the remedy picked last: typed ones beyond it are changes to keep

    # ------------------------------------------------------------ what differs between relaunch and resume

    VERB = "Relaunch"
    DONE = "relaunched"  # "not relaunched", "nothing is relaunched"
    NO_CHANGE = "0. no change: relaunch as it was (resumes from the newest checkpoint)"
    REMEDIES = "Remedies — those that name a flag and a value can be applied; greyed-out ones are advice:"

    def _allowed(self, rec) -> None:
        can_relaunch(rec)

    def _title(self) -> str:
        rec = self.rec
        return f"Relaunch {rec.id}" + (f" ({rec.label})" if rec.label else "") + " with these changes"

    def _plan(self, changes: str):
        from engine.ops import launch

        return launch.plan_relaunch(self.rec, changes)

    def _notes(self) -> list[str]:
        return [f"relaunch of {self.rec.id}"]

    def compose(self):
        yield Static(self._title(), id="relaunch-title")
        with VerticalScroll(id="relaunch-body"):
            yield Static(self._diagnosis_text(), id="relaunch-diagnosis")
            yield Static(self._evidence_text(), id="relaunch-evidence")
            yield Static(self.REMEDIES, classes="relaunch-label")
            options = [Option(self.NO_CHANGE, id="r0")]
            options += [Option(f"{n}. {clean(r)}", id=f"r{n}", disabled=not applicable(r))
                        for n, r in enumerate(self.remedies, 1)]
            yield OptionList(*options, id="relaunch-remedies")
        with Vertical(id="relaunch-bottom"):
            yield Static("flags to change (`--flag value` pairs; edit freely):", classes="relaunch-label")
            yield Input(placeholder="e.g. --per_device_train_batch_size 4", id="relaunch-flags")
            yield Static("", id="relaunch-changes")
            yield Static("", id="relaunch-command")
            with Horizontal(id="relaunch-buttons"):
                yield Button(f"{self.VERB} (ctrl+l)", id="relaunch", variant="success")
                yield Button("Cancel (esc)", id="cancel")
        yield Footer()

    def on_mount(self) -> None:
        options = self.query_one(OptionList)
        first = next((n for n, r in enumerate(self.remedies, 1) if applicable(r)), 0)
        options.highlighted = first
        options.focus()
        self._pick(first)

    def _diagnosis_text(self) -> Text:
        d = self.diagnosis
        err, warn = (theme_color(self.app, n) for n in ("error", "warning"))
        text = Text()
        status = f"✖ {self.rec.status}" + (f" (exit code {self.rec.exit_code})" if self.rec.exit_code is not None
                                           else "")
        text.append(status, f"bold {err}")
        if d.get("kind"):
            text.append(" · ")
            text.append(d["kind"], f"bold {warn}")
            text.append(": " + clean(d.get("summary", "")), "bold")
        return text

    def _evidence_text(self) -> Text:
        lines = evidence_lines(self.diagnosis.get("evidence", ""), 4)
        return Text("\n".join(f"  {line}" for line in lines), theme_color(self.app, "foreground-muted"))

    # ------------------------------------------------------------ choosing

    @on(OptionList.OptionHighlighted)
    @on(OptionList.OptionSelected)
    def _option(self, event) -> None:
        self._pick(int(event.option.id[1:]))

    def _pick(self, n: int) -> None:
        flags = flags_of(self.remedies[n - 1]) if n else ""
        self._picked = flags
        field = self.query_one("#relaunch-flags", Input)
        if field.value != flags:
            field.value = flags  # -> Input.Changed -> _replan
        elif self._planned_for is None:
            self._replan(flags)

    @on(Input.Changed, "#relaunch-flags")
    def _flags_changed(self, event: Input.Changed) -> None:
        self._replan(event.value)

    def _replan(self, text: str) -> None:
        self.plan = self.check = None
        self._planned_for = text
        muted = theme_color(self.app, "foreground-muted")
        try:
            changes = parse_changes(text)
        except RelaunchError as exc:
            self.query_one("#relaunch-changes", Static).update(Text(str(exc), theme_color(self.app, "error")))
            self.query_one("#relaunch-command", Static).update("")
            return
        self.query_one("#relaunch-changes", Static).update("")
        self.query_one("#relaunch-command", Static).update(
            Text("checking the command against the installed ms-swift …", muted))
        self._plan_worker(text, changes)

    @work(thread=True, exclusive=True, group="relaunch-plan")
    def _plan_worker(self, text: str, changes: str) -> None:
        from engine.ops import launch

        plan = check = None
        try:
            plan = self._plan(changes)
            check = launch.check_launch(plan[0], datasets=False)
            check.changes = plan[1]
            error = ""
        except launch.LaunchRefused as exc:  # e.g. a resume that would still train nothing
            plan, error = None, str(exc)
        except Exception as exc:  # introspection failed, an odd record: one line
            error = f"could not check the command: {exc}"
        self.app.call_from_thread(self._planned, text, plan, check, error)

    def _planned(self, text: str, plan, check, error: str) -> None:
        if text != self._planned_for:
            return  # the flags changed meanwhile; a newer check is on its way
        self.plan, self.check = plan, check
        err = theme_color(self.app, "error")
        changes = Text()
        if plan is not None:
            changes.append("what changes:", "bold")
            for change in plan[1]:
                changes.append(f"\n  {change}")
        self.query_one("#relaunch-changes", Static).update(changes)
        out = Text()
        if check is not None:
            out.append("command: ", "bold")
            out.append(check.command.display() + "\n")
            out.append_text(check_text(self.app, check.args))
        if error:
            out.append(error, err)
        self.query_one("#relaunch-command", Static).update(out)

    # ------------------------------------------------------------ launching

    def action_cancel(self) -> None:
        """Leave the dialog; with typed flags, ask first."""
        leave(self, self.query_one("#relaunch-flags", Input).value != self._picked,
              f"The flags typed are lost; nothing is {self.DONE}.")

    @on(Button.Pressed)
    def _button(self, event: Button.Pressed) -> None:
        if event.button.id == "cancel":
            self.action_cancel()
        elif event.button.id == "relaunch":
            self.action_relaunch()

    def action_relaunch(self) -> None:
        field = self.query_one("#relaunch-flags", Input).value
        if self.check is None or self._planned_for != field:
            shown = text_of_static(self.query_one("#relaunch-command", Static))
            self.notify(f"not {self.DONE}: {shown}" if shown and not shown.startswith("checking")
                        else "the command is still being checked (or the flags are not valid)", severity="warning")
            return
        if not self.check.ok:
            self.notify(f"not {self.DONE}: {self.check.blocker}", severity="error", timeout=10)
            return
        self.query_one("#relaunch", Button).disabled = True
        self._start(self.plan, self.check)

    @work(thread=True, exclusive=True, group="relaunch-start")
    def _start(self, plan, check) -> None:
        from engine.ops import launch

        try:
            new = launch.start(check, notes=self._notes())
        except Exception as exc:
            self.app.call_from_thread(self._failed, f"{self.VERB.lower()} failed: {exc}")
            return
        self.app.call_from_thread(self.dismiss, new)

    def _failed(self, message: str) -> None:
        self.query_one("#relaunch", Button).disabled = False
        self.notify(message, severity="error", timeout=10)


def text_of_static(widget: Static) -> str:
    content = widget.render()
    return content.plain if isinstance(content, Text) else str(content)


class ResumeScreen(RelaunchScreen):
    """`R` on a checkpoint at the run's last step: a resume would train nothing, so the dialog says so and proposes
    to raise the end (engine.ops.launch.AtMaxSteps.flags), editable as in the relaunch dialog."""

    VERB = "Resume"
    DONE = "resumed"
    NO_CHANGE = "0. no change: resume as it is (trains nothing: the run already reached its last step)"
    REMEDIES = "To train more, raise the end of the run (edit the flags below freely):"

    def __init__(self, rec, checkpoint, refusal) -> None:
        self.checkpoint = checkpoint
        self.refusal = refusal  # engine.ops.launch.AtMaxSteps
        super().__init__(rec, {"summary": str(refusal), "remedies": [f"raise the end: {refusal.flags}"]})

    def _allowed(self, rec) -> None:
        pass  # plan_resume refuses what cannot be resumed (shown in the dialog)

    def _title(self) -> str:
        rec = self.rec
        return f"Resume {rec.label or rec.id} from {self.checkpoint.name}: the run already reached max_steps"

    def _plan(self, changes: str):
        from engine.ops import launch

        return launch.plan_resume(self.rec, self.checkpoint, changes)

    def _notes(self) -> list[str]:
        return [f"resume of {self.rec.id} from {self.checkpoint.name}"]

    def _diagnosis_text(self) -> Text:
        text = Text()
        text.append("already at max_steps", f"bold {theme_color(self.app, 'warning')}")
        text.append(": " + str(self.refusal))
        return text

    def _evidence_text(self) -> Text:
        return Text("")
