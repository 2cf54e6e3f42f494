"""The dashboard on a real 2-GPU DDP run (the device machine; never in CI). Results: docs/MULTI_GPU.md.

    PYTHONPATH=.:/tmp/site PATH=/tmp/site/bin:$PATH NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 \
        NVSHMEM_DISABLE_NVLS=1 python3 bench/multigpu_dashboard_check.py --out $OUT

1. `swiftdeck train --gpus 0,1 --nproc 2 -- <the demo's LoRA>` (`python -m engine.cli`, as a user would), until
   the run has logged steps and both ranks are recorded;
2. the real dashboard (tui.app.SwiftdeckApp with its own GpuFeed: live NVML, nothing replayed) driven headless with
   Textual's run_test/Pilot at 200×56, until the GPU pane lists both ranks as this run's with their memory; then
   the GPU tab at 100×36;
3. a graceful `swiftdeck stop`, and what is left (processes, NVML memory of the run's pids).

Writes to --out: dashboard-200x56.svg, gpu-tab-100x36.svg (screenshots), gpu_pane.txt and log_ranks.txt (the panes'
text), nvml_snapshot.json (the raw NVML reading while the dashboard showed it: input for tests/data/multigpu),
console_tail.log, and dashboard_check.json with every check (ok or not) and its evidence. Exit code 0 when every
check passed.

Dry run on CPU (no NVML: the GPU checks fail, the rest is exercised): `--cpu --dtype float32`.
"""
from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import re
import shutil
import subprocess
import sys
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script: the repo's packages
from bench.multigpu_check import MULTICAST_OFF, steps_of  # noqa: E402  the same launch environment and step count

T0 = time.time()


def log(*parts) -> None:
    print(f"[{time.time() - T0:6.1f}s]", *parts, flush=True)


def cli(home: Path, *args: str, cwd: Path, timeout: float = 120) -> dict:
    env = {**os.environ, **MULTICAST_OFF, "SWIFTDECK_HOME": str(home), "PYTHONUNBUFFERED": "1"}
    t = time.time()
    try:
        proc = subprocess.run([sys.executable, "-m", "engine.cli", *args], env=env, cwd=cwd, capture_output=True,
                              text=True, timeout=timeout)
        out = {"argv": ["swiftdeck", *args], "rc": proc.returncode, "stdout": proc.stdout[-6000:],
               "stderr": proc.stderr[-3000:], "seconds": round(time.time() - t, 1)}
    except subprocess.TimeoutExpired as exc:
        out = {"argv": ["swiftdeck", *args], "rc": None, "timeout": True, "stdout": str(exc.stdout)[-3000:]}
    log("swiftdeck", *args[:5], "->", out.get("rc"), f"{out.get('seconds', '?')}s")
    return out


def wait(predicate, timeout: float, what: str, every: float = 0.5):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise TimeoutError(f"{what}: not within {timeout:.0f}s")


class Checks:
    def __init__(self, report: dict):
        self.report = report
        report.setdefault("checks", [])

    def __call__(self, name: str, ok: bool, evidence="") -> bool:
        self.report["checks"].append({"check": name, "ok": bool(ok), "evidence": evidence})
        log("check", "OK  " if ok else "FAIL", name)
        return bool(ok)


