"""What the dashboard costs the training (issue 9): the demo LoRA training alone vs with `swiftdeck attach` watching it.

    PYTHONPATH=. .venv/bin/python bench/bench_overhead.py [--short] [--pairs 3] [--epochs 20]

Each pair runs the same `swift sft` (engine.demo.demo_sft_args: the tiny Qwen2, LoRA, fp32, batch 10, 5 steps an
epoch, `--logging_steps 1` so the dashboard has a step a line to draw) twice: once alone, once with the real
dashboard (`swiftdeck attach CONSOLE_LOG` in tmux, 160x48) following its console log from before the first line. The
order flips every pair (alone first, then attached first), so a drift in the machine's load falls on both sides.
Every training runs under `flock /tmp/swiftdeck-slow.lock` (the machine is shared). Where tmux is missing (the
device machine), the dashboard runs in a pseudo-terminal of 160x48 that this script drains (`--terminal pty`).
`--cpus 0,1` pins the training and the dashboard to the same cores (a 2-core box on a bigger machine); `--cpu-only`
hides the GPUs from the training. Throughput = steps /
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


class PtyTerminal:
    """The dashboard in a pseudo-terminal of `cols`x`rows` (where tmux is missing): its output is drained on a
    thread, the last 256 KiB kept for the check that it showed the run."""

    def __init__(self, argv: list[str], env: dict, cols: int = 160, rows: int = 48, cpus=None):
        import fcntl
        import pty
        import struct
        import termios
        import threading

        master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
        self.proc = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, env=env, start_new_session=True,
                                     preexec_fn=(lambda: os.sched_setaffinity(0, cpus)) if cpus else None)
        os.close(slave)
        self.master, self.out = master, bytearray()
        self.pid = self.proc.pid
        self._reader = threading.Thread(target=self._drain, daemon=True)
        self._reader.start()

    def _drain(self) -> None:
        while True:
            try:
                data = os.read(self.master, 65536)
            except OSError:
                return
            if not data:
                return
            self.out += data
            del self.out[:-262144]

    def screen(self) -> str:
        return bytes(self.out).decode("utf-8", errors="replace")

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self.master)


def swift_command() -> str:
    beside = Path(sys.executable).with_name("swift")
    return str(beside) if beside.exists() else (shutil.which("swift") or str(beside))


def train(assets, out: Path, epochs: int, tmp: Path, attached: bool, terminal: str = "tmux", cpus=None,
          cpu_only: bool = False) -> dict:
    from engine import demo

    out.mkdir(parents=True)
    console = out / "console.log"
    lock = ["flock", LOCK] if shutil.which("flock") else []
    argv = [*lock, swift_command(), "sft",
            *demo.demo_sft_args(assets, out, epochs=epochs, save_steps=10_000, logging_steps=1)]
    sock, dash_cpu = str(tmp / "tmux.sock"), None
    tmux = lambda *a: subprocess.run(["tmux", "-S", sock, *a], capture_output=True, text=True)  # noqa: E731
    console.write_bytes(b"")
    proc = term = None
    pythonpath = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    dash = [sys.executable, "-m", "tui.cli", "attach", str(console)]
    if attached and terminal == "tmux":
        pin = ["taskset", "-c", ",".join(map(str, sorted(cpus)))] if cpus else []
        tmux("new-session", "-d", "-s", "b", "-x", "160", "-y", "48", "env", f"SWIFTDECK_HOME={tmp / 'home'}",
             f"PYTHONPATH={pythonpath}", "TERM=xterm-256color", *pin, *dash)
        pid = int(tmux("list-panes", "-t", "b", "-F", "#{pane_pid}").stdout.split()[0])
        proc = psutil.Process(pid)
    elif attached:
        term = PtyTerminal(dash, {**os.environ, "SWIFTDECK_HOME": str(tmp / "home"), "PYTHONPATH": pythonpath,
                                  "TERM": "xterm-256color"}, cpus=cpus)
        proc = psutil.Process(term.pid)
    if attached:
        time.sleep(3)  # the dashboard is up before the training starts
    env = {**os.environ, **({"CUDA_VISIBLE_DEVICES": ""} if cpu_only else {})}
    try:
        t0 = time.time()
        c0 = sum(proc.cpu_times()[:2]) if proc else 0.0
        u0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        with open(console, "ab") as fh:
            rc = subprocess.run(argv, stdout=fh, stderr=subprocess.STDOUT, cwd=str(out), env=env,
                                preexec_fn=(lambda: os.sched_setaffinity(0, cpus)) if cpus else None).returncode
        wall = time.time() - t0
        u1 = resource.getrusage(resource.RUSAGE_CHILDREN)  # the training's whole tree, reaped through flock
        train_cpu = (u1.ru_utime + u1.ru_stime) - (u0.ru_utime + u0.ru_stime)
        if proc:
            dash_cpu = sum(proc.cpu_times()[:2]) - c0
            screen = term.screen() if term else tmux("capture-pane", "-p", "-t", "b").stdout
            if "step" not in screen:
                raise RuntimeError(f"the dashboard did not show the run:\n{screen[-3000:]}")
    finally:
        if term:
            term.close()
        elif attached:
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
    ap.add_argument("--terminal", choices=("tmux", "pty"), default="tmux" if shutil.which("tmux") else "pty",
                    help="where the dashboard runs (default: tmux when installed)")
    ap.add_argument("--cpus", help="pin the training and the dashboard to these cores, e.g. 0,1")
    ap.add_argument("--cpu-only", action="store_true", help="train on the CPU even where a GPU is present")
    ap.add_argument("--json", type=Path, help="also write every run's numbers to this file")
    ns = ap.parse_args()
    pairs, epochs = (1, 2) if ns.short else (ns.pairs, ns.epochs)
    cpus = {int(c) for c in ns.cpus.split(",")} if ns.cpus else None
    if ns.terminal == "tmux" and shutil.which("tmux") is None:
        print("bench_overhead --terminal tmux needs tmux", file=sys.stderr)
        return 2
    opts = dict(terminal=ns.terminal, cpus=cpus, cpu_only=ns.cpu_only)
    from engine import cli, demo

    info = cli.build_demo_assets()
    assets = demo.DemoAssets(model=Path(info["model"]), dataset=Path(info["dataset"]))
    ratios, runs = [], []
    with tempfile.TemporaryDirectory(prefix="swiftdeck-bench-overhead-") as tmp:
        if not ns.short:  # a first training warms the file cache and the .pyc files for both sides
            r = train(assets, Path(tmp) / "warm-up", 2, Path(tmp), False, **opts)
            print(f"warm-up  {json.dumps(r)}", flush=True)
        for i in range(pairs):
            order = (False, True) if i % 2 == 0 else (True, False)
            res = {}
            for attached in order:
                r = train(assets, Path(tmp) / f"p{i}-{'attached' if attached else 'alone'}", epochs, Path(tmp),
                          attached, **opts)
                res[attached] = r
                runs.append({"pair": i + 1, "attached": attached, **r, "load": round(os.getloadavg()[0], 2)})
                print(f"pair {i + 1} {'attached' if attached else 'alone   '} {json.dumps(r)}  "
                      f"load {os.getloadavg()[0]:.1f}", flush=True)
            ratio = res[True]["steps_per_s"] / res[False]["steps_per_s"]
            ratios.append(ratio)
            print(f"pair {i + 1} throughput ratio attached/alone {ratio:.3f}", flush=True)
    if ns.json:
        ns.json.write_text(json.dumps({"options": {**vars(ns), "json": str(ns.json), "cpus": ns.cpus},
                                       "cores": os.cpu_count(), "runs": runs, "ratios": ratios,
                                       "median": statistics.median(ratios)}, indent=1))
    print(f"median ratio {statistics.median(ratios):.3f} over {len(ratios)} pairs "
          f"({', '.join(f'{r:.3f}' for r in ratios)}); goal ≥ 0.98")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
