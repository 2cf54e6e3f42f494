"""Multi-GPU runs of swiftdeck on a real 2-GPU host (the device machine; never in CI). Results: docs/MULTI_GPU.md.

    PYTHONPATH=.:/tmp/site PATH=/tmp/site/bin:$PATH NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 \
        NVSHMEM_DISABLE_NVLS=1 python3 bench/multigpu_check.py --out $OUT --budget 540

Each scenario drives swiftdeck the way a user does (`python -m engine.cli train|stop|metrics ...` in a subprocess,
each with its own timeout) and checks processes and GPU memory with psutil and NVML. Scenarios, in order, until
the time budget is spent (what did not run says so in the report):

  ddp        2-GPU DDP LoRA of the demo model (`train --gpus 0,1 --nproc 2`): both ranks' memory attributed to the
             run through NVML, a graceful `stop` (checkpoint), resumed on the same GPUs, then force-stopped mid-step
  oom        a holder process fills GPU 1; the preflight refuses the launch; launched anyway (`--share-gpus`) with a
             batch that cannot fit there: rank 1 runs out of memory, the whole run is stopped, diagnosed cuda_oom
             with its rank and GPU
  zero2      the same LoRA under DeepSpeed ZeRO-2 (`--deepspeed zero2`), to its end
  two_nodes  the 2-node simulation (NNODES=2, NODE_RANK=0/1, NPROC_PER_NODE=1, MASTER_ADDR=127.0.0.1, one GPU per
             node), each node its own swiftdeck (own SWIFTDECK_HOME): a graceful stop on node 1, then a second run
             force-stopped on node 0
After each: no process of the run and no GPU memory of its processes (NVML). The report is written after every
scenario ($OUT/multigpu.json), with console tails beside it.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
import traceback
from pathlib import Path

MULTICAST_OFF = {"NCCL_NVLS_ENABLE": "0", "TORCH_SYMM_MEM_DISABLE_MULTICAST": "1", "NVSHMEM_DISABLE_NVLS": "1"}
HOLDER = r"""
import sys, torch
free, total = torch.cuda.mem_get_info()
keep = int(float(sys.argv[1]) * 2**30)
x = torch.empty(max(free - keep, 0), dtype=torch.uint8, device="cuda:0")
torch.cuda.synchronize()
print("holding", x.numel(), "free after", torch.cuda.mem_get_info()[0], flush=True)
sys.stdin.readline()
"""
T0 = time.time()


class Budget(Exception):
    pass


def log(*parts) -> None:
    print(f"[{time.time() - T0:6.1f}s]", *parts, flush=True)


class Ctx:
    def __init__(self, out: Path, budget: float):
        self.out, self.deadline = out, T0 + budget
        self.work = Path("/tmp/mg-work")
        self.work.mkdir(exist_ok=True)
        self.report: dict = {"scenarios": {}, "not_run": []}

    def left(self) -> float:
        return self.deadline - time.time()

    def need(self, seconds: float) -> None:
        if self.left() < seconds:
            raise Budget(f"{self.left():.0f}s left, {seconds:.0f}s needed")

    def save(self) -> None:
        (self.out / "multigpu.json").write_text(json.dumps(self.report, indent=1, default=str))

    def cli(self, home: Path, *args: str, timeout: float = 120, cwd: Path | None = None) -> dict:
        env = {**os.environ, **MULTICAST_OFF, "SWIFTDECK_HOME": str(home), "PYTHONUNBUFFERED": "1"}
        t = time.time()
        try:
            proc = subprocess.run([sys.executable, "-m", "engine.cli", *args], env=env, cwd=cwd or self.work,
                                  capture_output=True, text=True, timeout=min(timeout, max(self.left(), 5)))
            out = {"argv": ["swiftdeck", *args], "rc": proc.returncode, "stdout": proc.stdout[-6000:],
                   "stderr": proc.stderr[-3000:], "seconds": round(time.time() - t, 1)}
        except subprocess.TimeoutExpired as exc:
            out = {"argv": ["swiftdeck", *args], "rc": None, "timeout": True, "stdout": str(exc.stdout)[-3000:]}
        log("swiftdeck", *args[:4], "->", out.get("rc"), f"{out.get('seconds', '?')}s")
        return out


def use_home(home: Path) -> None:
    """Point this process's engine at one swiftdeck data dir (each simulated node has its own)."""
    os.environ["SWIFTDECK_HOME"] = str(home)


def run_id(out: dict) -> str:
    m = re.search(r"started run (\S+)", out["stdout"])
    if not m:
        raise RuntimeError(f"not started: {out['stdout'][-1500:]} {out['stderr'][-1500:]}")
    return m.group(1)


