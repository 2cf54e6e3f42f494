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
NICE: list[str] = []  # --dashboard-nice: a prefix for the dashboard's command


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


class Dashboard:
    """`swiftdeck ARGS` (attach …) in tmux or a pseudo-terminal, 160x48, optionally pinned to `cpus`; `proc` is its
    psutil.Process. Returns once it has had 3 s to start."""

    started = 0

    def __init__(self, args: list[str], tmp: Path, terminal: str, cpus=None, env: dict | None = None):
        pythonpath = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
        env = {**os.environ, **(env or {}), "SWIFTDECK_HOME": str(tmp / "home"), "PYTHONPATH": pythonpath,
               "TERM": "xterm-256color"}
        argv = [*NICE, sys.executable, "-m", "tui.cli", *args]
        Dashboard.started += 1  # a socket per dashboard: a new session on a server still going away dies with it
        self.term, self.sock = None, str(tmp / f"tmux-{Dashboard.started}.sock")
        if terminal == "tmux":
            pin = ["taskset", "-c", ",".join(map(str, sorted(cpus)))] if cpus else []
            self.tmux("new-session", "-d", "-s", "b", "-x", "160", "-y", "48", "env",
                      *(f"{k}={env[k]}" for k in ("SWIFTDECK_HOME", "PYTHONPATH", "TERM")), *pin, *argv)
            panes = self.tmux("list-panes", "-t", "b", "-F", "#{pane_pid}")
            if not panes.stdout.split():
                raise RuntimeError(f"the dashboard did not start in tmux: {panes.stderr.strip()}")
            pid = int(panes.stdout.split()[0])
        else:
            self.term = PtyTerminal(argv, env, cpus=cpus)
            pid = self.term.pid
        self.proc = psutil.Process(pid)
        time.sleep(3)  # the dashboard is up

    def tmux(self, *a):
        return subprocess.run(["tmux", "-S", self.sock, *a], capture_output=True, text=True)

    def cpu_s(self) -> float:
        return sum(self.proc.cpu_times()[:2])

    def check(self) -> None:
        screen = self.term.screen() if self.term else self.tmux("capture-pane", "-p", "-t", "b").stdout
        if "step" not in screen:
            raise RuntimeError(f"the dashboard did not show the run:\n{screen[-3000:]}")

    def close(self) -> None:
        if self.term:
            self.term.close()
        else:
            self.tmux("kill-server")


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
    dash_cpu = None
    console.write_bytes(b"")
    dash = Dashboard(["attach", str(console)], tmp, terminal, cpus) if attached else None
    proc = dash.proc if dash else None
    env = {**os.environ, **({"CUDA_VISIBLE_DEVICES": ""} if cpu_only else {})}
    try:
        t0 = time.time()
        c0 = dash.cpu_s() if dash else 0.0
        u0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        with open(console, "ab") as fh:
            rc = subprocess.run(argv, stdout=fh, stderr=subprocess.STDOUT, cwd=str(out), env=env,
                                preexec_fn=(lambda: os.sched_setaffinity(0, cpus)) if cpus else None).returncode
        wall = time.time() - t0
        u1 = resource.getrusage(resource.RUSAGE_CHILDREN)  # the training's whole tree, reaped through flock
        train_cpu = (u1.ru_utime + u1.ru_stime) - (u0.ru_utime + u0.ru_stime)
        if proc:
            dash_cpu = dash.cpu_s() - c0
            dash.check()
    finally:
        if dash:
            dash.close()
    if rc:
        raise RuntimeError(f"swift sft exit code {rc}: {console.read_text()[-1500:]}")
    jsonl = next(out.glob("v*-*/logging.jsonl"))
    last = next(r for r in map(json.loads, jsonl.read_text().strip().splitlines()[::-1]) if "train_runtime" in r)
    steps = int(str(last["global_step/max_steps"]).split("/")[0])
    runtime = float(last["train_runtime"])
    return {"steps": steps, "train_runtime_s": runtime, "steps_per_s": round(steps / runtime, 3),
            "wall_s": round(wall, 1), "train_cpu_s": round(train_cpu, 1),
            "dashboard_cpu_s": round(dash_cpu, 2) if dash_cpu is not None else None}


def logged_step(jsonl: Path, after: int, deadline: float) -> tuple[float, int]:
    """(the moment it was seen, step) of the first logged step above `after`: polled every 5 ms."""
    while time.time() < deadline:
        try:
            with open(jsonl, "rb") as fh:
                fh.seek(max(0, jsonl.stat().st_size - 4096))
                lines = fh.read().split(b"\n")
        except OSError:
            lines = []
        for line in reversed(lines[:-1]):
            try:
                step = int(str(json.loads(line)["global_step/max_steps"]).split("/")[0])
            except (ValueError, KeyError):
                continue
            if step > after:
                return time.time(), step
            break
        time.sleep(0.005)
    raise RuntimeError(f"no logged step after {after} in {jsonl}")


