"""`n`: the new-run form. The self-cognition tutorial's settings are the preset; it shows the exact command, checks
it with engine.ops.launch (arguments against the installed ms-swift and the dataset check, in a worker: the first
check asks ms-swift in a subprocess), launches through it and hands the new run back to the dashboard (dismiss with
the RunRecord)."""
from __future__ import annotations

import dataclasses
from pathlib import Path

from rich.text import Text
from textual import on, work
from textual.binding import Binding
from textual.containers import Grid, Horizontal, VerticalScroll
from textual.screen import Screen
from textual.widgets import Button, Footer, Input, Label, Select, Static

from engine.command import Command
from tui.actions import KINDS, ActionError, LaunchForm, build_launch
from tui.screens.confirm import leave
from engine.ops.datasets import check_datasets
from tui.widgets.style import theme_color

FIELDS = (  # (attribute, label, placeholder)
    ("model", "model", "local folder (absolute) or hub id, e.g. Qwen/Qwen2.5-7B-Instruct"),
    ("dataset", "dataset", "a .json/.jsonl file, or a hub dataset id"),
    ("output_dir", "output dir", "output"),
    ("lora_rank", "LoRA rank", ""),
    ("lora_alpha", "LoRA alpha", ""),
    ("target_modules", "target modules", ""),
    ("learning_rate", "learning rate", ""),
    ("epochs", "epochs", ""),
    ("batch_size", "batch size", "per device"),
    ("grad_accum", "grad accumulation", ""),
    ("max_length", "max length", ""),
    ("torch_dtype", "dtype", "auto = bfloat16 on GPU, float32 on CPU"),
    ("visible_gpus", "visible GPUs", "CUDA_VISIBLE_DEVICES, e.g. 0,1 (empty: all)"),
    ("extra", "extra args", "more swift sft flags, e.g. --split_dataset_ratio 0.1"),
    ("label", "label", "a name for this run (optional)"),
    ("swift", "ms-swift env", "empty: {current}; another venv or conda env: its bin/swift"),
)


