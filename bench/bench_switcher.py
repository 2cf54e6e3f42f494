"""The run switcher with many runs (issue 9): 200 registry runs and an output dir with 500 checkpoints.

    PYTHONPATH=. .venv/bin/python bench/bench_switcher.py [--short] [--runs 200] [--checkpoints 500] [--before DIR]

A registry of `--runs` finished sft records, each with a small copy of the recorded ms-swift 4.6 run folder
(bench.bench_scale.make_registry), plus one output dir, given to the dashboard as its output dir, whose run folder
holds `--checkpoints` checkpoint-N folders (the recorded checkpoint's small files; no weights). The real dashboard,
headless (Textual run_test, 160x48), shows the run with the checkpoints; then `w`, twice (the second open reads only
what changed): `*_open_s`, seconds from the key until the switcher's table lists every run, as the Pilot sees it
(its key press returns when the app has gone idle); `*_painted_s`, until the end of the first frame drawn with every
row (Screen.wait_for_refresh). Each tree in its own process. `--short` (CI): 20 runs, 50 checkpoints. `--before DIR`: an older checkout too, alternated.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RUN = ROOT / "tests" / "data" / "ms-swift-4.6" / "run-v2"


def make_output_dir(out: Path, checkpoints: int) -> Path:
    folder = out / "v0-20260102-000000"
    folder.mkdir(parents=True)
    shutil.copyfile(RUN / "logging.jsonl", folder / "logging.jsonl")
    shutil.copyfile(RUN / "args.json", folder / "args.json")
    src = RUN / "checkpoint-24"
    for n in range(1, checkpoints + 1):
        ckpt = folder / f"checkpoint-{n}"
        shutil.copytree(src, ckpt)
        (ckpt / "adapter_model.safetensors").write_bytes((2).to_bytes(8, "little") + b"{}")
    return folder


def child(out: Path, runs: int) -> None:
    import asyncio

    from textual.widgets import DataTable

    from tui.app import SwiftdeckApp
    from tui.model import RunSource
    from tui.screens.runs import RunsScreen

    folder = next(out.glob("v0-*"))

    def listed(app) -> bool:
        screen = app.screen
        if not isinstance(screen, RunsScreen):
            return False
        table = screen.query_one(DataTable)
        return not table.loading and table.row_count >= runs

    async def painted(app, marks: dict) -> None:
        """The end of the first frame drawn with every row listed: what the user sees (the pilot's own wait
        below also waits for the app to go idle)."""
        while not listed(app):
            await asyncio.sleep(0.002)
        await app.screen.wait_for_refresh()
        marks["painted"] = time.perf_counter()

    async def go() -> dict:
        app = SwiftdeckApp(RunSource(run_dir=folder), output_dir=out, remember_theme=False, check_leftovers=False)
        res = {}
        async with app.run_test(size=(160, 48)) as pilot:
            await pilot.pause(1.0)
            for attempt in ("first", "second"):
                marks: dict = {}
                watcher = asyncio.create_task(painted(app, marks))
                t0 = time.perf_counter()
                await pilot.press("w")
                deadline = time.monotonic() + 120
                while time.monotonic() < deadline and not listed(app):
                    await pilot.pause(0.005)
                res[f"{attempt}_open_s"] = round(time.perf_counter() - t0, 3)
                await asyncio.wait_for(watcher, 30)
                res[f"{attempt}_painted_s"] = round(marks["painted"] - t0, 3)
                res["rows"] = app.screen.query_one(DataTable).row_count
                await pilot.press("escape")
                await pilot.pause(0.3)
        return res

    t0, c0 = time.perf_counter(), time.process_time()
    res = asyncio.run(go())
    res.update(wall_s=round(time.perf_counter() - t0, 2), cpu_s=round(time.process_time() - c0, 2),
               rss_mb=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024))
    print(json.dumps(res))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--short", action="store_true", help="20 runs, 50 checkpoints (CI)")
    ap.add_argument("--runs", type=int, default=200)
    ap.add_argument("--checkpoints", type=int, default=500)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--before", type=Path, help="a checkout of older code to measure beside this tree")
    ap.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    ns = ap.parse_args()
    if ns.child:
        child(Path(ns.child[0]), int(ns.child[1]))
        return
    nruns, nckpt, repeat = (20, 50, 1) if ns.short else (ns.runs, ns.checkpoints, ns.repeat)
    trees = [("before", ns.before.resolve()), ("after", ROOT)] if ns.before else [("after", ROOT)]
    sys.path.insert(0, str(ROOT))
    from bench.bench_scale import make_registry

    with tempfile.TemporaryDirectory(prefix="swiftdeck-bench-switcher-") as tmp:
        home = Path(tmp) / "home"
        make_registry(home, nruns, Path(tmp))
        out = Path(tmp) / "big-output"
        make_output_dir(out, nckpt)
        print(f"# {nruns} registry runs, {nckpt} checkpoints in {out}", flush=True)
        for _ in range(repeat):
            for name, tree in trees:
                env = {**os.environ, "PYTHONPATH": str(tree), "SWIFTDECK_HOME": str(home)}
                p = subprocess.run([sys.executable, os.path.abspath(__file__), "--child", str(out), str(nruns)],
                                   capture_output=True, text=True, env=env, cwd=tree)
                lines = p.stdout.strip().splitlines()
                print(f"{name:<6} {lines[-1] if p.returncode == 0 and lines else p.stderr[-500:]}", flush=True)


if __name__ == "__main__":
    main()