def within_run(assets, tmp: Path, windows: int, window_s: float, terminal: str, cpus=None,
               cpu_only: bool = False, settle_s: float = 8.0) -> dict:
    """One long training launched through swiftdeck (`swiftdeck train`, detached, as a user starts it) and watched
    in windows of `window_s`: alone, attached, attached, alone, alone, … (ABBA, so a drift falls on both sides). A
    window's rate = logged steps / time between the first new step seen at its start and at its end; the dashboard
    (`swiftdeck attach RUN`, the whole screen: GPU pane with NVML where there is a GPU, the run's process tree,
    log, chart) starts `settle_s` before its window (its start-up, paid once per attach, is not the cost of
    watching) and leaves after it, and an alone window waits the same."""
    from engine import demo

    out = tmp / "within"
    home = tmp / "home"
    env = {**os.environ, "SWIFTDECK_HOME": str(home),
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
           **({"CUDA_VISIBLE_DEVICES": ""} if cpu_only else {})}
    pin = (lambda: os.sched_setaffinity(0, cpus)) if cpus else None
    args = demo.demo_sft_args(assets, out, epochs=100_000, save_steps=10_000_000, logging_steps=1)
    started = subprocess.run([sys.executable, "-m", "tui.cli", "train", "--", *args], env=env, preexec_fn=pin,
                             capture_output=True, text=True)
    run_id = next((w for line in started.stdout.splitlines() if line.startswith("started run")
                   for w in line.split()[2:3]), None)
    if run_id is None:
        raise RuntimeError(f"swiftdeck train failed: {started.stdout}{started.stderr}")
    res: dict = {"run": run_id, "window_s": window_s, "settle_s": settle_s, "windows": []}
    try:
        deadline = time.time() + 300
        while not list(out.glob("v*-*/logging.jsonl")) and time.time() < deadline:
            time.sleep(0.2)
        jsonl = next(out.glob("v*-*/logging.jsonl"))
        _, step = logged_step(jsonl, 20, deadline)  # past the first steps (warm-up of the learning rate, caches)
        for i in range(windows):
            attached = (i % 4) in (1, 2)
            dash = Dashboard(["attach", run_id], tmp, terminal, cpus) \
                if attached else None
            time.sleep(settle_s - 3 if attached else settle_s)  # Dashboard() took 3 s
            try:
                t0, s0 = logged_step(jsonl, step, time.time() + 60)
                c0 = dash.cpu_s() if dash else None
                time.sleep(window_s)
                t1, step = logged_step(jsonl, s0, time.time() + 60)
                dash_cpu = dash.cpu_s() - c0 if dash else None
                if dash:
                    dash.check()
            finally:
                if dash:
                    dash.close()
            w = {"window": i + 1, "attached": attached, "steps": step - s0, "seconds": round(t1 - t0, 3),
                 "steps_per_s": round((step - s0) / (t1 - t0), 3),
                 "dashboard_cpu_s": round(dash_cpu, 2) if dash_cpu is not None else None,
                 "load": round(os.getloadavg()[0], 2)}
            res["windows"].append(w)
            print(f"window {i + 1:2d} {'attached' if attached else 'alone   '} {json.dumps(w)}", flush=True)
    finally:
        subprocess.run([sys.executable, "-m", "tui.cli", "stop", run_id, "--timeout", "60"], env=env,
                       capture_output=True, text=True)
    ws = res["windows"]
    pairs = [(ws[i], ws[i + 1]) for i in range(0, len(ws) - 1, 2)]
    res["ratios"] = [round((a if a["attached"] else b)["steps_per_s"] / (b if a["attached"] else a)["steps_per_s"], 4)
                     for a, b in pairs]
    rate = lambda side: sum(w["steps"] for w in ws if w["attached"] == side) / \
        sum(w["seconds"] for w in ws if w["attached"] == side)  # noqa: E731
    res["overall"] = round(rate(True) / rate(False), 4)
    res["median"] = statistics.median(res["ratios"])
    return res


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
    ap.add_argument("--within-run", action="store_true",
                    help="one long training, the dashboard attached and detached in turns (ABBA windows)")
    ap.add_argument("--windows", type=int, default=12)
    ap.add_argument("--window-s", type=float, default=12.0)
    ap.add_argument("--dashboard-nice", help="run the dashboard under `nice -n N`, or `idle` (chrt --idle 0)")
    ap.add_argument("--settle-s", type=float, default=8.0, help="wait before each window (the dashboard starts)")
    ns = ap.parse_args()
    pairs, epochs = (1, 2) if ns.short else (ns.pairs, ns.epochs)
    cpus = {int(c) for c in ns.cpus.split(",")} if ns.cpus else None
    if ns.dashboard_nice:
        NICE[:] = ["chrt", "--idle", "0"] if ns.dashboard_nice == "idle" else ["nice", "-n", ns.dashboard_nice]
    if ns.terminal == "tmux" and shutil.which("tmux") is None:
        print("bench_overhead --terminal tmux needs tmux", file=sys.stderr)
        return 2
    opts = dict(terminal=ns.terminal, cpus=cpus, cpu_only=ns.cpu_only)
    from engine import cli, demo

    info = cli.build_demo_assets()
    assets = demo.DemoAssets(model=Path(info["model"]), dataset=Path(info["dataset"]))
    if ns.within_run:
        with tempfile.TemporaryDirectory(prefix="swiftdeck-bench-overhead-") as tmp:
            windows, window_s = (2, 3.0) if ns.short else (ns.windows, ns.window_s)
            res = within_run(assets, Path(tmp), windows, window_s, settle_s=3.0 if ns.short else ns.settle_s, **opts)
        if ns.json:
            ns.json.write_text(json.dumps({"options": {**vars(ns), "json": str(ns.json)}, "cores": os.cpu_count(),
                                           **res}, indent=1))
        print(f"pairs {', '.join(f'{r:.3f}' for r in res['ratios'])}; median {res['median']:.3f}; all attached "
              f"windows / all alone windows {res['overall']:.3f}; goal ≥ 0.98")
        return 0
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