class LaunchScreen(Screen):
    OWNS_KEYS = True  # the dashboard's letter keys are off while the form is up (SwiftdeckApp.check_action)
    BINDINGS = [
        Binding("escape", "cancel", "Cancel"),
        Binding("ctrl+k", "check", "Check", priority=True),  # over the Input's own ctrl+k (delete to the end)
        Binding("ctrl+l", "launch", "Launch", priority=True),
        Binding("ctrl+f", "fix", "Apply fixes", priority=True),  # shown while the check has fixes
        Binding("ctrl+g", "confirm_gpus", "Launch on the busy GPU", priority=True),  # shown while a GPU is busy
    ]
    # the buttons sit below the scrolling command/check box, so a long check never pushes them off the screen
    DEFAULT_CSS = """
    LaunchScreen #launch-bottom { overflow-y: auto; }
    LaunchScreen #launch-buttons { background: $panel; padding: 0 1; }
    """

    def __init__(self, *, gpu: bool, cwd: Path | None = None, form: LaunchForm | None = None) -> None:
        super().__init__()
        self.gpu = gpu
        self.cwd = Path(cwd or Path.cwd())
        self.initial = form or LaunchForm()
        self.checked = None  # (command, engine.ops.launch.LaunchCheck) of the last check
        self.plan: Command | None = None
        self.plan_error = ""  # why the fields make no command (names the field), when plan is None

    def compose(self):
        yield Static("New run — swift sft with LoRA (preset: the self-cognition tutorial)", id="launch-title")
        with VerticalScroll(id="launch-form"):
            with Grid(id="launch-grid"):
                yield Label("kind", classes="launch-label")
                yield Select([(k, k) for k in KINDS], value=self.initial.kind, allow_blank=False, id="f-kind")
                for name, label, placeholder in FIELDS:
                    yield Label(label, classes="launch-label")
                    yield Input(getattr(self.initial, name), placeholder=placeholder.format(current=current_swift()),
                                id=f"f-{name}")
            yield Static("", id="dataset-check")
        with VerticalScroll(id="launch-bottom"):
            yield Static("", id="launch-command")
            yield Static("", id="launch-check")
        with Horizontal(id="launch-buttons"):
            yield Button("Check (ctrl+k)", id="check")
            yield Button("Apply fixes (ctrl+f)", id="fix", variant="warning")
            yield Button("Launch (ctrl+l)", id="launch", variant="success")
            yield Button("Launch anyway: GPU busy (ctrl+g)", id="confirm-gpus", variant="error")
            yield Button("Cancel (esc)", id="cancel")
        yield Footer()

    def on_mount(self) -> None:
        self._show_fix(False)
        self._show_confirm(False)
        self.query_one("#f-model", Input).focus()
        self._refresh_plan()
        self._check_dataset(self.initial.dataset, self.rlhf_type)

    def form(self) -> LaunchForm:
        return LaunchForm(kind=self.kind, **{f.name: self.query_one(f"#f-{f.name}", Input).value
                                             for f in dataclasses.fields(LaunchForm) if f.name != "kind"})

    @property
    def kind(self) -> str:
        return str(self.query_one("#f-kind", Select).value)

    @property
    def rlhf_type(self) -> str | None:
        """The dataset check's --rlhf_type (it checks the columns the type needs)."""
        return self.kind.partition("/")[2] or None

    @on(Select.Changed, "#f-kind")
    def _kind_changed(self, event: Select.Changed) -> None:
        self.checked = None
        self._show_fix(False)
        self._show_confirm(False)
        self.query_one("#launch-check", Static).update("")
        self.query_one("#launch-title", Static).update(
            f"New run — swift {self.kind.replace('/', ' --rlhf_type ')} with LoRA (preset: the self-cognition "
            "tutorial's settings)")
        self._refresh_plan()
        self._check_dataset(self.query_one("#f-dataset", Input).value, self.rlhf_type)

    @on(Input.Changed)
    def _changed(self, event: Input.Changed) -> None:
        self.checked = None
        self._show_fix(False)
        self._show_confirm(False)
        self.query_one("#launch-check", Static).update("")
        self._refresh_plan()
        if event.input.id == "f-dataset":
            self._check_dataset(event.value, self.rlhf_type)

    def _refresh_plan(self) -> None:
        out = self.query_one("#launch-command", Static)
        try:
            self.plan = build_launch(self.form(), gpu=self.gpu, cwd=self.cwd)
        except ActionError as exc:
            self.plan, self.plan_error = None, str(exc)
            out.update(Text(f"command: {exc}", style=theme_color(self.app, "warning")))
            return
        out.update(Text.assemble(("command: ", "bold"), self.plan.display()))

    # ------------------------------------------------------------ dataset check (engine.dataset_check)

    @work(thread=True, exclusive=True, group="dataset-check")
    def _check_dataset(self, value: str, rlhf_type: str | None = None) -> None:
        """As the user types: each keystroke cancels the check before (exclusive), which stops reading at once.
        `rlhf_type`: the columns that `swift rlhf --rlhf_type` needs are checked too."""
        from textual.worker import get_current_worker

        from engine.dataset_check import CheckCancelled

        me = get_current_worker()
        try:
            lines = check_datasets(value.split(), self.cwd, cancel=lambda: me.is_cancelled,
                                   rlhf_type=rlhf_type)[1] if value.strip() else []
        except CheckCancelled:
            return
        if not me.is_cancelled:
            self.app.call_from_thread(self._show_datasets, lines)

    def _show_datasets(self, lines: list[tuple[str, str]]) -> None:
        self.query_one("#dataset-check", Static).update(datasets_text(self.app, lines))

    # ------------------------------------------------------------ check and launch

    def action_check(self) -> None:
        self._run_check(launch=False)

    def action_launch(self) -> None:
        self._run_check(launch=True)

    def _show_fix(self, shown: bool) -> None:
        self.query_one("#fix").display = shown
        self.refresh_bindings()  # ctrl+f in the footer with the button

    def _show_confirm(self, shown: bool) -> None:
        self.query_one("#confirm-gpus").display = shown
        self.refresh_bindings()

    def action_fix(self) -> None:
        self._run_check(launch=False, fixes=True)

    def action_confirm_gpus(self) -> None:
        """Launch the checked command onto the GPUs the preflight found busy: the user confirms what it said."""
        if self.checked is None or self.checked[0] != self.plan or not needs_confirm(self.checked[1]):
            self._show_confirm(False)
            self.notify("nothing to confirm: check the form again (ctrl+k)", severity="warning")
            return
        plan, check = self.checked
        self.query_one("#launch-check", Static).update("launching onto the busy GPU(s) as confirmed …")
        self._start_confirmed(plan, check.confirmed())

    @work(thread=True, exclusive=True, group="launch")
    def _start_confirmed(self, plan: Command, check) -> None:
        from engine.ops import launch as ops

        try:
            rec = ops.start(check)
        except Exception as exc:
            self.app.call_from_thread(self._show_check, check, f"launch failed: {exc}", plan)
            return
        self.app.call_from_thread(self.dismiss, rec)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """ctrl+f is in the footer only while the check proposes fixes, ctrl+g only while a GPU is busy."""
        button = {"fix": "#fix", "confirm_gpus": "#confirm-gpus"}.get(action)
        if button:
            return bool(self.is_mounted and self.query(button) and self.query_one(button).display)
        return True

    def action_cancel(self) -> None:
        """Leave the form; with changes, ask first."""
        leave(self, self.form() != self.initial, "The form's changes are lost; no run is started.")

    @on(Button.Pressed)
    def _button(self, event: Button.Pressed) -> None:
        if event.button.id == "cancel":
            self.action_cancel()
        elif event.button.id == "check":
            self._run_check(launch=False)
        elif event.button.id == "launch":
            self._run_check(launch=True)
        elif event.button.id == "fix":
            self._run_check(launch=False, fixes=True)
        elif event.button.id == "confirm-gpus":
            self.action_confirm_gpus()

    def _run_check(self, *, launch: bool, fixes: bool = False) -> None:
        if self.plan is None:  # what blocks it, naming the field
            message = f"{'not launched' if launch else 'not checked'}: {self.plan_error}"
            self.query_one("#launch-check", Static).update(Text(message, theme_color(self.app, "error")))
            self.notify(message, severity="warning")
            return
        self.query_one("#launch-check", Static).update("checking the arguments against the installed ms-swift …")
        self._check_worker(self.plan, launch, fixes, self.checked)

    @work(thread=True, exclusive=True, group="launch")
    def _check_worker(self, plan: Command, launch: bool, fixes: bool, previous) -> None:
        from engine.ops import launch as ops

        check = previous[1] if previous is not None and previous[0] == plan else None
        try:
            if check is None:
                check = ops.check_launch(plan)
            if fixes and check.fixable:
                check = check.with_fixes()
        except Exception as exc:  # introspection failed: say so in one line
            self.app.call_from_thread(self._show_check, None, f"could not check the arguments: {exc}")
            return
        self.app.call_from_thread(self._show_datasets, check.datasets)
        blocked = "" if check.datasets_ok and not (check.args.ok and check.gpu_blocker) else \
            ("not launched: " if launch else "a launch is blocked: ") + check.blocker
        self.app.call_from_thread(self._show_check, check, blocked, plan, launch and check.ok)
        if launch and check.ok:
            try:
                rec = ops.start(check)
            except Exception as exc:
                self.app.call_from_thread(self._show_check, check, f"launch failed: {exc}", plan)
                return
            self.app.call_from_thread(self.dismiss, rec)

    def _show_check(self, check, error: str, plan: LaunchPlan | None = None, launching: bool = False) -> None:
        out = self.query_one("#launch-check", Static)
        err = theme_color(self.app, "error")
        if check is None:
            out.update(Text(error, style=err))
            return
        if plan is not None and plan is self.plan:
            self.checked = (plan, check)  # a later Launch reuses this check (and its applied fixes)
        text = Text()
        if check.command != self.plan:
            text.append("checked command: ", "bold")
            text.append(check.command.display() + "\n")
        text.append_text(check_text(self.app, check.args, launching=launching and not error))
        pre = check.preflight
        if pre is not None and (pre.gpu_available or pre.busy or pre.problems):  # no GPU: the run says so itself
            text.append_text(preflight_text(self.app, pre))
        if error:
            text.append(("\n" if text.plain and not text.plain.endswith("\n") else "") + error, err)
        self._show_fix(any(p.fix for p in check.args.problems))
        self._show_confirm(needs_confirm(check))
        out.update(text)
        if error:  # said where it is seen too, even when the check's text is scrolled away
            self.notify(error, severity="error", timeout=10)


