"""The app's side of the chat (a mixin of SwiftdeckApp): it acts on the chat pane's requests. Turns, attaching an
adapter, the identity check, deploy and stop-deploy run in the app's thread workers, on the ChatSession (the chat
worker process, the deploy) and engine.ops.jobs; what comes of them goes down to the pane. The dialogs (the target
picker, the settings, the confirmations, the identity report) are pushed here, never by the pane."""
from __future__ import annotations

from textual import work
from textual.worker import get_current_worker

from engine.errors import SwiftdeckError
from engine.ops import jobs
from tui.chat.backend import DeployBackend, deploy_request
from tui.chat.session import ChatSession
from tui.screens.chat_settings import ChatSettingsScreen
from tui.screens.chat_target import BASE, ChatTargetScreen
from tui.screens.confirm import ConfirmScreen
from tui.screens.identity import IdentityScreen
from tui.widgets.chat import ChatPane


class ChatJobs:
    """Uses the app's `chat` (ChatSession), `main` (the dashboard screen), `refused(action)` and
    `chat_with(checkpoint)` (the chat target, with the browser's mark)."""

    chat: ChatSession

    @property
    def chat_pane(self) -> ChatPane:
        return self.main.query_one(ChatPane)

    # ------------------------------------------------------------ turns

    def on_chat_pane_send(self, event: ChatPane.Send) -> None:
        self.chat.begin()
        self._chat_turn(self.chat_pane, event)

    @work(thread=True, group="chat-turn")
    def _chat_turn(self, pane: ChatPane, turn: ChatPane.Send) -> None:
        feed = pane.feed()
        self.chat.turn(turn.legs, turn.prompt, turn.settings, turn.via_deploy, turn.record, feed)
        feed.worker(None, self.chat.worker.describe())  # started, or ended meanwhile
        pane.post_message(ChatPane.TurnDone(turn.legs))

    def on_chat_pane_cancel(self, event: ChatPane.Cancel) -> None:
        self.chat.cancel()

    def on_chat_pane_attach(self, event: ChatPane.Attach) -> None:
        self._chat_attach(event.target)

    @work(thread=True, group="chat-attach")
    def _chat_attach(self, target) -> None:
        try:
            self.chat.attach(target)
        except SwiftdeckError as exc:
            self.notify(str(exc), severity="warning", timeout=10)

    # ------------------------------------------------------------ dialogs of the pane

    def on_chat_pane_pick_requested(self, event: ChatPane.PickRequested) -> None:
        pane = self.chat_pane

        def picked(choice) -> None:
            if choice is None:
                return
            checkpoint = None if choice == BASE else choice
            if event.side == "A":
                pane.set_partner(checkpoint)
            else:
                self.chat_with(checkpoint)

        self.push_screen(ChatTargetScreen(event.title, event.base, event.folders, event.current), picked)

    def on_chat_pane_settings_requested(self, event: ChatPane.SettingsRequested) -> None:
        pane = self.chat_pane
        self.push_screen(ChatSettingsScreen(event.settings),
                         lambda settings: pane.set_settings(settings) if settings is not None else None)

    # ------------------------------------------------------------ identity check

    def on_chat_pane_identity_requested(self, event: ChatPane.IdentityRequested) -> None:
        screen = IdentityScreen(event.target.label)
        self.push_screen(screen)
        self._identity(self.chat_pane, event.target, screen)

    @work(thread=True, group="chat-identity")
    def _identity(self, pane: ChatPane, target, screen: IdentityScreen) -> None:
        feed = pane.feed()
        try:
            report = self.chat.identity(target, feed.worker)
        except (SwiftdeckError, OSError, ValueError) as exc:
            screen.post_message(screen.Done(None, str(exc)))
            return
        finally:
            feed.worker(None, self.chat.worker.describe())
        screen.post_message(screen.Done(report))
        n = len(report.rows)
        self.notify(f"identity check of {target.label}: adapter {report.adapter_passed}/{n} passed, base "
                    f"{report.base_passed}/{n}", timeout=10)

    # ------------------------------------------------------------ deploy

    @work(thread=True, exclusive=True, group="chat-deploy-adopt")
    def _adopt_deploy(self) -> None:
        """A deploy already serving (started earlier, or by `swiftdeck deploy`) is shown and usable."""
        try:
            found = DeployBackend.find_running()
        except Exception:  # an unreadable registry must not break the dashboard
            found = None
        if found is not None:
            self.call_from_thread(self._deploy_state, found.rec, found.url)

    def _deploy_state(self, rec, url: str | None) -> None:
        """A deploy started (url None), became ready, or is gone (rec None)."""
        deploy = self.chat.set_deploy(rec, url)
        if deploy is not None:
            self.notify(f"deploy ready at {url}")
        self.chat_pane.show_deploy(rec, deploy)

    def on_chat_pane_deploy_requested(self, event: ChatPane.DeployRequested) -> None:
        if self.refused("deploy"):
            return
        target = event.target
        what = f"--adapters {target.label}={target.adapter}" if target.adapter else f"--model {target.base['model']}"
        body = (f"swift deploy {what} --host 127.0.0.1 --port <free>\n\nA managed job in the run registry: it keeps "
                "serving after you quit; ctrl+r again stops it. When /health answers, its URL shows here and "
                "ctrl+f sends the chat through its OpenAI-compatible API.")
        self.push_screen(ConfirmScreen(f"Deploy {target.label}?", body, yes="Deploy"),
                         lambda yes: self._deploy(target) if yes else None)

    @work(thread=True, exclusive=True, group="chat-deploy")
    def _deploy(self, target) -> None:
        me = get_current_worker()
        try:
            done = jobs.deploy(**deploy_request(target), cancelled=lambda: me.is_cancelled,
                               started=lambda rec: self.call_from_thread(self._deploy_state, rec, None))
        except SwiftdeckError as exc:
            self.notify(f"deploy failed: {exc}", severity="error", timeout=10)
            self.call_from_thread(self._deploy_state, None, None)
            return
        if done.url is not None and not me.is_cancelled:
            self.call_from_thread(self._deploy_state, done.rec, done.url)

    def on_chat_pane_stop_deploy_requested(self, event: ChatPane.StopDeployRequested) -> None:
        if self.refused("deploy"):
            return
        rec = event.rec
        self.push_screen(ConfirmScreen(f"Stop {jobs.named(rec)}?", f"swift deploy at {event.url or 'starting'}: "
                                       f"{jobs.stop_words(rec)}.", yes="Stop"),
                         lambda yes: self._stop_deploy(rec) if yes else None)

    @work(thread=True, exclusive=True, group="chat-deploy-stop")
    def _stop_deploy(self, rec) -> None:
        try:
            report = jobs.stop(rec)
        except (SwiftdeckError, OSError) as exc:
            self.notify(f"stopping {jobs.named(rec)} failed: {exc}", severity="error", timeout=10)
            return
        self.call_from_thread(self._deploy_state, None, None)
        self.notify(f"{jobs.named(rec)} stopped" if report.clean else f"{jobs.named(rec)}: processes still alive: "
                    f"{report.left}", severity="information" if report.clean else "error", timeout=10)
