"""Words users see: the help of every command and the README never say "seed" (an internal name for the tutorial
swiftdeck follows; users know it as ms-swift's self-cognition tutorial and its identity questions)."""
from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from engine.cli import build_parser
from tui.cli import main

REPO = Path(__file__).resolve().parents[1]
DASHBOARD_ONLY = ("serve",)  # commands tui.cli handles without engine.cli


def commands() -> list[str]:
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return sorted({*sub.choices, *DASHBOARD_ONLY})


def help_text(argv: list[str], capsys) -> str:
    """What `swiftdeck ARGV` prints (argparse's --help ends the process with SystemExit)."""
    try:
        main(argv)
    except SystemExit:
        pass
    out = capsys.readouterr()
    return out.out + out.err


def test_top_level_help_lists_commands_and_never_says_seed(capsys):
    text = help_text(["--help"], capsys)
    assert "check-identity" in text and "usage:" in text
    assert "seed" not in text.lower()


@pytest.mark.parametrize("command", commands())
def test_command_help_never_says_seed(command, capsys):
    text = help_text([command, "--help"], capsys)
    assert text.strip(), command
    assert "seed" not in text.lower(), text


def test_the_command_list_names_the_identity_questions(capsys):
    assert "identity questions" in help_text(["--help"], capsys)


def test_readme_never_says_seed():
    text = (REPO / "README.md").read_text(encoding="utf-8").lower()
    assert "self-cognition" in text
    assert "seed" not in text
