"""The swiftdeck dashboard (Textual). A client of engine/ only: it reads files and the registry, and asks the
engine to start/stop runs. Quitting it never touches a run.

All file reading happens on worker threads (RunWatch.poll once a second, GPU sampling once a second); the UI
thread only applies the results, so a log burst costs one repaint per poll, and drawing never waits on NVML. A tick
whose previous read is still running is skipped (one reader per RunWatch and per GpuFeed, never two at once).

Panes post requests up (CheckpointsPane.Act/Merge/Chosen, the ChatPane's requests: tui/chat/jobs.py) and the app
acts, in its workers, through engine.ops and the chat session; what the panes show comes down by method calls.
"""
from __future__ import annotations

import time
from functools import partial
from pathlib import Path
from typing import Callable

from textual import on, work
from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.widgets import Footer, Static
from textual.worker import get_current_worker

import themes
from tui import listkeys, settings, shortcuts
from engine.errors import SwiftdeckError
from engine.ops import checkpoints as ckpt_ops
from engine.ops import jobs
from engine.ops import launch as launch_ops
from tui.actions import fmt_bytes
from tui.chat.jobs import ChatJobs
from tui.chat.session import ChatSession
from tui import endnotice
from tui.gpufeed import GpuFeed
from tui.model import RunSource, RunWatch, Update
from tui.screens.confirm import ConfirmScreen
from tui.screens.help import HelpScreen
from tui.screens.launch import LaunchScreen
from tui.screens.leftovers import LeftoversScreen
from tui.screens.relaunch import RelaunchError, RelaunchScreen
from tui.screens.runs import RunListing, RunsScreen
from tui.widgets.chat import ChatPane
from tui.widgets.checkpoints import CheckpointsPane
from tui.widgets.gpu import GpuPane
from tui.widgets.failure import FailureCard
from tui.widgets.header import RunHeader
from tui.widgets.job import JobPane
from tui.widgets.log import LogPane, LogView
from tui.widgets.loss import LossPane
from tui.workers import at_work

VIEWS = (("train", "Loss + Log"), ("gpu", "GPU"), ("checkpoints", "Checkpoints"), ("chat", "Chat"))

# --readonly: the actions (of the app, the checkpoints pane, the chat pane) that start, stop, delete, strip, merge,
# deploy, launch, resume or relaunch, and what the refusal calls them. Hidden from the footer and the palette;
# refused with a notification when invoked anyway (a key, a message).
READONLY_REFUSED = {
    "new_run": "launching a run", "clone": "launching a run", "relaunch": "relaunching a run",
    "stop_run": "stopping a run", "leftovers": "stopping leftover processes", "resume": "resuming training",
    "delete": "deleting a checkpoint", "strip": "stripping optimizer state", "merge": "merging a LoRA", "deploy": "deploying (or stopping a deploy)",
}


# The palette's words for a key (by its binding's action); a key not here is listed under its binding's description.
PALETTE = {
    "runs": ("Switch run", "List every known run and open one"),
    "new_run": ("New run", "Open the launch form (swift sft with LoRA)"),
    "clone": ("Clone this run", "Open the launch form filled with the arguments of the run shown"),
    "stop_run": ("Stop run", "Gracefully stop the run shown"),
    "log('filter')": ("Filter log", "Filter the log by text and level"),
    "log('traceback')": ("Jump to Traceback", "Scroll the log to the first Traceback"),
    "toggle_follow": ("Toggle log follow", "Follow the end of the log, or pause"),
    "smoothing(1)": ("More smoothing", "Raise the loss EMA weight"),
    "smoothing(-1)": ("Less smoothing", "Lower the loss EMA weight"),
    "choose": ("Chat with checkpoint", "Pick the checkpoint under the cursor for chat"),
    "resume": ("Resume from checkpoint", "Resume training from the checkpoint under the cursor"),
    "delete": ("Delete checkpoint", "Delete the checkpoint under the cursor"),
    "strip": ("Strip optimizer state", "Free the optimizer state of the checkpoint under the cursor"),
    "merge": ("Merge LoRA", "Merge the checkpoint under the cursor into a full model"),
    "relaunch": ("Relaunch with these changes", "Failed run: apply a remedy, resume from its newest checkpoint"),
    "leftovers": ("Leftover processes", "Processes of earlier runs still alive: list, stop"),
    "disk": ("Disk usage", "Sizes of the runs and checkpoints of this output folder, free space; prune"),
    "help": ("Help", "Every key"),
    "copy": ("Copy command or checkpoint path", "The swift command of the run shown, or (in Checkpoints) the path "
             "under the cursor, to the clipboard (OSC 52)"),
    "pager": ("Open log in $PAGER", "The whole console log in $PAGER (less); the dashboard comes back after"),
    **{f"view('{key}')": (f"Show {title}", f"Narrow screens: show the {title} view") for key, title in VIEWS},
}
PALETTE_SKIP = {"quit", "close_filter", *(b.action for b in listkeys.BINDINGS)}  # Textual's palette has Quit; Esc closes the filter where it is open


