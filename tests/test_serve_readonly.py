"""--readonly (`swiftdeck --readonly`, `attach RUN --readonly`, `serve --readonly`): a Pilot dashboard on a recorded
run in which every action that starts, stops, deletes, strips, merges, deploys, launches, resumes or relaunches is
gone from the footer and the palette, and refused with a notification when its key is pressed or its message
posted anyway; nothing on disk changes. The same keys work without --readonly."""
from __future__ import annotations

import asyncio

from test_tui_support import fixed_clock, make_run, settled, text_of, until
from tui.app import READONLY_REFUSED, SwiftdeckApp
from tui.cli import route
from tui.model import RunSource
from tui.screens.launch import LaunchScreen
from tui.widgets.chat import ChatPane
from tui.widgets.checkpoints import CheckpointsPane, CheckpointTree
from tui.widgets.header import RunHeader

REFUSED_COMMANDS = ("New run", "Stop run", "Resume from checkpoint", "Delete checkpoint", "Strip optimizer state",
                    "Relaunch with these changes", "Leftover processes", "Deploy / stop deploy")
# key, where the focus is, what the refusal names
REFUSED_KEYS = [("n", None, "launching a run"), ("S", None, "stopping a run"), ("r", None, "relaunching a run"),
                ("L", None, "stopping leftover processes"), ("R", CheckpointTree, "resuming training"),
                ("D", CheckpointTree, "deleting a checkpoint"), ("O", CheckpointTree, "stripping optimizer state"),
                ("M", CheckpointTree, "merging a LoRA"), ("ctrl+r", "#chat-input", "deploying")]


def _active_actions(app) -> set[str]:
    return {b.binding.action for b in app.screen.active_bindings.values()}


def _refusals(app) -> list[str]:
    return [n.message for n in app._notifications if n.message.startswith("read-only dashboard:")]


def _files(root: Path) -> list[Path]:
    """Every file and folder under root, but the registry's liveness stamp (runs/<id>/heartbeat: its mtime says when
    the run was last seen alive, and looking at a live run renews it)."""
    return sorted(p.relative_to(root) for p in root.rglob("*") if p.name != "heartbeat")


def test_readonly_dashboard_refuses_every_action_that_changes_anything(home, tmp_path, swift_fixtures):
    rec = make_run(swift_fixtures, tmp_path, "running")
    on_disk = _files(tmp_path)

    async def go():
        app = SwiftdeckApp(RunSource.of_record(rec), clock=fixed_clock, remember_theme=False, readonly=True)
        async with app.run_test(size=(160, 48)) as pilot:
            await settled(pilot)
            main = app.screen
            commands = [c.title for c in app.get_system_commands(main)]
            assert "Switch run" in commands and "Chat with checkpoint" in commands
            assert not set(REFUSED_COMMANDS) & set(commands)
            for key, focus, what in REFUSED_KEYS:
                if focus is not None:
                    app.query_one(focus).focus()
                    assert await until(pilot, lambda: app.focused is app.query_one(focus))
                if focus is CheckpointTree:  # on checkpoint-20, the newest of the running run
                    assert app.query_one(CheckpointsPane).current().name == "checkpoint-20"
                assert not _active_actions(app) & set(READONLY_REFUSED), (key, _active_actions(app))
                before = len(_refusals(app))
                await pilot.press(key)
                assert await until(pilot, lambda: len(_refusals(app)) > before), key
                await settled(pilot)
                assert app.screen is main, f"{key} opened {app.screen}"
                assert len(_refusals(app)) == before + 1 and what in _refusals(app)[-1], (key, _refusals(app))
            # the messages the app acts on, posted anyway (and the palette's path to the pane's keys)
            c = app.query_one(CheckpointsPane).current()
            chat = app.query_one(ChatPane)
            target = chat.current_target()
            for pane, message in ((CheckpointsPane, CheckpointsPane.Act("resume", c)),
                                  (CheckpointsPane, CheckpointsPane.Act("delete", c)),
                                  (CheckpointsPane, CheckpointsPane.Act("strip", c)),
                                  (CheckpointsPane, CheckpointsPane.Merge(c)),
                                  (ChatPane, ChatPane.DeployRequested(target)),
                                  (ChatPane, ChatPane.StopDeployRequested(rec, None))):
                before = len(_refusals(app))
                app.query_one(pane).post_message(message)
                assert await until(pilot, lambda: len(_refusals(app)) > before), message
                await settled(pilot)
                assert app.screen is main and len(_refusals(app)) == before + 1, message
            app._pane_action(CheckpointsPane, "delete")
            await settled(pilot)
            assert app.screen is main and "deleting a checkpoint" in _refusals(app)[-1]
            assert not app.query_one("#chat-deploy").display and chat.deploy_rec is None
        assert _files(tmp_path) == on_disk

    asyncio.run(go())


def test_without_readonly_the_same_keys_act(home, tmp_path, swift_fixtures):
    rec = make_run(swift_fixtures, tmp_path, "running")

    async def go():
        app = SwiftdeckApp(RunSource.of_record(rec), clock=fixed_clock, remember_theme=False, check_leftovers=False)
        async with app.run_test(size=(160, 48)) as pilot:
            await settled(pilot)
            commands = {c.title for c in app.get_system_commands(app.screen)}
            assert set(REFUSED_COMMANDS) <= commands
            assert {"new_run", "stop_run", "relaunch", "leftovers"} <= _active_actions(app)
            app.query_one(CheckpointTree).focus()
            assert await until(pilot, lambda: {"resume", "delete", "strip", "merge"} <= _active_actions(app))
            await pilot.press("n")
            assert await until(pilot, lambda: isinstance(app.screen, LaunchScreen))
            assert not _refusals(app)

    asyncio.run(go())


def test_readonly_header_does_not_offer_a_new_run(home):
    """With no run to show, the header lists the keys to press; `n: new run` only where a run may be launched."""
    async def hint(readonly: bool) -> str:
        app = SwiftdeckApp(None, remember_theme=False, check_leftovers=False, readonly=readonly)
        async with app.run_test(size=(120, 36)) as pilot:
            await settled(pilot)
            return text_of(app.query_one(RunHeader)).splitlines()[-1]

    assert asyncio.run(hint(readonly=True)).split() == ["w:", "runs", "?:", "help"]
    assert "n: new run" in asyncio.run(hint(readonly=False))


def test_readonly_flag_on_every_dashboard_command():
    assert route(["--readonly"])[1].readonly
    assert not route([])[1].readonly
    kind, ns = route(["attach", "sft-1", "--readonly"])
    assert kind == "attach" and ns.run == "sft-1" and ns.readonly
    kind, ns = route(["serve", "--readonly", "--port", "8123"])
    assert kind == "serve" and ns.readonly and ns.port == 8123 and ns.host == "127.0.0.1"
