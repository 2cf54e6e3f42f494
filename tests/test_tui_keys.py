"""Pilot tests of issue 15 item 1-2: the New-run form and the Relaunch dialog own their keys (the dashboard's letter
keys neither act nor show in the footer while they are up), leaving with changes asks first, and launch names the
field that blocks it."""
from __future__ import annotations

import asyncio

from test_tui_support import fixed_clock, make_run, settled, text_of, until
from textual.widgets import Input

from tui.app import SwiftdeckApp
from tui.model import RunSource
from tui.screens.confirm import ConfirmScreen
from tui.screens.launch import LaunchScreen
from tui.screens.relaunch import RelaunchScreen
from tui.widgets.failure import FailureCard

GLOBAL_KEYS = ("q", "n", "w", "slash", "r", "S", "L", "question_mark")


def run(coro):
    return asyncio.run(coro)


async def globals_do_nothing(pilot, screen_type) -> None:
    """With focus on a button of the form, the dashboard's keys neither act nor show in the footer."""
    app = pilot.app
    screen = app.screen
    assert isinstance(screen, screen_type)
    screen.query_one("#cancel").focus()
    depth = len(app.screen_stack)
    shown = {key for key, b in screen.active_bindings.items() if b.binding.show}
    assert "escape" in shown and "ctrl+l" in shown
    assert not shown & set(GLOBAL_KEYS), shown  # the footer lists only the form's keys
    for key in GLOBAL_KEYS:
        await pilot.press(key)
        await pilot.pause()
        assert app.is_running, key  # q did not quit
        assert app.screen is screen and len(app.screen_stack) == depth, key  # nothing stacked, nothing behind


async def new_run_form(app, pilot, tmp_path, fields: dict[str, str]) -> LaunchScreen:
    """`n`, then a model, a dataset and `fields` typed in (their Input.Changed handled, as when typing)."""
    await settled(pilot)
    await pilot.press("n")
    assert await until(pilot, lambda: isinstance(app.screen, LaunchScreen))
    form = app.screen
    for selector, value in {"#f-model": "/models/tiny", "#f-dataset": str(tmp_path / "data.jsonl"),
                            **fields}.items():
        form.query_one(selector, Input).value = value
    await pilot.pause()
    return form


def test_letter_keys_do_not_act_inside_the_new_run_form(home):
    async def go():
        app = SwiftdeckApp(None, remember_theme=False)
        async with app.run_test(size=(120, 40)) as pilot:
            await settled(pilot)
            assert "q" in app.screen.active_bindings  # the dashboard itself still has them
            await pilot.press("n")
            assert await until(pilot, lambda: isinstance(app.screen, LaunchScreen))
            await globals_do_nothing(pilot, LaunchScreen)
            label = app.screen.query_one("#f-label", Input)
            label.focus()
            await pilot.press("q", "n", "w", "r")
            assert label.value == "qnwr"  # inside a field, letters type
            assert isinstance(app.screen, LaunchScreen)
    run(go())


def test_leaving_the_new_run_form_with_changes_asks_first(home):
    async def go():
        app = SwiftdeckApp(None, remember_theme=False)
        async with app.run_test(size=(120, 40)) as pilot:
            await settled(pilot)
            await pilot.press("n")
            assert await until(pilot, lambda: isinstance(app.screen, LaunchScreen))
            await pilot.press("escape")  # no changes: leaves at once
            assert await until(pilot, lambda: not isinstance(app.screen, LaunchScreen))
            await pilot.press("n")
            assert await until(pilot, lambda: isinstance(app.screen, LaunchScreen))
            form = app.screen
            form.query_one("#f-model", Input).value = "/models/tiny"
            await pilot.press("escape")
            assert await until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
            assert "Discard changes?" in text_of(app.screen.query_one("#dialog-title"))
            await pilot.press("n")  # keep editing: nothing lost
            assert await until(pilot, lambda: app.screen is form)
            assert form.query_one("#f-model", Input).value == "/models/tiny"
            form.query_one("#cancel").focus()
            await pilot.press("enter")  # the Cancel button asks too
            assert await until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
            await pilot.press("y")
            assert await until(pilot, lambda: not isinstance(app.screen, (LaunchScreen, ConfirmScreen)))
            assert len(app.screen_stack) == 1
    run(go())


def test_launch_names_the_field_that_blocks_it(home, tmp_path):
    async def go():
        app = SwiftdeckApp(None, remember_theme=False)
        async with app.run_test(size=(120, 40)) as pilot:
            form = await new_run_form(app, pilot, tmp_path, {"#f-learning_rate": "1e-4x"})
            await pilot.press("ctrl+l")
            check = form.query_one("#launch-check")
            assert await until(pilot, lambda: "learning rate must be a number" in text_of(check))
            assert "not launched" in text_of(check) and "fill in" not in text_of(check)
            form.query_one("#f-learning_rate", Input).value = "1e-4"
            form.query_one("#f-epochs", Input).value = "ten"
            await pilot.pause()
            await pilot.press("ctrl+k")
            assert await until(pilot, lambda: "epochs must be a number" in text_of(check))
            form.query_one("#f-model", Input).value = ""
            await pilot.pause()
            await pilot.press("ctrl+l")
            assert await until(pilot, lambda: "model is required" in text_of(check))
            assert isinstance(app.screen, LaunchScreen)  # nothing started
    run(go())


