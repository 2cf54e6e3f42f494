"""CPU cost of the dashboard while it watches a run: the real `swiftdeck attach` in a real terminal (tmux).

    .venv/bin/python bench/bench_tui.py [--short] [--seconds 60] [--write]

A writer thread plays a training run into a console log and logging.jsonl (the recorded ms-swift 4.6 lines,
at a given rate), registered as a running swiftdeck run. The TUI process's CPU time (user+sys, psutil) over the
window / wall time = percent of one core; RSS is the TUI process's resident memory, sampled every second over the
window (the peak). Goal (issue 9): watching a live run for 60 s costs < 3 % of a core and < 150 MB. Scenarios:
- idle:     a finished run, nothing changes;
- training: a tqdm update every 0.3 s and a logged step (console dict + jsonl record) every 1.5 s, as the demo;
- burst:    2000 console lines a second (a chatty run), to check the redraw throttling;
- fast:     25 logged steps a second (`--logging_steps 1` on a GPU: the demo on an H200), each a tqdm update, a
            console dict and a jsonl record.
`--write` puts the table in docs/BENCHMARKS.md (the dashboard section only). `--short` (CI): the training scenario
only, 5 s after a 3 s warm-up. `--profile FILE --all-threads`: every thread under cProfile, the frames drawn and who
asked for each refresh (FILE.txt); with SWIFTDECK_PROFILE_TIMED=1 no cProfile, the CPU time of the frame, the poll,
the GPU sample and each widget's rendering instead (bench/profile_threads.py).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO / "tests" / "data" / "ms-swift-4.6"
BEGIN, END = "<!-- bench_tui:begin -->", "<!-- bench_tui:end -->"


def make_record(home: Path, state: str) -> str:
    sys.path.insert(0, str(REPO / "tests"))
    os.environ["SWIFTDECK_HOME"] = str(home)
    from test_tui_support import make_run

    return make_run(FIXTURES, home / f"w-{state}", "running" if state != "idle" else "finished").id


def writer(console: Path, jsonl: Path, mode: str, stop: threading.Event) -> None:
    step, last_log = 20, time.time()
    bar = "Train:  {p:3d}%|#####     | {s}/100000 [00:05<05:00,  3.3it/s]"
    with open(console, "ab", buffering=0) as con, open(jsonl, "ab", buffering=0) as jl:
        while not stop.is_set():
            if mode == "burst":
                con.write(b"".join(f"[INFO:swift] chatty line {step}-{i}\n".encode() for i in range(200)))
                time.sleep(0.1)
                step += 1
                continue
            step += 1
            con.write(("\r" + bar.format(p=step % 100, s=step)).encode())
            if mode == "fast" or time.time() - last_log >= 1.5:
                last_log = time.time()
                rec = {"loss": 6.0 - step * 1e-4, "grad_norm": 1.0, "learning_rate": 1e-4, "token_acc": 0.2,
                       "epoch": step / 8, "global_step/max_steps": f"{step}/100000", "elapsed_time": "5s",
                       "remaining_time": "5h", "train_speed(s/it)": 0.3}
                con.write(("\n" + repr({k: str(v) for k, v in rec.items()}) + "\n").encode())
                jl.write((json.dumps(rec) + "\n").encode())
            time.sleep(0.04 if mode == "fast" else 0.3)


def measure(state: str, seconds: float, warmup: float = 8.0, profile: str | None = None,
            all_threads: bool = False) -> tuple[float, float]:
    """(percent of one core, peak RSS MB) of the dashboard over `seconds`."""
    home = Path(tempfile.mkdtemp(prefix=f"bench-tui-{state}-"))
    run_id = make_record(home, state)
    from engine import runs

    rec = runs.load(run_id)
    stop = threading.Event()
    thread = None
    if state != "idle":
        thread = threading.Thread(target=writer, args=(rec.console_log, Path(rec.run_dir) / "logging.jsonl",
                                                       state, stop), daemon=True)
    sock = str(home / "tmux.sock")
    tmux = lambda *a: subprocess.run(["tmux", "-S", sock, *a], capture_output=True, text=True)  # noqa: E731
    swiftdeck = [str(Path(sys.executable).with_name("swiftdeck"))]
    if profile:  # cProfile of the main thread (Textual's loop); written when the app quits (q below)
        swiftdeck = [sys.executable, "-m", "cProfile", "-o", profile, "-m", "tui.cli"]
        if all_threads:  # every thread, and the frames drawn (bench/profile_threads.py)
            passed = [f"{k}={os.environ[k]}" for k in ("SWIFTDECK_PROFILE_STACK", "SWIFTDECK_PROFILE_TIMED")
                      if os.environ.get(k)]
            swiftdeck = [f"SWIFTDECK_PROFILE={profile}", *passed, f"PYTHONPATH={REPO}", sys.executable,
                         str(REPO / "bench" / "profile_threads.py")]
    tmux("new-session", "-d", "-s", "b", "-x", "160", "-y", "48", "env", f"SWIFTDECK_HOME={home}",
         "TERM=xterm-256color", *swiftdeck, "attach", run_id)
    try:
        pid = int(tmux("list-panes", "-t", "b", "-F", "#{pane_pid}").stdout.split()[0])
        proc = psutil.Process(pid)
        if thread:
            thread.start()
        time.sleep(warmup)
        t0, c0 = time.time(), sum(proc.cpu_times()[:2])
        rss = proc.memory_info().rss
        while time.time() < t0 + seconds:
            time.sleep(min(1.0, max(0.0, t0 + seconds - time.time())))
            rss = max(rss, proc.memory_info().rss)
        t1, c1 = time.time(), sum(proc.cpu_times()[:2])
        screen = tmux("capture-pane", "-p", "-t", "b").stdout
        if not re.search(r"step \d+/", screen):
            raise RuntimeError(f"the dashboard did not show the run:\n{screen}")
        if profile:
            tmux("send-keys", "-t", "b", "q")
            deadline = time.time() + 20
            done = Path(profile + ".txt") if all_threads else Path(profile)  # (written after the profile)
            while time.time() < deadline and not (done.exists() and done.stat().st_size):
                time.sleep(0.2)
        return 100.0 * (c1 - c0) / (t1 - t0), rss / 2**20
    finally:
        stop.set()
        tmux("kill-server")
        shutil.rmtree(home, ignore_errors=True)


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {psutil.cpu_count()} cores, {psutil.virtual_memory().total / 2**30:.0f} GiB, Python {platform.python_version()}"


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--seconds", type=float, default=60.0)
    p.add_argument("--short", action="store_true", help="the training scenario, 5 s (CI)")
    p.add_argument("--profile", metavar="FILE", help="a scenario under cProfile (main thread), to FILE")
    p.add_argument("--all-threads", action="store_true",
                   help="with --profile: every thread, and frame counts (FILE.txt: bench/profile_threads.py)")
    p.add_argument("--scenario", default="training", choices=("idle", "training", "burst", "fast"),
                   help="the scenario of --profile and --only")
    p.add_argument("--only", action="store_true", help="measure --scenario alone (no table written)")
    p.add_argument("--write", action="store_true", help="update the dashboard section of docs/BENCHMARKS.md")
    ns = p.parse_args()
    if shutil.which("tmux") is None:
        print("bench_tui needs tmux", file=sys.stderr)
        return 2
    results = {}
    if ns.profile:
        cpu, rss = measure(ns.scenario, ns.seconds, profile=str(Path(ns.profile).resolve()), all_threads=ns.all_threads)
        print(f"{ns.scenario}  {cpu:5.1f} % of one core (under cProfile), peak RSS {rss:.0f} MB; profile in "
              f"{ns.profile}")
        return 0
    if ns.only:
        cpu, rss = measure(ns.scenario, ns.seconds)
        print(f"{ns.scenario}  {cpu:5.1f} % of one core, peak RSS {rss:.0f} MB ({ns.seconds:.0f} s)")
        return 0
    if ns.short:
        cpu, rss = measure("training", 5.0, warmup=3.0)
        print(f"training  {cpu:5.1f} % of one core, peak RSS {rss:.0f} MB (5 s)")
        return 0
    for state in ("idle", "training", "burst", "fast"):
        results[state] = measure(state, ns.seconds)
        print(f"{state:9} {results[state][0]:5.1f} % of one core, peak RSS {results[state][1]:.0f} MB", flush=True)
    load = os.getloadavg()[0]
    lines = [
        BEGIN,
        "## Dashboard (bench/bench_tui.py)",
        "",
        f"`swiftdeck attach` in tmux at 160×48, CPU time of the TUI process over {ns.seconds:.0f} s "
        f"(after {8} s warm-up), as % of one core, and its peak RSS (sampled every second). Goal (issue 9): "
        f"< 3 % of a core, < 150 MB. {time.strftime('%Y-%m-%d')}, {machine()}; "
        f"load average {load:.1f} during the run (the CPU is shared with other work).",
        "",
        "| scenario | what changes | TUI CPU | peak RSS |",
        "| --- | --- | --- | --- |",
        f"| idle | a finished run, nothing changes | {results['idle'][0]:.1f} % | {results['idle'][1]:.0f} MB |",
        f"| training | tqdm update every 0.3 s, a logged step every 1.5 s (1 Hz redraw) | "
        f"{results['training'][0]:.1f} % | {results['training'][1]:.0f} MB |",
        f"| burst | 2000 console lines/s | {results['burst'][0]:.1f} % | {results['burst'][1]:.0f} MB |",
        f"| fast | 25 logged steps/s (`--logging_steps 1` on a GPU) | {results['fast'][0]:.1f} % | "
        f"{results['fast'][1]:.0f} MB |",
        "",
        "Polling and GPU sampling run on worker threads once a second; a poll applies all new lines, metrics and "
        "checkpoints in one go, so a burst costs one repaint per second, not one per line. The loss chart "
        "(textual-plotext) is redrawn at most every 2 s and the four small charts every 5 s; a plotext frame "
        "costs ~15 ms of CPU at 100×30 against ~37 ms for textual-plot (measured, see tui/widgets/loss.py).",
        END,
    ]
    if ns.write:
        doc = REPO / "docs" / "BENCHMARKS.md"
        text = doc.read_text() if doc.exists() else "# Benchmarks\n"
        block = "\n".join(lines)
        if BEGIN in text and END in text:
            text = text[: text.index(BEGIN)] + block + text[text.index(END) + len(END):]
        else:
            text = text.rstrip("\n") + "\n\n" + block + "\n"
        tmp = doc.with_suffix(".tmp")
        tmp.write_text(text)
        os.replace(tmp, doc)
        print(f"wrote {doc}")
    else:
        print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
