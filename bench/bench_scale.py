"""Long runs at scale (issue 9): a logging.jsonl of N steps in ms-swift 4.6's schema and a registry of many runs.

Run: `PYTHONPATH=. .venv/bin/python bench/bench_scale.py [--short | --steps 1000000] [--runs 200]`. Each case runs in
a fresh subprocess so its peak RSS (ru_maxrss) is its own; prints wall s, CPU s and peak RSS MB per case:

- reader:    engine.ingest.RunReader(run_dir).read_all()  (the engine's whole-history read)
- attach:    tui.model.RunWatch(source).poll() + the loss chart's data (downsampled), i.e. the dashboard's first paint
             minus Textual's own rendering
- metrics:   `swiftdeck metrics RUN --json > /dev/null`   (and --format jsonl, csv where the CLI has them)
- follow:    one poll of a caught-up RunWatch after 10 more steps were appended (per-poll cost of a live run)
- runs:      `swiftdeck runs --json` with `--runs` registry records, each with a run folder

No assertions (goals: attach < 2 s and < 300 MB, metrics < 3 s, runs < 0.5 s; see docs/BENCHMARKS.md).
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SAMPLE = ROOT / "tests" / "data" / "ms-swift-4.6" / "run-v2" / "logging.jsonl"


def write_jsonl(path: Path, steps: int, eval_every: int = 500) -> None:
    """`steps` train records (a real ms-swift 4.6 line with new step/loss), an eval record every `eval_every`."""
    import math

    template = json.loads(SAMPLE.read_text().splitlines()[0])
    with open(path, "w") as fh:
        buf = []
        for n in range(1, steps + 1):
            rec = dict(template)
            rec["loss"] = round(2.0 + math.sin(n / 997) + 3.0 / (1 + n / 1000), 8)
            rec["epoch"] = round(n / steps * 3, 6)
            rec["global_step/max_steps"] = f"{n}/{steps}"
            buf.append(json.dumps(rec))
            if n % eval_every == 0:
                buf.append(json.dumps({"eval_loss": rec["loss"] + 0.1, "eval_token_acc": 0.5, "epoch": rec["epoch"],
                                       "global_step/max_steps": f"{n}/{steps}"}))
            if len(buf) >= 10000:
                fh.write("\n".join(buf) + "\n")
                buf = []
        if buf:
            fh.write("\n".join(buf) + "\n")


def make_registry(home: Path, count: int, run_dir: Path) -> None:
    """`count` finished sft records whose output_dir holds a small copy of a real run folder."""
    os.environ["SWIFTDECK_HOME"] = str(home)
    from engine import runs

    for i in range(count):
        out = home / "outputs" / f"o{i}"
        folder = out / f"v0-20260101-{i:06d}"
        folder.mkdir(parents=True)
        (folder / "logging.jsonl").write_bytes(SAMPLE.read_bytes())
        rec = runs.create("sft", ["swift", "sft", "--output_dir", str(out)], str(home), output_dir=str(out))
        (rec.folder / "console.log").write_text(f"[INFO:swift] output_dir: {folder}\n")

        def done(r):
            r.status, r.exit_code = "finished", 0
        runs.update(rec.id, done)


# ---------------------------------------------------------------- cases (each in its own process)


def case_reader(run_dir: Path) -> dict:
    from engine.ingest import RunReader

    st = RunReader(run_dir=run_dir).read_all()
    return {"logged_steps": len(st.metrics)}


def _watch(run_dir: Path):
    from engine.ops.runs import resolve
    from tui.model import RunWatch

    return RunWatch(resolve(str(run_dir)), clock=lambda: 0.0)


def _chart_data(watch) -> int:
    """What the loss pane computes for a frame: the loss series' points, downsampled to ~200 columns."""
    from tui.series import Series, downsample

    s = Series()
    for m in watch.observer.state.metrics:
        if "loss" in m.values:
            s.append(float(m.step), m.values["loss"])
    xs, ys = downsample(s.xs, s.ema, 400)
    return len(xs)


def case_attach(run_dir: Path) -> dict:
    w = _watch(run_dir)
    u = w.poll()
    points = _chart_data(w)
    return {"header_step": u.header.step, "new_metrics": len(u.new_metrics), "chart_points": points}


