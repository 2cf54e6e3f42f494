"""Long runs at scale (issue 9): a logging.jsonl of N steps in ms-swift 4.6's schema and a registry of many runs.

Run: `PYTHONPATH=. .venv/bin/python bench/bench_scale.py [--short | --steps 1000000] [--runs 200] [--before DIR]`.
`--before DIR`: a checkout of older code (e.g. `git archive <commit> | tar -x -C DIR`); every case then runs against
it and against this tree, one after the other, in the same run. Each case runs in a fresh subprocess so its peak
RSS (ru_maxrss) is its own; prints wall s, CPU s and peak RSS MB per case:

- reader:    engine.ingest.RunReader(run_dir).read_all()  (the engine's whole-history read)
- attach:    tui.model.RunWatch(source).poll() + what the loss pane keeps and computes for a frame, i.e. the
             dashboard's first paint minus Textual's own rendering
- app:       the real dashboard (SwiftdeckApp, headless at 200x56): first_paint_s when the loss chart first shows
             data (a sample of a long file, where the code has one) and a frame is drawn, Textual included; wall_s
             until the chart holds the whole history
- reopen:    the app case again on the same run folder, after a first open (engine.column_cache's copy, where
             the code has one)
- follow:    one poll of a caught-up RunWatch after 10 more steps were appended (per-poll cost of a live run), and
             one chart frame
- metrics:   `swiftdeck metrics RUN --json > /dev/null`   (and --format jsonl, csv where the CLI has them);
             `--repeat N` runs each format N times, before and after alternated (the machine's noise shows)
- runs:      `swiftdeck runs --json` with `--runs` registry records, each with a run folder

No assertions (goals: attach < 2 s and < 300 MB, metrics < 3 s, runs < 0.5 s; see docs/BENCHMARKS.md).
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
TREE = Path(os.environ.get("BENCH_TREE", ROOT))  # the code measured (--before runs the cases against another tree)
sys.path.insert(0, str(TREE))

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


class _PaneData:
    """What the loss pane keeps and computes for a frame, for either code: views of the columns (NewRows, this
    tree) or a Series per key filled from Metrics (before): the loss with its EMA and every other key for the small
    charts; a frame downsamples the loss EMA to ~200 columns and the four small charts to ~50."""

    MINI = ("learning_rate", "grad_norm", "token_acc", "memory(GiB)")

    def __init__(self):
        self.loss = None
        self.minis: dict = {}

    def add(self, new) -> None:
        from tui import series

        if hasattr(new, "train"):  # NewRows
            if self.loss is None:
                self.loss = series.ColumnSeries(new.train, "loss")
                self.minis = {k: series.ColumnSeries(new.train, k) for k in new.train.cols if k != "loss"}
            for s in (self.loss, *self.minis.values()):
                s.update(new.t1)
            return
        if self.loss is None:
            self.loss = series.Series()
        for m in new:
            for k, v in m.values.items():
                if k == "loss":
                    self.loss.append(m.step, v)
                elif not k.startswith("eval"):
                    self.minis.setdefault(k, series.Series()).append(m.step, v)

    def frame(self) -> int:
        from tui.series import downsample

        xs, _ = downsample(self.loss.xs, self.loss.ema, 400)
        for k in self.MINI:
            if k in self.minis:
                downsample(self.minis[k].xs, self.minis[k].ys, 100)
        return len(xs)


def case_attach(run_dir: Path) -> dict:
    w = _watch(run_dir)
    u = w.poll()
    pane = _PaneData()
    pane.add(u.new_metrics)
    points = pane.frame()
    return {"header_step": u.header.step, "new_metrics": len(u.new_metrics), "chart_points": points}


T0 = time.perf_counter()  # reset by child() when a case starts


def case_app(run_dir: Path) -> dict:
    """The real dashboard, headless: `first_paint_s` when the loss chart first shows data (a preview from a sample
    of the file where the code has one) and a frame is drawn; then until the chart holds the whole history."""
    import asyncio

    from engine.ops.runs import resolve
    from tui.app import SwiftdeckApp
    from tui.widgets.loss import Chart, LossPane

    async def go() -> dict:
        app = SwiftdeckApp(resolve(str(run_dir)), remember_theme=False)
        first = None
        async with app.run_test(size=(200, 56)) as pilot:
            deadline = time.monotonic() + 300
            while time.monotonic() < deadline:
                pane = app.query_one(LossPane)
                if pane.has_metrics and app.query_one("#loss-chart", Chart).lines:
                    if first is None:
                        await pilot.pause()  # the frame is drawn
                        first = (time.perf_counter() - T0, len(pane.loss))
                    watch = app.watch
                    if len(pane.loss) == len(watch.observer.state.train) and watch.observer.caught_up:
                        break
                await pilot.pause(0.02)
            await pilot.pause()
            return {"first_paint_s": round(first[0], 3), "first_points": first[1],
                    "loss_points": len(app.query_one(LossPane).loss)}

    return asyncio.run(go())


def case_follow(run_dir: Path) -> dict:
    """A poll of a caught-up run that gained 10 steps, and one chart frame (the loss pane takes the new steps and
    downsamples the whole series to the chart's width)."""
    w = _watch(run_dir)
    pane = _PaneData()
    pane.add(w.poll().new_metrics)
    pane.frame()  # the first paint
    line = SAMPLE.read_text().splitlines()[0]
    with open(run_dir / "logging.jsonl", "a") as fh:
        for n in range(10):
            fh.write(line.replace('"1/24"', f'"{3_000_000 + n}/3000010"') + "\n")  # after the last step
    t0 = time.perf_counter()
    u = w.poll()
    t1 = time.perf_counter()
    pane.add(u.new_metrics)
    pane.frame()
    t2 = time.perf_counter()
    return {"poll_ms": round((t1 - t0) * 1000, 1), "frame_ms": round((t2 - t1) * 1000, 1),
            "new": len(u.new_metrics)}


# runs a command (stdout to /dev/null) and prints its rc, wall s, CPU s and peak RSS MB as JSON
WRAP = ("import json,resource,subprocess,sys,time;t=time.perf_counter();"
        "r=subprocess.run(sys.argv[1:],stdout=subprocess.DEVNULL).returncode;u=resource.getrusage(resource.RUSAGE_CHILDREN);"
        "print(json.dumps({'rc':r,'wall_s':round(time.perf_counter()-t,3),'cpu_s':round(u.ru_utime+u.ru_stime,3),"
        "'rss_mb':u.ru_maxrss//1024}))")

CASES = {"reader": case_reader, "attach": case_attach, "app": case_app, "follow": case_follow}


def child(case: str, run_dir: Path) -> None:
    global T0
    t0 = T0 = time.perf_counter()
    c0 = time.process_time()
    info = CASES[case](run_dir)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"wall_s": round(wall, 3), "cpu_s": round(cpu, 3), "rss_mb": round(rss), **info}))


