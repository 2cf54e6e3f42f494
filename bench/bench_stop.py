"""Graceful stop of a demo training: seconds from the stop to the checkpoint, to the end of the trainer's main, and
to the moment no process of the run is left.

    .venv/bin/python -m bench.bench_stop [--workers 4] [--repeat 2] [--freeze-workers] [--demo DIR]

Starts the demo LoRA run through engine.training (with `--dataloader_num_workers N`) in a temporary
SWIFTDECK_HOME, waits for step 3, calls engine.supervisor.stop (graceful: SIGUSR1, ms-swift saves at the end of
the step) and watches the console and the process tree from another thread. Prints one JSON line per stop.
`--freeze-workers` stops (SIGSTOP) the dataloader workers just before the stop, so that they cannot leave by
themselves: the slow teardown seen on an H200 (workers leaving one at a time, ~22 s), which the small CPU demo
does not show. Measure on an idle machine: the numbers move with the load.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import re
import tempfile
import threading
import time
from pathlib import Path

import psutil

SAVING = "Saving model checkpoint to"
MAIN_END = "End time of running main"


class Watch(threading.Thread):
    """Seconds (time.time()) at which the console first shows each mark and at which the run's tree is empty."""

    def __init__(self, run_id: str):
        super().__init__(daemon=True)
        self.run_id, self.seen, self.gone, self.done = run_id, {}, None, threading.Event()

    def run(self) -> None:
        from engine import runs, supervisor

        rec = runs.load(self.run_id)
        offset, pending = 0, b""
        while not self.done.is_set():
            with open(rec.console_log, "rb") as fh:
                fh.seek(offset)
                data = fh.read()
            offset += len(data)
            *lines, pending = re.split(rb"[\r\n]", pending + data)
            for line in lines:
                for mark in (SAVING, MAIN_END):
                    if mark.encode() in line:
                        self.seen.setdefault(mark, time.time())
            if self.gone is None and SAVING in self.seen and not supervisor.live_tree(runs._read(self.run_id)):
                self.gone = time.time()
            time.sleep(0.05)


def one_stop(assets, workers: int, work: Path, freeze: bool = False) -> dict:
    from engine import demo, runs, supervisor, training
    from engine.ingest import RunReader

    work.mkdir(parents=True)
    argv = demo.demo_sft_args(assets, work / "output", epochs=400, save_steps=100000, logging_steps=1)
    argv[argv.index("--dataloader_num_workers") + 1] = str(workers)
    rec = training.start(argv, cwd=work)
    reader = RunReader(console_log=rec.console_log)
    deadline = time.time() + 600
    while not (reader.poll() is not None and reader.state.metrics and reader.state.metrics[-1].step >= 3):
        if time.time() > deadline or not runs.load(rec.id).active:
            raise RuntimeError(f"run {rec.id} did not reach step 3")
        time.sleep(0.2)
    tree = len(supervisor.live_tree(runs.load(rec.id)))
    if freeze:
        for worker in (w for t in supervisor.trainer_processes(runs.load(rec.id)) for w in t.children()):
            worker.suspend()
    watch = Watch(rec.id)
    watch.start()
    t0 = time.time()
    report = supervisor.stop(runs.load(rec.id))
    returned = time.time()
    end = time.time() + 30
    while watch.gone is None and time.time() < end:
        time.sleep(0.05)
    watch.done.set()
    rec = runs.load(rec.id)
    saved, main_end = watch.seen.get(SAVING), watch.seen.get(MAIN_END)

    def since(a, b):
        return round(b - a, 2) if a and b else None

    return {"workers": workers, "frozen_workers": freeze, "processes_at_stop": tree, "status": rec.status,
            "exit_code": rec.exit_code,
            "stop_to_saving_s": since(t0, saved), "saving_to_main_end_s": since(saved, main_end),
            "main_end_to_no_process_s": since(main_end, watch.gone), "saving_to_no_process_s": since(saved, watch.gone),
            "stop_call_s": round(returned - t0, 2), "left": report.left, "steps": report.steps}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--workers", type=int, default=4)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--freeze-workers", action="store_true", help="SIGSTOP the dataloader workers before the stop")
    ap.add_argument("--demo", help="an already built demo folder (default: build one in the temporary home)")
    ns = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="sdk-bench-stop-"))
    os.environ["SWIFTDECK_HOME"] = str(work / "home")
    from engine import demo

    assets = demo.build_demo(Path(ns.demo) if ns.demo else work / "demo")
    machine = f"{platform.machine()} {psutil.cpu_count()} cores, {psutil.virtual_memory().total / 2**30:.0f} GiB"
    for i in range(ns.repeat):
        result = one_stop(assets, ns.workers, work / f"run{i}", ns.freeze_workers)
        print(json.dumps({"machine": machine, "date": time.strftime("%Y-%m-%d"),
                          "load_avg_1m": round(os.getloadavg()[0], 1), **result}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
