"""A large console log in the log pane (issue 9): index it, open the pane at the end, jump to the first Traceback,
filter.

    PYTHONPATH=. .venv/bin/python bench/bench_log.py [--short] [--mb 1000] [--before DIR] [--cases store,app]

The log is made by repeating a block of ms-swift-like console lines (INFO lines, tqdm bars with `\\r` updates, step
dicts, warnings) with one Traceback at 70 % of the file; ~100 bytes a line, so 1000 MB ≈ 10 M lines. `--short`:
10 MB (CI). Each case runs in its own process (peak RSS is its own):
- store: engine.ingest.RunReader's console chunks fed to tui.logstore.LogStore as the dashboard does, then the
  first Traceback, a text filter and an error-level filter (LogStore.scan, what the filter worker runs);
- app:   the real dashboard headless (Textual run_test, 160x48) on the bare console log: until the log pane shows
  the last line at the bottom (open_end_s: a long log shows its end first, tui.logstore.LogStore.show_tail); until
  the whole log is indexed and shown (index_ready_s), with the longest stall of the event loop meanwhile (a timer
  every 20 ms records how late it fires); then `t` (jump to the first Traceback) and a text filter, with the longest
  stall while the filter worker runs.
`--before DIR` runs each case against an older checkout too (`git archive REV | tar -x -C DIR`), alternated.
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
NEEDLE = "needle-7f3a"  # the filter's text: one line in 1000


def block(n0: int) -> bytes:
    """~1000 lines / ~100 KB of console text starting at step n0."""
    out = []
    for i in range(1000):
        step = n0 + i
        k = i % 10
        if k == 0:
            out.append(f"[INFO:swift] global_step {step}: dataset shard {step % 97} loaded, {step * 13 % 9973} rows "
                       f"tokenized")
        elif k == 1:
            bar = "".join(f"\rTrain:  {p:3d}%|#####     | {step}/10000000 [01:02<05:00,  3.3it/s]" for p in (1, 2))
            out.append(bar.lstrip("\r"))
        elif k == 2:
            out.append("{'loss': '%.4f', 'grad_norm': '1.03', 'learning_rate': '9.9e-05', 'epoch': '0.%d', "
                       "'global_step/max_steps': '%d/10000000'}" % (2.0 - step * 1e-7, step % 10, step))
        elif k == 3 and i % 1000 == 3:
            out.append(f"[INFO:swift] {NEEDLE} marker at step {step}")
        elif k == 4 and i % 500 == 4:
            out.append("/usr/lib/python3.11/site-packages/torch/utils/checkpoint.py:90: UserWarning: None of the "
                       "inputs have requires_grad=True. Gradients will be None")
        else:
            out.append(f"[INFO:swift] rank0 step {step} tokens/s {step * 7 % 10007} mem 21.3 GiB "
                       f"padding ratio 0.{step % 100:02d}")
    return ("\n".join(out) + "\n").encode()


TRACEBACK = (b"Traceback (most recent call last):\n"
             b'  File "/usr/lib/python3.11/site-packages/swift/cli/sft.py", line 10, in <module>\n'
             b"    sft_main()\n"
             b"RuntimeError: CUDA error: an illegal memory access was encountered\n")


def write_log(path: Path, mb: int) -> int:
    """The log, `mb` MB; returns its line count."""
    target, lines, n0 = mb * 1_000_000, 0, 0
    tb_at = int(target * 0.7)
    written, tb_done = 0, False
    with open(path, "wb") as fh:
        while written < target:
            data = block(n0)
            n0 += 1000
            if not tb_done and written + len(data) >= tb_at:
                data += TRACEBACK
                tb_done = True
            fh.write(data)
            written += len(data)
            lines += data.count(b"\n")
    return lines


# ---------------------------------------------------------------- cases (in a child process)


def case_store(log: Path) -> dict:
    from engine.ingest import RunReader
    from tui.logstore import LogFilter, LogStore

    store = LogStore(log)
    reader = RunReader(console_log=log, on_console=lambda off, data, restarted: store.add(_chunk(off, data, restarted)))
    reader.emit_metrics = False  # as the dashboard reads (tui.model.RunWatch): the steps go to the state's columns
    t0 = time.perf_counter()
    reader.poll_all()
    t_index = time.perf_counter() - t0
    last = store.line(store.complete - 1)
    t0 = time.perf_counter()
    text_hits = store.scan(LogFilter(NEEDLE))
    t_text = time.perf_counter() - t0
    t0 = time.perf_counter()
    err_hits = store.scan(LogFilter("", "error"))
    t_err = time.perf_counter() - t0
    return {"lines": store.complete, "index_s": round(t_index, 2), "first_traceback": store.first_traceback,
            "last_line": last[:40], "scan_text_s": round(t_text, 2), "text_hits": len(text_hits),
            "scan_error_s": round(t_err, 2), "error_hits": len(err_hits)}


def _chunk(off, data, restarted):
    from engine.events import ConsoleAppended

    return ConsoleAppended(off, data, restarted)


def case_app(log: Path) -> dict:
    import asyncio

    from engine.ops.runs import resolve
    from tui.app import SwiftdeckApp
    from tui.widgets.log import LogPane, LogView

    with open(log, "rb") as fh:  # the last line (not the whole file: that would be the case's peak RSS)
        fh.seek(max(0, Path(log).stat().st_size - 200))
        expected_last = fh.read().rstrip(b"\n").rsplit(b"\n", 1)[-1].decode()

    async def go() -> dict:
        t_start = time.perf_counter()
        app = SwiftdeckApp(resolve(str(log)), remember_theme=False)
        out: dict = {}
        async with app.run_test(size=(160, 48)) as pilot:
            pane = app.query_one(LogPane)
            view = app.query_one(LogView)

            def bottom_shows_last() -> bool:
                store = view.store
                if store is None or store.count == 0 or not view.follow:
                    return False
                return store.line(store.count - 1) == expected_last and view.scroll_y >= view.max_scroll_y - 1

            def whole_log() -> bool:  # the whole index is shown (older code: there is nothing else)
                store = view.store
                return (store is not None and not getattr(store, "tail_shown", False) and store.complete > 0
                        and store.line(store.complete - 1) == expected_last)

            deadline = time.monotonic() + 900
            while time.monotonic() < deadline and not bottom_shows_last():
                await pilot.pause(0.02)
            out["open_end_s"] = round(time.perf_counter() - t_start, 2)
            # event-loop stalls: a 20 ms timer, how late it fires
            lags: list[float] = []
            last = [time.perf_counter()]

            def tick() -> None:
                now = time.perf_counter()
                lags.append(now - last[0] - 0.02)
                last[0] = now

            timer = app.set_interval(0.02, tick)
            while time.monotonic() < deadline and not whole_log():
                await pilot.pause(0.02)
            await pilot.pause()
            out["index_ready_s"] = round(time.perf_counter() - t_start, 2)
            out["lines"] = view.store.complete if view.store else 0
            out["at_bottom_after"] = bool(view.follow and view.scroll_y >= view.max_scroll_y - 1
                                          and view.store.line(view.store.count - 1) == expected_last)
            out["max_stall_ms_during_read"] = round(max(lags, default=0) * 1000)
            t0 = time.perf_counter()
            pane.action_traceback()
            await pilot.pause()
            out["traceback_jump_s"] = round(time.perf_counter() - t0, 3)
            out["traceback_row"] = int(view.scroll_y)
            from tui.logstore import LogFilter

            lags.clear()
            last[0] = time.perf_counter()
            t0 = time.perf_counter()
            pane.set_filter(LogFilter(NEEDLE))
            while time.monotonic() < deadline:
                if view.view is not None and len(view.view) and "filtering" not in str(
                        app.query_one("#log-status").render()):
                    break
                await pilot.pause(0.02)
            out["filter_s"] = round(time.perf_counter() - t0, 2)
            out["filter_hits"] = len(view.view or ())
            out["max_stall_ms_during_filter"] = round(max(lags, default=0) * 1000)
            timer.stop()
        return out

    return asyncio.run(go())


CASES = {"store": case_store, "app": case_app}


def child(case: str, log: Path) -> None:
    t0, c0 = time.perf_counter(), time.process_time()
    info = CASES[case](log)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"wall_s": round(wall, 2), "cpu_s": round(cpu, 2), "rss_mb": round(rss), **info}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--short", action="store_true", help="a 10 MB log (CI time)")
    ap.add_argument("--mb", type=int, default=1000)
    ap.add_argument("--before", type=Path, help="a checkout of older code to measure beside this tree")
    ap.add_argument("--cases", default="store,app")
    ap.add_argument("--case", help=argparse.SUPPRESS)
    ap.add_argument("--log", help=argparse.SUPPRESS)
    ns = ap.parse_args()
    if ns.case:
        child(ns.case, Path(ns.log))
        return
    mb = 10 if ns.short else ns.mb
    trees = [("before", ns.before.resolve()), ("after", ROOT)] if ns.before else [("after", ROOT)]
    with tempfile.TemporaryDirectory(prefix="swiftdeck-bench-log-") as tmp:
        log = Path(tmp) / "console.log"
        t0 = time.perf_counter()
        lines = write_log(log, mb)
        print(f"# console.log {log.stat().st_size / 1e6:.0f} MB, {lines:,} lines "
              f"(written in {time.perf_counter() - t0:.1f} s)", flush=True)
        for case in ns.cases.split(","):
            for name, tree in trees:
                env = {**os.environ, "PYTHONPATH": str(tree), "SWIFTDECK_HOME": str(Path(tmp) / f"home-{name}")}
                p = subprocess.run([sys.executable, os.path.abspath(__file__), "--case", case, "--log", str(log)],
                                   capture_output=True, text=True, env=env, cwd=tree)
                text = p.stdout.strip().splitlines()
                res = text[-1] if p.returncode == 0 and text else f"rc={p.returncode}: {p.stderr[-400:]}"
                print(f"{case:<6} {name:<6} {res}", flush=True)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
