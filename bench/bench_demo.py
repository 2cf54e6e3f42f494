"""Demo training through the engine: build time, wall time, peak RSS of the run's process tree.

    .venv/bin/python -m bench.bench_demo [--epochs N]

Starts the same run `swiftdeck demo` starts (in a temporary SWIFTDECK_HOME), samples the run's process tree with
psutil every 0.25 s, and prints a JSON line. Measure on an idle machine: numbers move with the load.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time

import psutil


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int)
    ns = ap.parse_args()
    os.environ["SWIFTDECK_HOME"] = tempfile.mkdtemp(prefix="sdk-bench-")
    from engine import cli, runs, supervisor
    from engine.ingest import RunReader

    t0 = time.time()
    cli.build_demo_assets()
    build_s = time.time() - t0
    t1 = time.time()
    rec = cli.start_demo(epochs=ns.epochs)
    peak_single, peak_tree, first_step = 0, 0, None
    reader = RunReader(console_log=rec.console_log)
    while (rec := runs.load(rec.id)).active:
        rss = []
        for proc in supervisor.live_tree(rec):
            try:
                rss.append(proc.memory_info().rss)
            except psutil.NoSuchProcess:
                pass
        peak_single, peak_tree = max(peak_single, max(rss, default=0)), max(peak_tree, sum(rss))
        if first_step is None:
            reader.poll()
            if reader.state.metrics:
                first_step = time.time() - t1
        time.sleep(0.25)
    reader.poll()
    last = reader.state.metrics[-1] if reader.state.metrics else None
    print(json.dumps({
        "machine": f"{platform.machine()} {psutil.cpu_count()} cores, {psutil.virtual_memory().total / 2**30:.0f} GiB",
        "date": time.strftime("%Y-%m-%d"), "load_avg_1m_at_end": os.getloadavg()[0],
        "status": rec.status, "exit_code": rec.exit_code, "build_s": round(build_s, 1),
        "train_wall_s": round(time.time() - t1, 1), "first_logged_step_s": round(first_step or 0, 1),
        "steps": last.step if last else None, "final_loss": last.values.get("loss") if last else None,
        "peak_rss_largest_process_mb": round(peak_single / 2**20), "peak_rss_tree_sum_mb": round(peak_tree / 2**20),
        "train_runtime_s": reader.state.finished.summary.get("train_runtime") if reader.state.finished else None,
    }))
    return 0 if rec.status == "finished" else 1


if __name__ == "__main__":
    raise SystemExit(main())