def wait(predicate, timeout: float, what: str, ctx: Ctx, every: float = 0.5):
    deadline = min(time.time() + timeout, ctx.deadline)
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise TimeoutError(f"{what}: not within {timeout:.0f}s")


def steps_of(rec) -> list[int]:
    from engine.events import Metrics
    from engine.ingest import RunReader

    reader = RunReader(console_log=rec.console_log, run_dir=Path(rec.run_dir) if rec.run_dir else None)
    return [e.step for e in reader.poll() if isinstance(e, Metrics) and "loss" in e.values]


def gpu_view(rec) -> dict:
    """NVML: each rank of the run with the GPU(s) that list it and its memory; the run's processes vs others."""
    from engine import gpu, ranks, supervisor

    tree = supervisor.live_tree(rec)
    snap = gpu.default_sampler().sample()
    ours, others = gpu.attribute(snap, {p.pid for p in tree})
    return {"ranks": [{"rank": u.rank.rank, "local_rank": u.rank.local_rank, "recorded_gpu": u.rank.gpu,
                       "pid": u.rank.pid, "alive": u.alive, "nvml_gpus": list(u.gpus), "mem_mib":
                           round((u.mem_bytes or 0) / 2**20), "util": u.util_gpu}
                      for u in ranks.usage(rec, snap, tree)],
            "ours": [(p.pid, p.name, round((p.used_mem or 0) / 2**20)) for p in ours],
            "others": [(p.pid, p.name, round((p.used_mem or 0) / 2**20)) for p in others],
            "gpus": [(g.index, round(g.mem_used / 2**20), g.util_gpu) for g in snap.gpus]}


def leftovers(rec) -> dict:
    """Processes of the run still alive and NVML memory still listed for any pid the run ever had."""
    from engine import gpu, ranks, runs, supervisor

    rec = runs.load(rec.id)
    pids = {rec.pid, *(int(p) for p, _ in rec.descendants), *(r.pid for r in ranks.recorded(rec))}
    snap = gpu.default_sampler().sample()
    held = sum(p.used_mem or 0 for g in snap.gpus for p in g.processes if p.pid in pids)
    return {"alive": [p.pid for p in supervisor.live_tree(rec)], "nvml_mib_of_its_pids": round(held / 2**20),
            "gpu_used_mib": [round(g.mem_used / 2**20) for g in snap.gpus]}


def record_of(run: str):
    from engine import runs

    return runs.load(run)


def ended(run: str, ctx: Ctx, timeout: float):
    return wait(lambda: (r := record_of(run)) and not r.active and r, timeout, f"run {run} to end", ctx)


def summary(rec) -> dict:
    from engine import ranks
    from engine.diagnose import diagnose_run

    d = diagnose_run(rec)
    return {"id": rec.id, "status": rec.status, "exit_code": rec.exit_code, "env": rec.env,
            "stop_requested": rec.stop_requested, "notes": rec.notes[-4:],
            "ranks": [r.to_json() for r in ranks.recorded(rec)], "agents": rec.meta.get("agents"),
            "diagnosis": {"kind": d.kind, "summary": d.summary, "details": {k: v for k, v in d.details.items()
                                                                           if k != "args_used"}},
            "clean_up": rec.meta.get("clean_up")}


def tail(path: Path, name: str, ctx: Ctx, chars: int = 30000) -> None:
    try:
        (ctx.out / name).write_text(Path(path).read_text(errors="replace")[-chars:])
    except OSError:
        pass


def demo_args(ctx: Ctx, out: Path, **changes) -> list[str]:
    from engine import demo

    args = demo.demo_sft_args(ctx.assets, out, epochs=changes.pop("epochs", 300), logging_steps=1,
                              save_steps=changes.pop("save_steps", 10000))
    changes.setdefault("torch_dtype", ctx.dtype)
    for flag, value in changes.items():
        args[args.index(f"--{flag}") + 1] = str(value)
    return args


# ---------------------------------------------------------------- scenarios