async def drive_dashboard(rec, out: Path, check: Checks, timeout: float) -> None:
    """The real app on the running run: live NVML through its own GpuFeed, one poll and one GPU reading a second."""
    from engine import gpu
    from tui.app import SwiftdeckApp
    from tui.model import RunSource
    from tui.widgets.gpu import GpuPane

    app = SwiftdeckApp(RunSource.of_record(rec), poll_s=1.0, gpu_s=1.0, remember_theme=False,
                       check_leftovers=False)

    def gpu_text() -> str:
        return str(app.query_one(GpuPane).query_one("#gpu-body").render())

    def both_ranks_shown() -> bool:
        view = app.query_one(GpuPane).view
        return bool(view and view.snapshot.available and len(view.ranks) == 2
                    and all(r.usage and r.usage.alive and r.usage.gpus and (r.usage.mem_bytes or 0) > 0
                            for r in view.ranks))

    async def until(pilot, predicate, seconds: float) -> bool:
        end = time.time() + seconds
        while time.time() < end:
            if predicate():
                return True
            await pilot.pause(0.25)
        return bool(predicate())

    def ranks_line() -> str:
        return str(app.query_one("#log-ranks").render())

    async with app.run_test(size=(200, 56)) as pilot:
        running = await until(pilot, lambda: "0 ● running" in ranks_line() and "1 ● running" in ranks_line()
                              and "showing rank 0 (master)" in ranks_line(), 30)
        (out / "log_ranks.txt").write_text(ranks_line() + "\n")
        check("log pane: both ranks running, the master rank's lines shown", running, ranks_line())
        shown = await until(pilot, both_ranks_shown, timeout)
        text = gpu_text()
        (out / "gpu_pane.txt").write_text(text + "\n")
        view = app.query_one(GpuPane).view
        if view is not None:
            (out / "nvml_snapshot.json").write_text(json.dumps(dataclasses.asdict(view.snapshot), indent=1))
        app.save_screenshot("dashboard-200x56.svg", str(out))
        check("GPU pane: both ranks alive, each listed by NVML with memory (live NVML)", shown, text)
        for line in view.ranks if view else []:
            u = line.usage
            check(f"GPU pane: rank {line.rank} on its recorded GPU {u.rank.gpu if u else '?'}",
                  bool(u and u.rank.gpu in [str(g) for g in u.gpus]),  # a resumed rank may hold a context elsewhere too
                  {"nvml_gpus": list(u.gpus) if u else None, "mem_bytes": u.mem_bytes if u else None,
                   "util": u.util_gpu if u else None})
        ours = text.partition("This run")[2].partition("Other processes on these GPUs")[0]
        others = text.partition("Other processes on these GPUs")[2]
        for line in view.ranks if view else []:
            if line.usage:
                pid = str(line.usage.rank.pid)
                check(f"GPU pane: rank {line.rank} (pid {pid}) under 'This run', not under 'Other processes'",
                      re.search(rf"rank {line.rank}\s.*GiB.*pid {pid}", ours) is not None and pid not in others,
                      {"this_run": ours.strip(), "others": others.strip()})
        for index in (0, 1):
            check(f"GPU pane: GPU{index} is marked as holding a rank of this run",
                  re.search(rf"GPU{index} .*← this run's rank", text) is not None, text.splitlines()[:12])
        nvml_direct = gpu.GpuSampler().sample()
        check("NVML read outside the app agrees: both rank pids listed",
              {str(p.pid) for g in nvml_direct.gpus for p in g.processes} >=
              {str(r.usage.rank.pid) for r in (view.ranks if view else []) if r.usage},
              [(g.index, [(p.pid, p.used_mem) for p in g.processes]) for g in nvml_direct.gpus])
        await pilot.resize_terminal(100, 36)
        await pilot.pause(0.5)
        await pilot.press("2")  # the GPU tab of a narrow screen
        await pilot.pause(1.5)
        app.save_screenshot("gpu-tab-100x36.svg", str(out))
        await pilot.press("q")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--dtype", default="bfloat16", help="float32 for a dry run on CPU (gloo)")
    ap.add_argument("--cpu", action="store_true", help="no --gpus (a dry run on a machine without GPUs)")
    ap.add_argument("--timeout", type=float, default=240, help="seconds for the run's first steps")
    ns = ap.parse_args()
    out = ns.out
    out.mkdir(parents=True, exist_ok=True)
    work = Path("/tmp/mg-dash")
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    home = work / "home"
    os.environ["SWIFTDECK_HOME"] = str(home)
    report: dict = {"started": time.strftime("%Y-%m-%d %H:%M:%S")}
    check = Checks(report)
    save = lambda: (out / "dashboard_check.json").write_text(json.dumps(report, indent=1, default=str))  # noqa
    run = None
    try:
        from engine import demo, runs

        assets = demo.build_demo(work / "demo")
        args = demo.demo_sft_args(assets, work / "output", epochs=3000, logging_steps=1, save_steps=10000)
        args[args.index("--torch_dtype") + 1] = ns.dtype
        devices = [] if ns.cpu else ["--gpus", "0,1"]
        report["launch"] = launched = cli(home, "train", *devices, "--nproc", "2", "--", *args, cwd=work)
        m = re.search(r"started run (\S+)", launched["stdout"])
        if not check("launched a 2-rank DDP run of the demo", m is not None, launched):
            return 1
        run = m.group(1)
        rec = wait(lambda: (r := runs.load(run)) and len(steps_of(r)) >= 3 and len(r.meta.get("ranks", [])) == 2
                   and r, ns.timeout, "3 logged steps with both ranks recorded")
        report["ranks"] = rec.meta.get("ranks")
        check("both ranks recorded", len(rec.meta.get("ranks", [])) == 2, rec.meta.get("ranks"))
        save()
        asyncio.run(drive_dashboard(rec, out, check, timeout=60))
        save()
    except Exception:  # noqa: BLE001 - a report, not a program
        report["error"] = traceback.format_exc()[-4000:]
        log("failed:", report["error"][-1500:])
    finally:
        if run is not None:
            from engine import gpu, ranks, runs, supervisor

            report["stop"] = cli(home, "stop", run, "--timeout", "60", cwd=work, timeout=120)
            try:
                rec = wait(lambda: (r := runs.load(run)) and not r.active and r, 90, "the run to end")
                pids = {rec.pid, *(int(p) for p, _ in rec.descendants), *(r.pid for r in ranks.recorded(rec))}
                snap = gpu.GpuSampler().sample()
                held = sum(p.used_mem or 0 for g in snap.gpus for p in g.processes if p.pid in pids)
                check("stopped: no process of the run left, no NVML memory of its pids",
                      not supervisor.live_tree(rec) and held == 0,
                      {"status": rec.status, "alive": [p.pid for p in supervisor.live_tree(rec)], "held": held})
            except Exception:  # noqa: BLE001
                report["stop_error"] = traceback.format_exc()[-2000:]
                supervisor.stop(runs.load(run), force=True, timeout_s=10)
            try:
                (out / "console_tail.log").write_text(runs.load(run).console_log.read_text(errors="replace")[-12000:])
            except OSError:
                pass
        save()
    ok = all(c["ok"] for c in report["checks"]) and "error" not in report
    log("done:", "every check passed" if ok else "some checks failed", f"({len(report['checks'])} checks)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
