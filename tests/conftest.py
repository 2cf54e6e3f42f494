"""Shared fixtures. Real ms-swift runs are marked `slow`; everything runs in CI on CPU."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# Tests drive swiftdeck's own ms-swift unless they point elsewhere themselves (tests/test_swift3*.py).
os.environ.pop("SWIFTDECK_SWIFT", None)
FIXTURES = REPO / "tests" / "data" / "ms-swift-4.6"


@pytest.fixture
def swift_fixtures() -> Path:
    """Real ms-swift 4.6 output recorded on an H200 (tests/data/ms-swift-4.6; its README.md says what each file is)."""
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


@pytest.fixture(scope="session")
def trained_demo(demo_assets, tmp_path_factory) -> Path:
    """The final checkpoint of one real `swift sft` on the demo (the demo's own recipe: the LoRA memorises the
    answers at temperature 0, e.g. 你是谁? -> ...CSDN 迪菲赫尔曼...). Trained once per session, about 1 min on 2
    idle CPU cores; its console goes to `<tmp>/sft.log`. Tests that use it are `slow`.
    For local iteration, SWIFTDECK_TRAINED_DEMO=<checkpoint of an earlier demo run> skips the training."""
    import signal
    import subprocess

    from engine import demo

    reuse = os.environ.get("SWIFTDECK_TRAINED_DEMO")
    if reuse:
        assert (Path(reuse) / "adapter_config.json").is_file(), f"SWIFTDECK_TRAINED_DEMO={reuse}: not a checkpoint"
        return Path(reuse).absolute()
    out = tmp_path_factory.mktemp("trained-demo")
    swift = Path(sys.executable).with_name("swift")
    argv = [str(swift), "sft", *demo.demo_sft_args(demo_assets, out / "output"), "--disable_tqdm", "true"]
    log = out / "sft.log"
    with open(log, "wb") as f:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=f, stderr=subprocess.STDOUT,
                                start_new_session=True)
        try:
            code = proc.wait(timeout=1500)
        except BaseException:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)  # our own session: the wrapper and the trainer go together
            proc.wait()
            raise
    tail = log.read_text(errors="replace").strip().splitlines()[-3:]
    assert code == 0, f"swift sft exited {code}: {' | '.join(tail)} (log: {log})"
    checkpoints = sorted((p for p in out.glob("output/v*/checkpoint-*") if p.name.rpartition("-")[2].isdigit()),
                         key=lambda p: int(p.name.rpartition("-")[2]))
    assert checkpoints, f"swift sft wrote no checkpoint (log: {log})"
    return checkpoints[-1]


@pytest.fixture(scope="session")
def swift_introspection(tmp_path_factory) -> Path:
    """engine.swift_args' cache after one real introspection of the installed ms-swift, made once per session
    (copy it into a test's `home` under cache/<its name> to skip the subprocess)."""
    from engine import swift_args

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SWIFTDECK_HOME", str(tmp_path_factory.mktemp("introspected-home")))
        swift_args.introspect("sft", "infer", "registry")
        return swift_args.cache_dir()


@pytest.fixture
def introspected_home(home, swift_introspection) -> Path:
    """`home` with engine.swift_args' cache of the installed ms-swift already in it (no 20 s introspection)."""
    import shutil

    shutil.copytree(swift_introspection, home / "cache" / swift_introspection.name)
    return home


@pytest.fixture
def _snapshot_dir(monkeypatch):
    """SVG snapshots live in tests/snapshots/<test file>/ (one place for every snapshot test)."""
    import pytest_textual_snapshot
    from syrupy.location import PyTestLocation

    class SnapshotsDir(pytest_textual_snapshot.SVGImageExtension):
        @classmethod
        def dirname(cls, *, test_location: PyTestLocation) -> str:
            return str(REPO / "tests" / "snapshots" / test_location.basename)

    monkeypatch.setattr(pytest_textual_snapshot, "SVGImageExtension", SnapshotsDir)