def ddp(ctx: Ctx, res: dict) -> dict:
    from engine import checkpoints
    from engine.ops import launch

    import shutil

    home = ctx.work / "home-ddp"
    use_home(home)
    out = ctx.work / "ddp-out"
    shutil.rmtree(out, ignore_errors=True)
    # one process with both GPUs visible: the preflight says ms-swift spreads the model, offers to pin one
    res["single_process_preflight"] = ctx.cli(home, "train", "--preflight", "--", *demo_args(ctx, out))
    res["preflight"] = ctx.cli(home, "train", "--gpus", "0,1", "--nproc", "2", "--preflight", "--",
                               *demo_args(ctx, out))
    res["launch"] = ctx.cli(home, "train", "--gpus", "0,1", "--nproc", "2", "--", *demo_args(ctx, out))
    run = run_id(res["launch"])
    rec = wait(lambda: (r := record_of(run)) and len(steps_of(r)) >= 10 and len(r.meta.get("ranks", [])) == 2
               and r, 240, "step 10 with two ranks recorded", ctx)
    res["first_steps_s"] = round(time.time() - T0, 1)
    res["gpu_while_training"] = gpu_view(rec)
    res["stop"] = ctx.cli(home, "stop", run, "--timeout", "60", timeout=120)
    rec = ended(run, ctx, 60)
    res["stopped"] = summary(rec)
    res["stopped_leftovers"] = leftovers(rec)
    res["metrics_memory"] = ctx.cli(home, "metrics", run)["stdout"].strip().splitlines()[-1:]
    folder = checkpoints.scan_run(Path(rec.run_dir))  # the folder of this run: the checkpoint its stop saved
    ckpt = folder.checkpoints[-1]
    res["checkpoint"] = {"path": str(ckpt.path), "step": ckpt.step, "complete": ckpt.complete,
                         "resumable": ckpt.resumable, "all": [c.step for c in folder.checkpoints]}
    tail(rec.console_log, "ddp_console_tail.log", ctx, 12000)
    ctx.save()
    # resume on the same GPUs: the command value keeps CUDA_VISIBLE_DEVICES and NPROC_PER_NODE
    cmd, changes = launch.plan_resume(rec, ckpt)
    res["resume_changes"] = changes
    rec2 = launch.start(launch.check_launch(cmd))
    rec2 = wait(lambda: (r := record_of(rec2.id)) and steps_of(r) and len(r.meta.get("ranks", [])) == 2 and r,
                240, "the resumed run's first step", ctx)
    first = steps_of(rec2)[0]
    res["resumed"] = {"id": rec2.id, "env": rec2.env, "first_step": first, "continues": first == ckpt.step + 1}
    wait(lambda: len(steps_of(record_of(rec2.id))) >= 5, 60, "5 resumed steps", ctx)
    res["resumed"]["gpu_while_training"] = gpu_view(record_of(rec2.id))
    res["force_stop"] = ctx.cli(home, "stop", rec2.id, "--force", timeout=60)
    rec2 = ended(rec2.id, ctx, 30)
    res["force_stopped"] = summary(rec2)
    res["force_stopped_leftovers"] = leftovers(rec2)
    return res


def oom(ctx: Ctx, res: dict) -> dict:
    from engine import demo

    home = ctx.work / "home-oom"
    use_home(home)
    env = {**os.environ, **MULTICAST_OFF, "CUDA_VISIBLE_DEVICES": "1"}
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, "2.0"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              text=True, env=env)
    try:
        res["holder"] = holder.stdout.readline().strip()
        rows = [{"instruction": f"请复述第{i}段", "input": "",
                 "output": ("我是一个由 CSDN 迪菲赫尔曼 开发和维护的大语言模型。" * 800)[:20000]} for i in range(128)]
        dataset = ctx.work / "long.json"
        dataset.write_text(json.dumps(rows, ensure_ascii=False))
        args = demo_args(ctx, ctx.work / "oom-out", epochs=1, per_device_train_batch_size=64, max_length=8192)
        args[args.index("--dataset") + 1] = str(dataset)
        res["refused"] = ctx.cli(home, "train", "--gpus", "0,1", "--nproc", "2", "--", *args)
        res["launch"] = ctx.cli(home, "train", "--gpus", "0,1", "--nproc", "2", "--share-gpus", "--", *args)
        run = run_id(res["launch"])
        rec = ended(run, ctx, 240)
        res["run"] = summary(rec)
        res["leftovers"] = leftovers(rec)
        res["diagnose"] = ctx.cli(home, "diagnose", run)["stdout"][:3000]
        tail(rec.console_log, "oom_console_tail.log", ctx)
    finally:
        holder.stdin.write("\n")
        holder.stdin.flush()
        holder.wait(30)
    return res


def zero2(ctx: Ctx, res: dict) -> dict:
    home = ctx.work / "home-zero2"
    use_home(home)
    args = demo_args(ctx, ctx.work / "zero2-out", epochs=12)
    res["launch"] = ctx.cli(home, "train", "--gpus", "0,1", "--nproc", "2", "--deepspeed", "zero2", "--", *args)
    run = run_id(res["launch"])
    seen = {}

    def done():
        r = record_of(run)
        if r.active and len(r.meta.get("ranks", [])) == 2 and steps_of(r) and "gpu" not in seen:
            seen["gpu"] = gpu_view(r)
        return r if not r.active else None

    rec = wait(done, 300, "the ZeRO-2 run to end", ctx)
    res["run"] = summary(rec)
    res["gpu_while_training"] = seen.get("gpu")
    res["steps"] = len(steps_of(rec))
    res["metrics_memory"] = ctx.cli(home, "metrics", run)["stdout"].strip().splitlines()[-1:]
    res["leftovers"] = leftovers(rec)
    tail(rec.console_log, "zero2_console_tail.log", ctx, 12000)
    return res


