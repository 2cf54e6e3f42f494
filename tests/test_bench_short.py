"""Every benchmark's short mode runs in CI (`python -m bench --short`), so that none of them can rot. It checks that
they run and report, not their numbers: speed goals live in docs/BENCHMARKS.md, never in a timed test."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1500)]


def test_every_benchmark_runs_in_its_short_mode(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "SWIFTDECK_HOME": str(tmp_path / "home")}
    proc = subprocess.run([sys.executable, "-m", "bench", "--short"], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=1400)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-6000:]
    for module in ("bench_scale", "bench_log", "bench_startup", "bench_switcher", "bench_tui", "bench_overhead",
                   "bench_dataset"):
        assert f"== bench.{module}" in out, out[-3000:]
