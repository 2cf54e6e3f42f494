"""Start-up (issue 9): `swiftdeck --help`, and the first paint of the dashboard on a recorded run.

    PYTHONPATH=. .venv/bin/python bench/bench_startup.py [--short] [--repeat 7] [--before DIR]

- help:   wall time of `python -m tui.cli --help` and of the `swiftdeck` console script (median of --repeat runs,
          one warm-up run first; the file cache is warm, as for a user who runs it twice);
- import: the five biggest cumulative imports of `--help` (`python -X importtime`);
- paint:  a new process that opens the real dashboard headless (Textual run_test, 160x48) on the recorded ms-swift
          4.6 run (tests/data/ms-swift-4.6, a finished registry run): from the process start until the header shows
          the step and the loss chart has drawn its lines (median of --repeat).
`--short` (CI): 3 repeats. `--before DIR`: the same against an older checkout, alternated run by run.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "data" / "ms-swift-4.6"


def paint_child(run_id: str, t_spawn: float) -> None:
    """In the child: open the dashboard on `run_id`, print seconds since `t_spawn` (the parent's clock) at paint."""
    import asyncio

    t_imports = time.time()
    from tui.app import SwiftdeckApp
    from tui.model import resolve
    from tui.widgets.header import RunHeader
    from tui.widgets.loss import Chart

    async def go() -> dict:
        t_app = time.time()
        app = SwiftdeckApp(resolve(run_id), remember_theme=False, check_leftovers=False)
        async with app.run_test(size=(160, 48)) as pilot:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                header = str(app.query_one(RunHeader).render())
                if "24/24" in header and app.query_one("#loss-chart", Chart).lines:
                    break
                await pilot.pause(0.01)
            else:
                raise SystemExit("the dashboard did not paint the run within 60 s")
            now = time.time()
            return {"paint_s": round(now - t_spawn, 3), "imports_s": round(t_app - t_imports, 3),
                    "app_s": round(now - t_app, 3)}

    print(json.dumps(asyncio.run(go())))


def make_home(home: Path) -> str:
    os.environ["SWIFTDECK_HOME"] = str(home)
    sys.path.insert(0, str(ROOT / "tests"))
    from test_tui_support import make_run

    return make_run(FIXTURES, home / "w", "finished").id


def timed(argv: list[str], env: dict, cwd: Path) -> float:
    t0 = time.perf_counter()
    subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, cwd=cwd, check=True)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--short", action="store_true", help="3 repeats (CI)")
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--before", type=Path, help="a checkout of older code to measure beside this tree")
    ap.add_argument("--paint-child", nargs=2, help=argparse.SUPPRESS)
    ns = ap.parse_args()
    if ns.paint_child:
        paint_child(ns.paint_child[0], float(ns.paint_child[1]))
        return
    repeat = 3 if ns.short else ns.repeat
    py = sys.executable
    script = str(Path(py).with_name("swiftdeck"))
    trees = [("before", ns.before.resolve()), ("after", ROOT)] if ns.before else [("after", ROOT)]
    with tempfile.TemporaryDirectory(prefix="swiftdeck-bench-startup-") as tmp:
        home = Path(tmp) / "home"
        run_id = make_home(home)
        base = {**os.environ, "SWIFTDECK_HOME": str(home)}
        results: dict[str, dict[str, list[float]]] = {name: {} for name, _ in trees}
        for name, tree in trees:  # warm-up: the file cache, .pyc files
            env = {**base, "PYTHONPATH": str(tree)}
            timed([py, "-m", "tui.cli", "--help"], env, tree)
        for _ in range(repeat):
            for name, tree in trees:
                env = {**base, "PYTHONPATH": str(tree)}
                r = results[name]
                r.setdefault("python -c pass (baseline)", []).append(timed([py, "-c", "pass"], env, tree))
                r.setdefault("python -m tui.cli --help", []).append(timed([py, "-m", "tui.cli", "--help"], env, tree))
                if os.path.exists(script):
                    r.setdefault("swiftdeck --help", []).append(timed([script, "--help"], env, tree))
                t_spawn = time.time()
                out = subprocess.run([py, os.path.abspath(__file__), "--paint-child", run_id, str(t_spawn)],
                                     capture_output=True, text=True, env=env, cwd=tree)
                if out.returncode:
                    print(f"paint {name}: rc={out.returncode} {out.stderr[-400:]}", file=sys.stderr)
                    continue
                paint = json.loads(out.stdout.splitlines()[-1])
                r.setdefault("first paint, recorded run", []).append(paint["paint_s"])
                r.setdefault("  of which: imports", []).append(paint["imports_s"])
                r.setdefault("  of which: app start to paint", []).append(paint["app_s"])
        for name, tree in trees:
            for what, values in results[name].items():
                print(f"{name:<6} {what:<28} median {statistics.median(values):.3f} s  "
                      f"(min {min(values):.3f}, max {max(values):.3f}, n={len(values)})", flush=True)
            env = {**base, "PYTHONPATH": str(tree)}
            err = subprocess.run([py, "-X", "importtime", "-m", "tui.cli", "--help"], capture_output=True, text=True,
                                 env=env, cwd=tree).stderr
            rows = []
            for line in err.splitlines():
                parts = line.split("|")
                if len(parts) == 3 and parts[1].strip().isdigit():
                    rows.append((int(parts[1]), parts[2].rstrip()))
            top = sorted(rows, reverse=True)[:6]
            print(f"{name:<6} importtime (cumulative µs): " + ", ".join(f"{m.strip()} {us}" for us, m in top))


if __name__ == "__main__":
    main()