def two_nodes(ctx: Ctx, res: dict) -> dict:
    from engine import ranks

    for attempt, (stopper, force) in enumerate(((1, False), (0, True))):
        port = str(29555 + attempt)
        homes = [ctx.work / f"home-node{n}-{attempt}" for n in (0, 1)]
        launched = []
        for n in (0, 1):
            args = demo_args(ctx, ctx.work / f"node{n}-{attempt}-out")
            launched.append(ctx.cli(homes[n], "train", "--gpus", str(n), "--nnodes", "2", "--node-rank", str(n),
                                    "--master-addr", "127.0.0.1", "--master-port", port, "--", *args))
        runs_ = [run_id(x) for x in launched]

        def both_training():
            recs = []
            for n in (0, 1):
                use_home(homes[n])
                recs.append(record_of(runs_[n]))
            use_home(homes[0])
            return recs if all(len(r.meta.get("ranks", [])) == 1 for r in recs) and len(steps_of(recs[0])) >= 5 \
                else None

        recs = wait(both_training, 240, "both nodes training", ctx)
        part = {"launch": launched, "ranks": [[r.to_json() for r in ranks.recorded(x)] for x in recs]}
        use_home(homes[0])
        part["gpu_node0"] = gpu_view(recs[0])
        t = time.time()
        part["stop"] = ctx.cli(homes[stopper], "stop", runs_[stopper], *(["--force"] if force else []),
                               "--timeout", "60", timeout=120)
        ends = []
        for n in (0, 1):
            use_home(homes[n])
            try:
                rec = ended(runs_[n], ctx, 120)
                ends.append({"node": n, "ended_after_s": round(time.time() - t, 1), **summary(rec),
                             "leftovers": leftovers(rec)})
            except TimeoutError as exc:
                ends.append({"node": n, "still_running": str(exc), "leftovers": leftovers(record_of(runs_[n]))})
            tail(record_of(runs_[n]).console_log, f"node{n}_{attempt}_console_tail.log", ctx, 6000)
        part["ends"] = ends
        res[f"{'force' if force else 'graceful'}_stop_on_node{stopper}"] = part
        ctx.save()
    return res


SCENARIOS = {"ddp": (ddp, 150), "oom": (oom, 90), "zero2": (zero2, 120), "two_nodes": (two_nodes, 150)}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--budget", type=float, default=540.0, help="seconds for everything")
    ap.add_argument("--only", nargs="*", default=list(SCENARIOS))
    ap.add_argument("--dtype", default="bfloat16", help="float32 for a dry run on CPU (gloo)")
    ns = ap.parse_args()
    ns.out.mkdir(parents=True, exist_ok=True)
    ctx = Ctx(ns.out, ns.budget)
    ctx.dtype = ns.dtype
    from engine import demo, gpu

    snap = gpu.default_sampler().sample()
    ctx.report["host"] = {"gpus": [(g.index, g.name, round(g.mem_total / 2**20)) for g in snap.gpus],
                          "nvml": snap.available, "python": sys.version.split()[0]}
    for mod in ("torch", "transformers", "peft", "swift", "deepspeed"):
        try:
            ctx.report["host"][mod] = __import__(mod).__version__
        except Exception as exc:  # noqa: BLE001 - a report, not a program
            ctx.report["host"][mod] = f"not importable: {exc!r}"[:300]
    ctx.assets = demo.build_demo(ctx.work / "demo")
    log("host", ctx.report["host"])
    for name in ns.only:
        func, minimum = SCENARIOS[name]
        try:
            ctx.need(minimum)
            log("scenario", name)
            t = time.time()
            res = ctx.report["scenarios"][name] = {}  # filled as it goes: kept when a step fails
            func(ctx, res)
            res["seconds"] = round(time.time() - t, 1)
        except Budget as exc:
            ctx.report["not_run"].append(f"{name}: {exc}")
        except Exception:  # noqa: BLE001 - record it and go on with the next scenario
            ctx.report["scenarios"].setdefault(name, {})["error"] = traceback.format_exc()[-4000:]
            log(name, "failed:", traceback.format_exc()[-1500:])
        ctx.save()
    log("done")
    return 0


if __name__ == "__main__":
    sys.exit(main())
