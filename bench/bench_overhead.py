"""What the dashboard costs the training (issue 9): the demo LoRA training alone vs with `swiftdeck attach` watching it.

    PYTHONPATH=. .venv/bin/python bench/bench_overhead.py [--short] [--pairs 3] [--epochs 20]

Each pair runs the same `swift sft` (engine.demo.demo_sft_args: the tiny Qwen2, LoRA, fp32, batch 10, 5 steps an
epoch, `--logging_steps 1` so the dashboard has a step a line to draw) twice: once alone, once with the real
dashboard (`swiftdeck attach CONSOLE_LOG` in tmux, 160x48) following its console log from before the first line. The
order flips every pair (alone first, then attached first), so a drift in the machine's load falls on both sides.
Every training runs under `flock /tmp/swiftdeck-slow.lock` (the machine is shared). Throughput = steps /
`train_runtime` (ms-swift's own timer of the training loop, from logging.jsonl's last record); the ratio is attached
/ alone, per pair, and its median. Beside it: the CPU time of the training's whole process tree (imports and model
load included; less sensitive to other work on the machine than wall time) and the dashboard's own CPU time over the
attached run, the most it could have taken from the training. A 2-epoch warm-up run comes first (not counted).
`--short` (CI): one pair of 2 epochs, no warm-up.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import resource

ROOT = Path(__file__).resolve().parents[1]
LOCK = "/tmp/swiftdeck-slow.lock"


def train(assets, out: Path, epochs: int, tmp: Path, attached: bool) -> dict:
    from engine import demo

    out.mkdir(parents=True)
    console = out / "console.log"
    argv = ["flock", LOCK, str(Path(sys.executable).with_name("swift")), "sft",
            *demo.demo_sft_args(assets, out, epochs=epochs, save_steps=10_000, logging_steps=1)]
    sock, dash_cpu = str(tmp / "tmux.sock"), None
    tmux = lambda *a: subprocess.run(["tmux", "-S", sock, *a], capture_output=True, text=True)  # noqa: E731
    console.write_bytes(b"")
    proc = None
    if attached:
        tmux("new-session", "-d", "-s", "b", "-x", "160", "-y", "48", "env", f"SWIFTDECK_HOME={tmp / 'home'}",
             f"PYTHONPATH={ROOT}", "TERM=xterm-256color", sys.executable, "-m", "tui.cli", "attach", str(console))
        pid = int(tmux("list-panes", "-t", "b", "-F", "#{pane_pid}").stdout.split()[0])
        proc = psutil.Process(pid)
        time.sleep(3)  # the dashboard is up before the training starts
    try:
        t0 = time.time()
        c0 = sum(proc.cpu_times()[:2]) if proc else 0.0
        u0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        with open(console, "ab") as fh:
            rc = subprocess.run(argv, stdout=fh, stderr=subprocess.STDOUT, cwd=str(out)).returncode
        wall = time.time() - t0
        u1 = resource.getrusage(resource.RUSAGE_CHILDREN)  # the training's whole tree, reaped through flock
        train_cpu = (u1.ru_utime + u1.ru_stime) - (u0.ru_utime + u0.ru_stime)
        if proc:
            dash_cpu = sum(proc.cpu_times()[:2]) - c0
            screen = tmux("capture-pane", "-p", "-t", "b").stdout
            if "step" not in screen:
                raise RuntimeError(f"the dashboard did not show the run:\n{screen}")
    finally:
        if attached:
            tmux("kill-server")
    if rc:
        raise RuntimeError(f"swift sft exit code {rc}: {console.read_text()[-1500:]}")
    jsonl = next(out.glob("v*-*/logging.jsonl"))
    last = next(r for r in map(json.loads, jsonl.read_text().strip().splitlines()[::-1]) if "train_runtime" in r)
    steps = int(str(last["global_step/max_steps"]).split("/")[0])
    runtime = float(last["train_runtime"])
    return {"steps": steps, "train_runtime_s": runtime, "steps_per_s": round(steps / runtime, 3),
            "wall_s": round(wall, 1), "train_cpu_s": round(train_cpu, 1),
            "dashboard_cpu_s": round(dash_cpu, 2) if dash_cpu is not None else None}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--short", action="store_true", help="one pair, 2 epochs (CI)")
    ap.add_argument("--pairs", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=20)
    ns = ap.parse_args()
    pairs, epochs = (1, 2) if ns.short else (ns.pairs, ns.epochs)
    if shutil.which("tmux") is None or shutil.which("flock") is None:
        print("bench_overhead needs tmux and flock", file=sys.stderr)
        return 2
    from engine import cli, demo

    info = cli.build_demo_assets()
    assets = demo.DemoAssets(model=Path(info["model"]), dataset=Path(info["dataset"]))
    ratios = []
    with tempfile.TemporaryDirectory(prefix="swiftdeck-bench-overhead-") as tmp:
        if not ns.short:  # a first training warms the file cache and the .pyc files for both sides
            r = train(assets, Path(tmp) / "warm-up", 2, Path(tmp), False)
            print(f"warm-up  {json.dumps(r)}", flush=True)
        for i in range(pairs):
            order = (False, True) if i % 2 == 0 else (True, False)
            res = {}
            for attached in order:
                r = train(assets, Path(tmp) / f"p{i}-{'attached' if attached else 'alone'}", epochs, Path(tmp),
                          attached)
                res[attached] = r
                print(f"pair {i + 1} {'attached' if attached else 'alone   '} {json.dumps(r)}  "
                      f"load {os.getloadavg()[0]:.1f}", flush=True)
            ratio = res[True]["steps_per_s"] / res[False]["steps_per_s"]
            ratios.append(ratio)
            print(f"pair {i + 1} throughput ratio attached/alone {ratio:.3f}", flush=True)
    print(f"median ratio {statistics.median(ratios):.3f} over {len(ratios)} pairs "
          f"({', '.join(f'{r:.3f}' for r in ratios)}); goal ≥ 0.98")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