def run_child(argv: list[str], env: dict | None = None, capture: bool = True,
              cwd: Path = ROOT) -> tuple[float, float, dict | str]:
    """(wall s, peak RSS MB, parsed last stdout line or its text) of a subprocess."""
    t0 = time.perf_counter()
    p = subprocess.Popen(argv, stdout=subprocess.PIPE if capture else subprocess.DEVNULL, stderr=subprocess.PIPE,
                         env={**os.environ, **(env or {})}, cwd=cwd)
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
    ap.add_argument("--before", type=Path, help="a checkout of older code to measure beside this tree")
    ap.add_argument("--cases", default="reader,attach,app,reopen,follow,metrics,runs")
    ap.add_argument("--repeat", type=int, default=1, help="metrics: runs per format and tree, alternated")
    ap.add_argument("--case", help=argparse.SUPPRESS)
    ap.add_argument("--dir", help=argparse.SUPPRESS)
    ns = ap.parse_args()
    if ns.case:
        child(ns.case, Path(ns.dir))
        return
    steps, nruns = (20_000, 20) if ns.short else (ns.steps, ns.runs)
    cases = ns.cases.split(",")
    py = sys.executable
    trees = [("before", ns.before.resolve()), ("after", ROOT)] if ns.before else [("after", ROOT)]
    with tempfile.TemporaryDirectory(prefix="swiftdeck-bench-scale-") as tmp:
        home = Path(tmp) / "home"
        source = Path(tmp) / "v0-20260101-000000"
        source.mkdir()
        t0 = time.perf_counter()
        write_jsonl(source / "logging.jsonl", steps)
        size = (source / "logging.jsonl").stat().st_size
        print(f"# {steps:,} steps, logging.jsonl {size / 1e6:.0f} MB (written in {time.perf_counter() - t0:.1f} s)",
              flush=True)
        run_dir = Path(tmp) / "case" / "v0-20260101-000000"  # a fresh copy per case: follow appends to it
        for case in (c for c in ("reader", "attach", "app", "reopen", "follow") if c in cases):
            for name, tree in trees:
                shutil.rmtree(run_dir.parent, ignore_errors=True)
                run_dir.mkdir(parents=True)
                shutil.copyfile(source / "logging.jsonl", run_dir / "logging.jsonl")
                env = {"PYTHONPATH": str(tree), "BENCH_TREE": str(tree), "SWIFTDECK_HOME": str(home / name)}
                argv = [py, __file__, "--case", "app" if case == "reopen" else case, "--dir", str(run_dir)]
                if case == "reopen":  # the same run opened a second time (a copy of its columns may be there)
                    run_child(argv, env, cwd=tree)
                _, _, info = run_child(argv, env, cwd=tree)
                print(f"{case:<8} {name:<6} {json.dumps(info)}", flush=True)
        for fmt in ("--json", "--format=jsonl", "--format=csv") if "metrics" in cases else ():
            for name, tree in trees * max(1, ns.repeat):
                env = {"PYTHONPATH": str(tree), "SWIFTDECK_HOME": str(home / name)}
                probe = subprocess.run([py, "-m", "tui.cli", "metrics", "--help"], capture_output=True, text=True,
                                       env={**os.environ, **env}, cwd=tree).stdout
                if fmt.startswith("--format") and "--format" not in probe:
                    print(f"metrics {fmt:<15} {name:<6} (no such option)")
                    continue
                argv = [py, "-c", WRAP, py, "-m", "tui.cli", "metrics", str(source), fmt]
                _, _, info = run_child(argv, env, cwd=tree)
                print(f"metrics {fmt:<15} {name:<6} {json.dumps(info)}", flush=True)
        if "runs" in cases:
            reg = Path(tmp) / "registry"
            make_registry(reg, nruns, source)
            for name, tree in trees:
                argv = [py, "-c", WRAP, py, "-m", "tui.cli", "runs", "--json"]
                _, _, info = run_child(argv, {"PYTHONPATH": str(tree), "SWIFTDECK_HOME": str(reg)}, cwd=tree)
                print(f"runs     ({nruns} records) {name:<6} {json.dumps(info)}", flush=True)


if __name__ == "__main__":
    main()
