"""SVG snapshots of the dashboard (pytest-textual-snapshot), stored in tests/snapshots/.

Recorded ms-swift 4.6 data (see test_tui_support.make_run) in the running, finished and failed states, with a
GPU, plus the no-GPU state, at 80×24 and 160×48. Deterministic: a fixed clock, one poll and one GPU reading
(the intervals are set beyond the test), and fixed GPU readings (hardware readings are inputs, like the clock).
Update after an intended change with `pytest tests/test_tui_snapshots.py --snapshot-update` and look at them.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from engine.gpu import NO_GPU, GpuInfo, GpuProcess, GpuSnapshot
from test_tui_support import FIXED_START, fixed_clock, make_run, settled
from tui.app import SwiftdeckApp
from tui.gpufeed import GpuFeed
from tui.model import RunSource

GIB = 1024 ** 3


pytestmark = pytest.mark.usefixtures("_snapshot_dir")


class FixedSampler:
    """One H200 reading shaped like the recorded run's card (fixtures/ms-swift-4.6: another process held 133.8 GiB)."""

    def __init__(self, gpu: bool):
        self.gpu = gpu

    def sample(self) -> GpuSnapshot:
        if not self.gpu:
            return GpuSnapshot(False, f"{NO_GPU}: NVML Shared Library Not Found", (), FIXED_START)
        card = GpuInfo(0, "NVIDIA H200", "GPU-0", mem_used=int(139.4 * GIB), mem_total=int(139.8 * GIB),
                       util_gpu=87.0, temperature=61.0, power_w=402.0, power_limit_w=700.0,
                       processes=(GpuProcess(2727, int(133.79 * GIB), "python3"),
                                  GpuProcess(31337, int(5.65 * GIB), "python3")))
        return GpuSnapshot(True, "", (card,), FIXED_START)

    def close(self) -> None:
        pass


def _app(tmp_path, swift_fixtures, state: str, gpu: bool) -> SwiftdeckApp:
    rec = make_run(swift_fixtures, tmp_path / "work", state)
    return SwiftdeckApp(RunSource.of_record(rec), clock=fixed_clock, gpu_feed=GpuFeed(FixedSampler(gpu)),
                        poll_s=3600, gpu_s=3600, remember_theme=False)


CASES = [("running", True), ("finished", True), ("failed", True), ("running", False)]


@pytest.mark.parametrize("size", [(80, 24), (160, 48)], ids=["80x24", "160x48"])
@pytest.mark.parametrize("state,gpu", CASES, ids=["running", "finished", "failed", "no-gpu"])
def test_dashboard_snapshot(snap_compare, home, tmp_path, swift_fixtures, state, gpu, size):
    app = _app(tmp_path, swift_fixtures, state, gpu)
    assert snap_compare(app, terminal_size=size, run_before=settled)