def case_follow(run_dir: Path) -> dict:
    """A poll of a caught-up run that gained 10 steps, and one chart frame (the loss pane appends the new points
    to its series and downsamples the whole series to the chart's width)."""
    from tui.series import Series, downsample

    w = _watch(run_dir)
    w.poll()
    s = Series()
    for m in w.observer.state.metrics:
        if "loss" in m.values:
            s.append(float(m.step), m.values["loss"])
    with open(run_dir / "logging.jsonl", "a") as fh:
        line = SAMPLE.read_text().splitlines()[0]
        for _ in range(10):
            fh.write(line + "\n")
    t0 = time.perf_counter()
    u = w.poll()
    t1 = time.perf_counter()
    for m in u.new_metrics:
        s.append(float(m.step), m.values["loss"])
    downsample(s.xs, s.ema, 400)
    t2 = time.perf_counter()
    return {"poll_ms": round((t1 - t0) * 1000, 1), "frame_ms": round((t2 - t1) * 1000, 1)}


# runs a command (stdout to /dev/null) and prints its rc, wall s, CPU s and peak RSS MB as JSON
WRAP = ("import json,resource,subprocess,sys,time;t=time.perf_counter();"
        "r=subprocess.run(sys.argv[1:],stdout=subprocess.DEVNULL).returncode;u=resource.getrusage(resource.RUSAGE_CHILDREN);"
        "print(json.dumps({'rc':r,'wall_s':round(time.perf_counter()-t,3),'cpu_s':round(u.ru_utime+u.ru_stime,3),"
        "'rss_mb':u.ru_maxrss//1024}))")

CASES = {"reader": case_reader, "attach": case_attach, "follow": case_follow}


def child(case: str, run_dir: Path) -> None:
    t0, c0 = time.perf_counter(), time.process_time()
    info = CASES[case](run_dir)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"wall_s": round(wall, 3), "cpu_s": round(cpu, 3), "rss_mb": round(rss), **info}))


def run_child(argv: list[str], env: dict | None = None, capture: bool = True) -> tuple[float, float, dict | str]:
    """(wall s, peak RSS MB, parsed last stdout line or its text) of a subprocess."""
    t0 = time.perf_counter()
    p = subprocess.Popen(argv, stdout=subprocess.PIPE if capture else subprocess.DEVNULL, stderr=subprocess.PIPE,
                         env={**os.environ, **(env or {})}, cwd=ROOT)
    out, err = p.communicate()
    wall = time.perf_counter() - t0
    if p.returncode:
        return wall, 0.0, f"rc={p.returncode}: {err.decode()[-300:]}"
    rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024  # the max over children so far
    text = (out or b"").decode().strip().splitlines()
    try:
        return wall, rss, json.loads(text[-1]) if text else ""
    except ValueError:
        return wall, rss, ""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--short", action="store_true", help="20,000 steps, 20 runs (CI time)")
    ap.add_argument("--steps", type=int, default=1_000_000)
    ap.add_argument("--runs", type=int, default=200)
    ap.add_argument("--case", help=argparse.SUPPRESS)
    ap.add_argument("--dir", help=argparse.SUPPRESS)
    ns = ap.parse_args()
    if ns.case:
        child(ns.case, Path(ns.dir))
        return
    steps, nruns = (20_000, 20) if ns.short else (ns.steps, ns.runs)
    py = sys.executable
    env = {"PYTHONPATH": str(ROOT)}
    with tempfile.TemporaryDirectory(prefix="swiftdeck-bench-scale-") as tmp:
        run_dir = Path(tmp) / "v0-20260101-000000"
        run_dir.mkdir()
        t0 = time.perf_counter()
        write_jsonl(run_dir / "logging.jsonl", steps)
        size = (run_dir / "logging.jsonl").stat().st_size
        print(f"# {steps:,} steps, logging.jsonl {size / 1e6:.0f} MB (written in {time.perf_counter() - t0:.1f} s)")
        for case in ("reader", "attach", "follow"):
            wall, _, info = run_child([py, __file__, "--case", case, "--dir", str(run_dir)], env)
            print(f"{case:<8} {json.dumps(info)}")
        for fmt in ("--json", "--format=jsonl", "--format=csv"):
            probe = subprocess.run([py, "-m", "tui.cli", "metrics", "--help"], capture_output=True, text=True,
                                   env={**os.environ, **env}, cwd=ROOT).stdout
            if fmt.startswith("--format") and "--format" not in probe:
                continue
            argv = [py, "-c", WRAP,
                    py, "-m", "tui.cli", "metrics", str(run_dir), fmt]
            _, _, info = run_child(argv, env)
            print(f"metrics {fmt:<15} {json.dumps(info)}")
        home = Path(tmp) / "home"
        make_registry(home, nruns, run_dir)
        argv = [py, "-c", WRAP,
                py, "-m", "tui.cli", "runs", "--json"]
        _, _, info = run_child(argv, {**env, "SWIFTDECK_HOME": str(home)})
        print(f"runs     ({nruns} records) {json.dumps(info)}")


if __name__ == "__main__":
    main()
