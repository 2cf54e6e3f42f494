"""The chat pane's longer jobs, each in a thread worker: the identity check (on the pane's chat worker), `swift deploy`
of the chat target (waits for /health, then the pane can chat through it), and merge (M in the browser:
`swift export --merge_lora`, then the browser rescans). A mixin of ChatPane: it uses the pane's worker, target and
notifications."""
from __future__ import annotations

from pathlib import Path

from textual import work
from textual.message import Message

from engine.chat_client import ChatClientError
from engine.errors import SwiftdeckError
from tui.chat.backend import BackendError, DeployBackend, deploy_request
from tui.chat.target import ChatTarget


class ChatJobs:
    class Status(Message):
        """From a thread: the worker started loading a base (`loading` = model) or is ready (None)."""

        def __init__(self, loading: str | None) -> None:
            super().__init__()
            self.loading = loading

    class Note(Message):
        def __init__(self, text: str, severity: str = "information") -> None:
            super().__init__()
            self.text, self.severity = text, severity

    class DeployState(Message):
        """A deploy started (url None), became ready, or is gone (rec None)."""

        def __init__(self, rec, url: str | None) -> None:
            super().__init__()
            self.rec, self.url = rec, url

    class Rescan(Message):
        """A merge wrote a new folder: the browser should rescan."""

    # ------------------------------------------------------------ identity check

    def action_identity(self) -> None:
        from tui.screens.identity import IdentityScreen

        try:
            target = self.current_target()
        except (BackendError, ChatClientError) as exc:
            self.app.notify(str(exc), severity="warning")
            return
        if not target.is_adapter:
            self.app.notify("the identity check compares the base with a LoRA checkpoint: pick one "
                            "(Enter in Checkpoints)", severity="warning", timeout=8)
            return
        screen = IdentityScreen(target.label)
        self.app.push_screen(screen)
        self._identity(target, screen)

    @work(thread=True, group="chat-identity")
    def _identity(self, target: ChatTarget, screen) -> None:
        from engine.identity import check_identity

        try:
            with self.worker.lock:
                if self.worker.needs_load(target):
                    self.post_message(self.Status(str(target.base.get("model"))))
                    try:
                        self.worker.ensure(target)
                    finally:
                        self.post_message(self.Status(None))
                report = check_identity(Path(target.adapter), client=self.worker.client)
        except (ChatClientError, OSError, ValueError) as exc:
            screen.post_message(screen.Done(None, str(exc)))
            return
        screen.post_message(screen.Done(report))
        n = len(report.rows)
        self.post_message(self.Note(f"identity check of {target.label}: adapter {report.adapter_passed}/{n} "
                                    f"passed, base {report.base_passed}/{n}"))

    # ------------------------------------------------------------ deploy

    @work(thread=True, exclusive=True, group="chat-deploy-adopt")
    def _adopt_deploy(self) -> None:
        """A deploy already serving (started earlier, or by `swiftdeck deploy`) is shown and usable."""
        try:
            found = DeployBackend.find_running()
        except Exception:  # an unreadable registry must not break the pane
            found = None
        if found is not None:
            self.post_message(self.DeployState(found.rec, found.url))

    def action_deploy(self) -> None:
        from tui.screens.confirm import ConfirmScreen

        rec = self.deploy_rec
        if rec is not None:
            where = self.deploy.url if self.deploy else "starting"
            self.app.push_screen(ConfirmScreen(f"Stop the deploy {rec.id}?", f"swift deploy at {where} is stopped "
                                               "(SIGINT to its process group, then the tree is killed).",
                                               yes="Stop"), lambda yes: self._stop_deploy(rec) if yes else None)
            return
        try:
            target = self.current_target()
        except (BackendError, ChatClientError) as exc:
            self.app.notify(str(exc), severity="warning")
            return
        what = f"--adapters {target.label}={target.adapter}" if target.adapter else f"--model {target.base['model']}"
        body = (f"swift deploy {what} --host 127.0.0.1 --port <free>\n\nA managed job in the run registry: it keeps "
                "serving after you quit; ctrl+r again stops it. When /health answers, its URL shows here and "
                "ctrl+f sends the chat through its OpenAI-compatible API.")
        self.app.push_screen(ConfirmScreen(f"Deploy {target.label}?", body, yes="Deploy"),
                             lambda yes: self._deploy(target) if yes else None)

    @work(thread=True, exclusive=True, group="chat-deploy")
    def _deploy(self, target: ChatTarget) -> None:
        from textual.worker import get_current_worker

        from engine.ops import jobs

        me = get_current_worker()
        try:
            done = jobs.deploy(**deploy_request(target), cancelled=lambda: me.is_cancelled,
                               started=lambda rec: self.post_message(self.DeployState(rec, None)))
        except SwiftdeckError as exc:
            self.post_message(self.Note(f"deploy failed: {exc}", "error"))
            self.post_message(self.DeployState(None, None))
            return
        if done.url is not None:
            self.post_message(self.DeployState(done.rec, done.url))

    @work(thread=True, exclusive=True, group="chat-deploy-stop")
    def _stop_deploy(self, rec) -> None:
        from engine.ops import jobs

        report = jobs.stop(rec)
        self.post_message(self.DeployState(None, None))
        self.post_message(self.Note(f"deploy {rec.id} stopped" if report.clean else
                                    f"deploy {rec.id}: processes still alive: {report.left}",
                                    "information" if report.clean else "error"))

    def on_chat_jobs_deploy_state(self, message: DeployState) -> None:
        self.deploy_rec = message.rec
        self.deploy = DeployBackend(message.rec, message.url) if message.rec and message.url else None
        if self.deploy is None:
            self.use_deploy = False
        elif message.url:
            self.app.notify(f"deploy ready at {message.url}")
        self._show_status()

    def action_backend(self) -> None:
        if self.deploy is None:
            self.app.notify("no deploy is serving: ctrl+r deploys the current target", severity="warning")
            return
        self.use_deploy = not self.use_deploy
        self._show_status()

    # ------------------------------------------------------------ merge (M in the browser)

    def merge(self, checkpoint) -> None:
        from engine.ops.jobs import merged_path
        from tui.screens.confirm import ConfirmScreen

        path = Path(checkpoint.path)
        if checkpoint.kind != "lora":
            self.app.notify(f"{checkpoint.name} is a {checkpoint.kind} model, not a LoRA adapter: nothing to merge",
                            severity="warning")
            return
        out = merged_path(path)
        if out.exists():
            self.app.notify(f"{out} already exists", severity="warning")
            return
        body = (f"swift export --adapters {path} --merge_lora true\n\nwrites {out}: a full copy of the base model "
                "with the adapter merged in (as large as the base). Runs in the background with its own log; the "
                "new folder appears in Checkpoints when it is done.")
        self.app.push_screen(ConfirmScreen(f"Merge {checkpoint.name} into a full model?", body, yes="Merge"),
                             lambda yes: self._merge(checkpoint) if yes else None)

    @work(thread=True, exclusive=True, group="merge")
    def _merge(self, checkpoint) -> None:
        from textual.worker import get_current_worker

        from engine.ops import jobs

        me = get_current_worker()
        try:
            rec = jobs.merge(Path(checkpoint.path), cancelled=lambda: me.is_cancelled, started=lambda r: self.post_message(
                self.Note(f"merging {checkpoint.name} in the background (run {r.id}) …")))
        except SwiftdeckError as exc:
            self.post_message(self.Note(str(exc), "error"))
            return
        if rec.active:
            return
        if rec.status == "finished" and rec.exit_code == 0:
            self.post_message(self.Note(f"merged into {jobs.merged_path(Path(checkpoint.path))}: a full model "
                                        "(Enter on it chats with it as a base)"))
        else:
            self.post_message(self.Note(f"merge of {checkpoint.name} {rec.status} (exit code {rec.exit_code}): "
                                        f"see `swiftdeck diagnose {rec.id}`", "error"))
        self.post_message(self.Rescan())

    def on_chat_jobs_rescan(self, message: Rescan) -> None:
        watch = getattr(self.app, "watch", None)
        if watch is not None:
            watch.force_scan = True