def _palette_action(callback) -> str | None:
    """The action a palette entry runs: an `action_X` method, `run_action(X)` or `_pane_action(pane, X)`."""
    from textual.actions import parse

    if isinstance(callback, partial):
        return parse(callback.args[-1])[1]
    name = getattr(callback, "__name__", "")
    return name.removeprefix("action_") if name.startswith("action_") else None


class SwiftdeckApp(ChatJobs, App):
    TITLE = "swiftdeck"
    CSS_PATH = str(themes.TCSS)
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (120, "-wide")]
    ESCAPE_TO_MINIMIZE = False  # Esc cancels a chat answer; the chat pane un-zooms itself (ctrl+z)
    VERTICAL_BREAKPOINTS = [(0, "-short"), (36, "-tall")]
    BINDINGS = [
        Binding("q", "quit", "Quit"),
        Binding("question_mark", "help", "Help"),
        Binding("w", "runs", "Runs"),
        Binding("n", "new_run", "New run"),
        Binding("C", "clone", "Clone this run", show=False),
        Binding("S", "stop_run", "Stop run"),
        Binding("slash", "log('filter')", "Filter log"),
        Binding("t", "log('traceback')", "Jump to Traceback", show=False),
        Binding("left_square_bracket", "smoothing(-1)", "Less loss smoothing", show=False),
        Binding("right_square_bracket", "smoothing(1)", "More loss smoothing", show=False),
        Binding("1", "view('train')", "Loss+Log", show=False),
        Binding("2", "view('gpu')", "GPU", show=False),
        Binding("3", "view('checkpoints')", "Checkpoints", show=False),
        Binding("4", "view('chat')", "Chat", show=False),
        Binding("r", "relaunch", "Relaunch with changes", show=False),
        Binding("L", "leftovers", "Leftover processes", show=False),
        Binding("u", "disk", "Disk usage", show=False),
        Binding("y", "copy", "Copy the command (or checkpoint path)", show=False),
        Binding("o", "pager", "Open the whole log in $PAGER", show=False),
        *listkeys.BINDINGS,  # j/k, g/G, Home/End in every list
    ]

    def __init__(self, source: RunSource | None = None, *, output_dir: Path | None = None,
                 theme: str | None = None, clock: Callable[[], float] = time.time,
                 gpu_feed: GpuFeed | None = None, poll_s: float = 1.0, gpu_s: float = 1.0,
                 remember_theme: bool = True, check_leftovers: bool = True, readonly: bool = False) -> None:
        super().__init__()
        for t in themes.THEMES:
            self.register_theme(t)
        saved = settings.load().get("theme") if remember_theme else None
        wanted = theme or saved or themes.DEFAULT
        self.theme = wanted if wanted in self.available_themes else themes.DEFAULT
        self.remember_theme = remember_theme
        self.output_dir = output_dir
        self.clock = clock
        self.gpu_feed = gpu_feed
        self.poll_s, self.gpu_s = poll_s, gpu_s
        self.view_name = "train"
        self.watch = RunWatch(source, clock)
        self.end_watch = endnotice.EndWatch()  # runs of the registry that end: a toast, the bell, OSC 9/777
        self.chat = ChatSession()  # the chat worker process and the deploy the chat pane talks through
        self.last_gpu_view = None
        self.run_listing: RunListing | None = None  # the run switcher's list (action_runs)
        self.readonly = readonly  # watch only: see READONLY_REFUSED
        # on start: offer to stop processes of earlier runs still alive
        self.check_leftovers = check_leftovers and not readonly

    # ------------------------------------------------------------ --readonly

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """Textual asks before showing a key in the footer or running it; the panes ask here too. A screen that
        owns its keys (a form, a dialog: OWNS_KEYS) turns the dashboard's own keys off while it is on top: there
        letters type or do nothing, and the footer lists only the screen's keys."""
        if getattr(self.screen, "OWNS_KEYS", False) and action in self._table_actions() - listkeys.ACTIONS:
            return False
        return not (self.readonly and action in READONLY_REFUSED)

    @classmethod
    def _table_actions(cls) -> set[str]:
        """The action names of the dashboard's own key table (BINDINGS)."""
        from textual.actions import parse

        return {parse(b.action)[1] for b in cls.BINDINGS if isinstance(b, Binding)}

    def refused(self, action: str) -> bool:
        """True, after a notification, when --readonly refuses `action`."""
        if self.check_action(action, ()):
            return False
        self.notify(f"read-only dashboard: {READONLY_REFUSED[action]} is turned off", severity="warning")
        return True

    async def run_action(self, action, default_namespace=None, namespaces=None) -> bool:
        """A refused key says so instead of doing nothing."""
        from textual.actions import parse

        if self.readonly and isinstance(action, str) and self.refused(parse(action)[1]):
            return True
        return await super().run_action(action, default_namespace, namespaces)

    # ------------------------------------------------------------ layout

    def compose(self):
        refused = frozenset(READONLY_REFUSED) if self.readonly else frozenset()
        yield RunHeader(id="header", readonly=self.readonly)
        yield FailureCard(id="failure")
        yield Static("", id="viewbar")
        with Horizontal(id="main"):
            with Vertical(id="left"):
                yield GpuPane(id="gpu", classes="pane")
                yield CheckpointsPane(id="checkpoints", classes="pane", refused=refused)
                yield ChatPane(id="chat", classes="pane", refused=refused)
            with Vertical(id="right"):
                yield JobPane(id="job", classes="pane")
                yield LossPane(id="loss", classes="pane")
                yield LogPane(id="log", classes="pane")
        yield Footer()

    def on_mount(self) -> None:
        if self.remember_theme:
            self.theme_changed_signal.subscribe(self, lambda theme: settings.save(theme=theme.name))
        self.main.query_one(LogPane).set_store(self.watch.log)
        self.chat_pane.show_worker(None, self.chat.worker.describe())
        self.main.query_one(FailureCard).set_screen_size(self.size)
        self._layout()
        # one timer wakes the poll, the GPU sampling and the end notices together, so a second draws one frame
        if self.gpu_s == self.poll_s:
            self.set_interval(self.poll_s, self._second)
        else:
            self.set_interval(self.poll_s, lambda: (self._tick(), self._ends_tick()))
            self.set_interval(self.gpu_s, self._gpu_tick)
        self._second()
        self.main.query_one(LogView).focus()
        self.main.watch(self.main, "focused", self._focus_moved)  # (self.watch is the RunWatch)
        self._adopt_deploy()
        if self.check_leftovers:
            self._startup_leftovers()

    def on_resize(self, event) -> None:
        self._layout(event.size.width)
        self.main.query_one(FailureCard).set_screen_size(event.size)

    @property
    def main(self):
        """The dashboard screen (queries must not go to a dialog on top of it)."""
        return self.screen_stack[0]

    @property
    def narrow(self) -> bool:
        return getattr(self, "_narrow", self.size.width < 120)

    def _layout(self, width: int | None = None) -> None:
        narrow = (width or self.size.width) < 120
        self._narrow = narrow
        v = self.view_name
        left, right = self.main.query_one("#left"), self.main.query_one("#right")
        left.display = not narrow or v != "train"
        right.display = not narrow or v == "train"
        for name in ("gpu", "checkpoints", "chat"):
            self.main.query_one(f"#{name}").display = not narrow or v == name
        bar = self.main.query_one("#viewbar", Static)
        bar.update("  ".join(f"[reverse] {i} {title} [/]" if key == v else f" {i} {title} "
                             for i, (key, title) in enumerate(VIEWS, 1)) + ("   read-only" if self.readonly else ""))

    def _focus_moved(self, focused) -> None:
        """The left column widens while the chat has the focus (themes/app.tcss: #left.-chatting)."""
        left, chat = self.main.query("#left"), self.main.query(ChatPane)
        if left and chat:  # (not while the app closes)
            left.first().set_class(focused is not None and chat.first() in focused.ancestors_with_self, "-chatting")

    def action_log(self, action: str) -> None:
        if self.narrow and self.view_name != "train":
            self.action_view("train")
        getattr(self.main.query_one(LogPane), f"action_{action}")()

    def action_list(self, where: str, key: str = "") -> None:
        listkeys.move(self.focused, where, key)

    def action_copy(self) -> None:
        shortcuts.copy(self)

    def action_pager(self) -> None:
        shortcuts.open_in_pager(self)

    def action_smoothing(self, direction: int) -> None:
        self.main.query_one(LossPane).action_smoothing(direction)

    def action_view(self, name: str) -> None:
        self.view_name = name
        self._layout()
        target = {"train": "#log-view", "gpu": "#gpu", "checkpoints": "#ckpt-tree", "chat": "#chat"}[name]
        self.call_after_refresh(self.main.query_one(target).focus)

    # ------------------------------------------------------------ polling the run (worker thread)

    def _second(self) -> None:
        self._tick()
        self._gpu_tick()
        self._ends_tick()

    def _tick(self) -> None:
        if not at_work(self, "poll"):  # a slow read is not doubled: this tick is skipped
            self._poll(self.watch)

    @work(thread=True, group="poll")
    def _poll(self, watch: RunWatch) -> None:
        try:
            watch.progress = lambda done, total: self.call_from_thread(self._loading, watch, done, total)
            watch.preview = lambda u: self.call_from_thread(self._apply, watch, u, None)  # a long history's sample
            update = watch.poll()  # the run's observer: metrics, console lines and the verdict on a failure
            error = None
        except Exception as exc:  # a file vanished mid-read, a bad record: say so, keep going
            update, error = None, f"{type(exc).__name__}: {exc}"
        if not get_current_worker().is_cancelled:  # cancelled: another run is shown now
            self.call_from_thread(self._apply, watch, update, error)

    def _loading(self, watch: RunWatch, done: int, total: int) -> None:
        """A long first read of the run's files: how far it got, in the loss pane and, while it shows the end of a long
        console log, the log pane (the other panes stay usable)."""
        if watch is self.watch and self.screen_stack and self.main.query(LossPane):
            self.main.query_one(LossPane).set_loading(done, total)
            self.main.query_one(LogPane).show_reading()

    def _apply(self, watch: RunWatch, u: Update | None, error: str | None) -> None:
        if watch is not self.watch or not self.screen_stack or not self.main.query(RunHeader):  # another run, or the app is closing
            return
        if u is None:
            self.notify(f"reading the run failed: {error}", severity="warning", timeout=5)
            return
        loss, log = self.main.query_one(LossPane), self.main.query_one(LogPane)
        self.main.query_one(RunHeader).show(u.header)
        self.main.query_one(FailureCard).show(u.failure, u.source, u.failed)
        if u.reset:
            loss.clear()
            log.set_store(watch.log)
        loss.add(u.new_metrics)
        loss.add_completions(u.completions)
        loss.set_waiting(bool(u.source and u.source.active))
        self._show_job(u)
        if u.log_lines:
            log.lines_added(u.log_lines)
        log.show_run(u.source.record if u.source else None)
        ckpts = self.main.query_one(CheckpointsPane)
        if u.checkpoints is not None:
            ckpts.show(u.checkpoints, f"a {u.header.kind} job has no checkpoints of its own" if u.job is not None
                       else None)
        ckpts.relabel(*(u.folder_label or (None, None)))
        self.chat_pane.show_run(u.source.record if u.source else None, u.checkpoints)
        loss.pace()  # a chart redraw that is due joins this frame

    def _show_job(self, u: Update) -> None:
        """A deploy/merge/chat job gets its own view in place of the training charts."""
        job, loss = self.main.query_one(JobPane), self.main.query_one(LossPane)
        is_job = u.job is not None
        if job.display != is_job:
            job.display, loss.display = is_job, not is_job
        if is_job:
            job.show(u.source.record.kind, u.job, u.header.status)

    @on(CheckpointsPane.Refresh)
    def _refresh_checkpoints(self) -> None:
        """F5 in the checkpoints pane: the run folder is read again with the next poll, which starts now."""
        self.watch.force_scan = True
        self._tick()
        self.notify("reading the run folder again …", timeout=2)

    def attach(self, source: RunSource | None) -> None:
        """Show another run (from the run switcher, a launch, a resume)."""
        self.workers.cancel_group(self, "poll")  # a read of the run before may still finish: it is not shown
        self.watch = RunWatch(source, self.clock)
        self.chat_pane.reset()
        self.main.query_one(LogPane).set_store(self.watch.log)
        self.main.query_one(LossPane).clear()
        self._tick()

    # ------------------------------------------------------------ runs that end: say so (worker thread)

    def _ends_tick(self) -> None:
        if not at_work(self, "ends"):
            self._ends()

    @work(thread=True, group="ends")
    def _ends(self) -> None:
        try:
            ended = self.end_watch.check()
        except Exception:  # an unreadable registry is the runs list's to report, not a notice
            return
        for _rec, n in ended:
            self.call_from_thread(endnotice.tell, self, n)

    # ------------------------------------------------------------ GPU (worker thread)

    def _gpu_tick(self) -> None:
        if not at_work(self, "gpu"):
            self._sample()

    @work(thread=True, group="gpu")
    def _sample(self) -> None:
        if self.gpu_feed is None:
            self.gpu_feed = GpuFeed()
        src = self.watch.source
        try:
            view = self.gpu_feed.sample(src.record if src else None)
        except Exception as exc:  # never a traceback in the pane
            from engine.gpu import GpuSnapshot

            from tui.gpufeed import GpuView
            view = GpuView(GpuSnapshot(False, f"GPU sampling failed: {exc}", (), time.time()))
        self.call_from_thread(self._show_gpu, view)

    def _show_gpu(self, view) -> None:
        if not self.screen_stack or not self.main.query(GpuPane):  # the app is closing
            return
        self.last_gpu_view = view
        self.main.query_one(GpuPane).show(view)

    # ------------------------------------------------------------ global actions

    def action_help(self) -> None:
        sections = [(where, bindings) for where, _, bindings in self.key_sections()]
        sections += [("chat", ChatPane.HELP_BINDINGS),
                    ("new run", LaunchScreen.BINDINGS), ("relaunch", RelaunchScreen.BINDINGS),
                    ("leftovers", LeftoversScreen.BINDINGS), ("dialogs", ConfirmScreen.BINDINGS)]
        from tui.screens.disk import DiskScreen

        sections[-1:-1] = [("run switcher", RunsScreen.BINDINGS), ("disk", DiskScreen.BINDINGS)]
        self.push_screen(HelpScreen(sections))

    def action_runs(self) -> None:
        current = self.watch.source.key if self.watch.source else None

        def opened(source: RunSource | None) -> None:
            if source is not None:
                self.attach(source)

        if self.run_listing is None:  # kept between opens: the next one shows the list at once, then reads again
            self.run_listing = RunListing(self.output_dir)
        self.push_screen(RunsScreen(current=current, listing=self.run_listing), opened)

    def action_disk(self) -> None:
        from tui.screens.disk import DiskScreen, output_dir_of

        self.push_screen(DiskScreen(output_dir_of(self.watch.source, self.output_dir)))

    def action_clone(self) -> None:
        """The new-run form filled with the arguments of the run shown."""
        from engine.command import Command
        from tui.actions import ActionError, form_of

        src = self.watch.source
        rec = src.record if src else None
        if rec is None:
            self.notify("this run was not started by swiftdeck, so its command line is unknown: nothing to clone",
                        severity="warning")
            return
        try:
            form = form_of(Command.of_record(rec))
        except ActionError as exc:
            self.notify(f"not cloned: {exc}", severity="warning")
            return
        self.action_new_run(form, Path(rec.cwd))

    def action_new_run(self, form=None, cwd: Path | None = None) -> None:
        view = self.last_gpu_view
        gpu = bool(view and view.snapshot.available and view.snapshot.gpus)

        def launched(rec) -> None:
            if rec is not None:
                self.notify(f"started run {rec.id} (pid {rec.pid}); it keeps running if you quit")
                self.attach(RunSource.of_record(rec))

        self.push_screen(LaunchScreen(gpu=gpu, cwd=cwd, form=form), launched)

    def action_relaunch(self) -> None:
        src = self.watch.source
        try:
            screen = RelaunchScreen(src.record if src else None, self.main.query_one(FailureCard).diagnosis)
        except RelaunchError as exc:
            self.notify(str(exc), severity="warning", timeout=8)
            return

        def launched(rec) -> None:
            if rec is not None:
                self.notify(f"relaunched as run {rec.id} (pid {rec.pid})")
                self.attach(RunSource.of_record(rec))

        self.push_screen(screen, launched)

    def action_leftovers(self) -> None:
        self.push_screen(LeftoversScreen(sampler=self.gpu_feed.sampler if self.gpu_feed else None))

    @work(thread=True, group="leftovers")
    def _startup_leftovers(self) -> None:
        try:
            found = jobs.find_leftovers(self.gpu_feed.sampler if self.gpu_feed else None)
        except Exception as exc:  # an unreadable registry must not stop the dashboard
            self.call_from_thread(self.notify, f"could not look for leftover processes: {exc}", severity="warning")
            return
        if found:
            self.call_from_thread(self.push_screen, LeftoversScreen(found))

    def action_stop_run(self) -> None:
        src = self.watch.source
        rec = src.record if src else None
        if rec is None or not rec.active:
            self.notify("No running run to stop", severity="warning")
            return

        def answered(yes: bool | None) -> None:
            if yes:
                self.notify(f"stopping {jobs.named(rec)}: {jobs.stop_words(rec)}")
                self._stop(rec)

        self.push_screen(ConfirmScreen(f"Stop {jobs.named(rec)}?",
                                       f"It {jobs.stop_words(rec)}; after 120 s the process tree is killed.",
                                       yes="Stop"), answered)

    @work(thread=True, exclusive=True, group="stop")
    def _stop(self, rec) -> None:
        try:
            report = jobs.stop(rec)
        except (SwiftdeckError, OSError) as exc:
            self.call_from_thread(self.notify, f"stop failed: {exc}", severity="error", timeout=10)
            return
        msg = (f"{jobs.named(rec)} stopped in {report.seconds:.0f}s" if report.clean
               else f"{jobs.named(rec)}: processes still alive: {report.left}")
        self.call_from_thread(self.notify, msg, severity="information" if report.clean else "error")

    async def action_quit(self) -> None:
        src = self.watch.source
        self.exit(src.key if src and src.active else None)

    def key_sections(self) -> list[tuple[str, type | None, list]]:
        """The one key table: (where, the pane that runs the actions or None for the app, its bindings). `?` help
        and the palette both read it, so every key has a palette entry and a help row."""
        return [("global", None, self.BINDINGS), ("log", LogPane, LogPane.BINDINGS),
                ("log", LogView, LogView.BINDINGS), ("checkpoints", CheckpointsPane, CheckpointsPane.BINDINGS)]

    def palette_entries(self) -> list[tuple[str, str, Callable]]:
        """(title, help, callback) of every binding in key_sections: PALETTE's words where it has them, else the
        binding's own (description; the key)."""
        from tui.screens.help import key_names

        entries = []
        for _, pane, bindings in self.key_sections():
            for b in bindings:
                if not isinstance(b, Binding) or not b.description or b.action in PALETTE_SKIP:
                    continue
                title, help_text = PALETTE.get(b.action, (b.description, b.tooltip or b.description))
                help_text = f"{help_text} ({key_names(b)})"
                if pane is None:
                    callback = partial(self.run_action, b.action)
                else:
                    callback = partial(self._pane_action, pane, b.action)
                entries.append((title, help_text, callback))
        return entries

    def get_system_commands(self, screen):
        yield from super().get_system_commands(screen)
        ours = self.palette_entries() + self.chat_pane.system_commands()
        for title, help_text, callback in ours:
            if self.check_action(_palette_action(callback) or "", ()):
                yield SystemCommand(title, help_text, callback)
        yield from endnotice.system_commands(self)

    def _pane_action(self, pane_type, action: str) -> None:
        if self.refused(action):
            return
        pane = self.main.query_one(pane_type)
        if pane_type is CheckpointsPane and self.narrow:
            self.action_view("checkpoints")
        getattr(pane, f"action_{action}")()

    # ------------------------------------------------------------ checkpoints: chat, resume, delete, strip

    @on(CheckpointsPane.Chosen)
    def _chosen(self, event: CheckpointsPane.Chosen) -> None:
        """"Chat with it": the next keys go into the chat input (a narrow screen shows the Chat view)."""
        self.chat_with(event.checkpoint)
        self.notify(f"chat will use {event.checkpoint.name}")
        if self.narrow:
            self.action_view("chat")
        else:
            self.chat_pane.focus()

    def chat_with(self, checkpoint) -> None:
        """The chat's target (None: the base model); the browser marks it "◀ chat"."""
        self.main.query_one(CheckpointsPane).mark_chosen(str(checkpoint.path) if checkpoint is not None else None)
        self.chat_pane.choose(checkpoint)

    @on(CheckpointsPane.Merge)
    def _merge(self, event: CheckpointsPane.Merge) -> None:
        """M: `swift export --merge_lora` of a LoRA checkpoint, after a confirmation, in the background."""
        if self.refused("merge"):
            return
        c = event.checkpoint
        out = jobs.merged_path(Path(c.path))
        if c.kind != "lora":
            self.notify(f"{c.name} is a {c.kind} model, not a LoRA adapter: nothing to merge", severity="warning")
        elif out.exists():
            self.notify(f"{out} already exists", severity="warning")
        else:
            body = (f"swift export --adapters {c.path} --merge_lora true\n\nwrites {out}: a full copy of the base "
                    "model with the adapter merged in (as large as the base). Runs in the background with its own "
                    "log; the new folder appears in Checkpoints when it is done.")
            self.push_screen(ConfirmScreen(f"Merge {c.name} into a full model?", body, yes="Merge"),
                             lambda yes: self._merge_job(c) if yes else None)

    @work(thread=True, exclusive=True, group="merge")
    def _merge_job(self, c) -> None:
        me = get_current_worker()
        try:
            rec = jobs.merge(Path(c.path), cancelled=lambda: me.is_cancelled, started=lambda r: self.notify(
                f"merging {c.name} in the background (run {r.id}) …"))
        except SwiftdeckError as exc:
            self.notify(str(exc), severity="error", timeout=10)
            return
        if rec.active:
            return
        if rec.status == "finished" and rec.exit_code == 0:
            self.notify(f"merged into {jobs.merged_path(Path(c.path))}: a full model (Enter on it chats with it as "
                        "a base)", timeout=10)
        else:
            self.notify(f"merge of {c.name} {rec.status} (exit code {rec.exit_code}): see `swiftdeck diagnose "
                        f"{rec.id}`", severity="error", timeout=10)
        self.watch.force_scan = True  # the browser shows the new folder with the next poll

    @on(CheckpointsPane.Act)
    def _act(self, event: CheckpointsPane.Act) -> None:
        if self.refused(event.action):
            return
        c, src = event.checkpoint, self.watch.source
        rec = src.record if src else None
        try:
            if event.action == "resume":
                try:
                    cmd, changes = launch_ops.plan_resume(rec, c)
                except launch_ops.AtMaxSteps as exc:  # trains nothing as it is: offer to raise the end
                    from tui.screens.relaunch import ResumeScreen
                    self.push_screen(ResumeScreen(rec, c, exc), lambda new: new and self._resumed(new))
                    return
                title = f"Resume training from {c.name}?"
                body = "\n".join(["what changes:", *(f"  {x}" for x in changes), "", "command: " + cmd.display()])
                run = lambda: self._resume(cmd, changes)  # noqa: E731
            elif event.action == "delete":
                title = f"Delete {c.name} ({fmt_bytes(c.size_bytes)})?"
                body = f"{c.path}\nis removed from disk. This cannot be undone."
                run = lambda: self._file_action("delete", c)  # noqa: E731
            else:
                files = ckpt_ops.optimizer_files(c.path)
                if not files:
                    raise ckpt_ops.CheckpointRefused(f"{c.name} has no optimizer state to strip")
                title = f"Strip the optimizer state of {c.name}?"
                body = "\n".join(["removes:", *(f"  {p.name}" for p in files), "",
                                  "The adapter stays usable for chat, merge and deploy, but training can no longer "
                                  "be resumed from this checkpoint."])
                run = lambda: self._file_action("strip", c)  # noqa: E731
        except SwiftdeckError as exc:
            self.notify(str(exc), severity="warning", timeout=8)
            return
        self.push_screen(ConfirmScreen(title, body, yes=event.action.capitalize()),
                         lambda yes: run() if yes else None)

    @work(thread=True, exclusive=True, group="ckpt-action")
    def _file_action(self, action: str, c) -> None:
        try:
            if action == "delete":
                msg = f"deleted {c.name}, freed {fmt_bytes(ckpt_ops.delete_checkpoint(c.path))}"
            else:
                msg = f"stripped {c.name}, freed {fmt_bytes(ckpt_ops.strip_optimizer(c.path))}"
            severity = "information"
        except (SwiftdeckError, OSError) as exc:
            msg, severity = str(exc), "error"
        self.watch.force_scan = True
        self.call_from_thread(self.notify, msg, severity=severity, timeout=8)

    @work(thread=True, exclusive=True, group="ckpt-action")
    def _resume(self, cmd, changes) -> None:
        try:
            check = launch_ops.check_launch(cmd, datasets=False)
            check.changes = changes
            rec = launch_ops.start(check)
        except Exception as exc:
            self.call_from_thread(self.notify, str(exc), severity="error", timeout=10)
            return
        self.call_from_thread(self._resumed, rec)

    def _resumed(self, rec) -> None:
        self.notify(f"resumed as run {rec.id}")
        self.attach(RunSource.of_record(rec))

    def on_unmount(self) -> None:
        self.chat.close()  # the chat worker is the dashboard's; a deploy is a managed job and outlives it
        if self.gpu_feed is not None:
            self.gpu_feed.close()