def test_letter_keys_do_not_act_inside_the_relaunch_dialog(introspected_home, tmp_path, swift_fixtures):
    rec = make_run(swift_fixtures, tmp_path, "failed")

    async def go():
        app = SwiftdeckApp(RunSource.of_record(rec), clock=fixed_clock, remember_theme=False)
        async with app.run_test(size=(120, 40)) as pilot:
            card = app.query_one(FailureCard)
            assert await until(pilot, lambda: card.state is not None and card.state.diagnosis is not None)
            await pilot.press("r")
            assert await until(pilot, lambda: isinstance(app.screen, RelaunchScreen))
            dialog = app.screen
            await globals_do_nothing(pilot, RelaunchScreen)
            flags = dialog.query_one("#relaunch-flags", Input)
            flags.value = "--lora_rank 4"
            await pilot.press("escape")  # typed flags: asks first
            assert await until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
            await pilot.press("escape")
            assert await until(pilot, lambda: app.screen is dialog)
            assert flags.value == "--lora_rank 4"
            await pilot.press("escape", "y")
            assert await until(pilot, lambda: len(app.screen_stack) == 1)
            await settled(pilot)
    run(go())


def test_a_long_check_never_pushes_the_buttons_off_the_screen(introspected_home, tmp_path):
    """120×40: the check's output scrolls in its own box; Check / Launch stay on the screen, their keys in the
    footer, and a blocked launch says so in a notification too."""
    extra = " ".join(f"--no_such_flag_{i} {i}" for i in range(20))

    async def go():
        app = SwiftdeckApp(None, remember_theme=False)
        async with app.run_test(size=(120, 40)) as pilot:
            form = await new_run_form(app, pilot, tmp_path, {"#f-extra": extra})
            await pilot.press("ctrl+l")
            check = form.query_one("#launch-check")
            assert await until(pilot, lambda: text_of(check).count("problem:") >= 20, timeout=60)
            await settled(pilot)
            for button in ("#check", "#launch", "#cancel"):
                region = form.query_one(button).region
                assert region.height == 3 and region.bottom <= 39, (button, region)  # above the footer row
            shown = {key for key, b in form.active_bindings.items() if b.binding.show}
            assert {"ctrl+k", "ctrl+l", "escape"} <= shown
            assert any("not launched" in str(n.message) for n in app._notifications)
    run(go())


def test_clone_this_run_opens_the_form_filled_with_its_arguments(home, tmp_path, swift_fixtures):
    """C on the recorded run: the form's fields carry its flags, the rest (--model_type, --template) go to extra
    args, and the form's command is the run's (same flags)."""
    from engine import runs
    from engine.command import Command, flag_values

    argv = ["swift", "sft", "--model", "/tmp/tiny", "--model_type", "qwen2", "--template", "qwen2_5",
            "--dataset", "/data/a.json", "/data/b.json", "--num_train_epochs", "3", "--learning_rate", "2e-4",
            "--lora_rank", "16", "--max_length", "512", "--output_dir", str(tmp_path / "out")]
    rec = runs.create("sft", argv, str(tmp_path), label="clone me", output_dir=str(tmp_path / "out"))

    async def go():
        app = SwiftdeckApp(RunSource.of_record(rec), clock=fixed_clock, remember_theme=False)
        async with app.run_test(size=(120, 40)) as pilot:
            await settled(pilot)
            await pilot.press("C")
            assert await until(pilot, lambda: isinstance(app.screen, LaunchScreen))
            form = app.screen
            value = lambda name: form.query_one(f"#f-{name}", Input).value  # noqa: E731
            assert (value("model"), value("dataset"), value("epochs"), value("learning_rate"), value("lora_rank"),
                    value("max_length"), value("label")) == \
                ("/tmp/tiny", "/data/a.json /data/b.json", "3", "2e-4", "16", "512", "clone me")
            assert value("extra") == "--model_type qwen2 --template qwen2_5"
            assert form.plan is not None
            for flag in ("--model", "--model_type", "--template", "--dataset", "--num_train_epochs",
                         "--learning_rate", "--lora_rank", "--max_length", "--output_dir"):
                assert form.plan.flags(flag) == flag_values(list(Command.of_record(rec).args), flag), flag
            await pilot.press("escape")  # unchanged since it opened: leaves at once
            assert await until(pilot, lambda: len(app.screen_stack) == 1)
    run(go())