def needs_confirm(check) -> bool:
    """Whether only GPUs that other processes fill stand between this check and a launch (the user may confirm)."""
    pre = check.preflight
    return bool(check.args.ok and check.datasets_ok and pre is not None and pre.busy and not pre.problems
                and not check.gpus_confirmed)


def preflight_text(app, pre) -> Text:
    """engine.preflight's lines (GPUs and who else is on them, disk, the memory estimate), a busy GPU in red."""
    colors = {"busy": "error", "problem": "error", "warning": "warning"}
    text = Text()
    for level, line in pre.lines():
        text.append(f"\npreflight: {line}", theme_color(app, colors.get(level, "foreground-muted")))
    return text


def current_swift() -> str:
    """The `swift` the form's runs use when its ms-swift env field is empty (no subprocess)."""
    from engine import swift_env

    try:
        return swift_env.selected().swift
    except swift_env.SwiftEnvError as exc:
        return str(exc)


def check_text(app, check, *, launching: bool = False) -> Text:
    """engine.swift_args' verdict: what it changed (notes), what blocks a launch (problems), or OK."""
    warn, ok, err = (theme_color(app, n) for n in ("warning", "success", "error"))
    text = Text()
    for note in check.notes:
        text.append(f"note: {note}\n", warn)
    for p in check.problems:
        text.append(f"problem: {p.message}", err)
        if p.suggestions:
            text.append(f" (did you mean {', '.join(p.suggestions)}?)")
        if p.fix:
            text.append(f"  fix: {' '.join(p.fix)}")
        text.append("\n")
    if check.ok:
        text.append("✔ arguments OK" + (" — launching …" if launching else ""), ok)
    return text


# ---------------------------------------------------------------- datasets (check-dataset before every launch)


def datasets_text(app, lines: list[tuple[str, str]]) -> Text:
    colors = {"ok": "success", "fail": "error", "error": "error", "warning": "warning", "info": "foreground-muted"}
    text = Text()
    for i, (level, line) in enumerate(lines):
        text.append(("\n" if i else "") + line, theme_color(app, colors.get(level, "foreground")))
    return text
