"""Shared fixtures. Real ms-swift runs are marked `slow`; everything runs in CI on CPU."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO.parent / "shared" / "fixtures" / "ms-swift-4.6"


@pytest.fixture
def swift_fixtures() -> Path:
    """Real ms-swift 4.6 output recorded on an H200 (shared/, beside the repo)."""
    assert FIXTURES.is_dir(), f"recorded fixtures not found at {FIXTURES}"
    return FIXTURES


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    """An isolated swiftdeck data dir for one test."""
    path = tmp_path / "swiftdeck-home"
    path.mkdir()
    monkeypatch.setenv("SWIFTDECK_HOME", str(path))
    return path


@pytest.fixture(scope="session")
def demo_assets(tmp_path_factory):
    """The offline demo model + dataset, built once per test session."""
    from engine import demo

    return demo.build_demo(tmp_path_factory.mktemp("demo"))


@pytest.fixture(scope="session")
def python() -> str:
    return sys.executable
