"""Real GPU checks of swiftdeck's engine (run on the device machine, never in CI).

    PYTHONPATH=.:/tmp/site PATH=/tmp/site/bin:$PATH python3 bench/gpu_engine_check.py --out $OUT/engine_gpu.json

1. A short demo LoRA run through engine.ops.launch on the GPU: the run's process tree must be seen by NVML with its
   GPU memory (attribution), ms-swift's `memory(GiB)` key must reach the metrics, the run must finish.
2. A real CUDA OOM through the engine: a holder process takes all but --leave-gib of the card, then a training
   step that needs more is launched. The runner must classify it (cuda_oom), stop the whole tree, and NVML must
   show that no process of the tree holds GPU memory; we record seconds from the OOM line to clean.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HOLDER = r"""
import sys, torch
free, total = torch.cuda.mem_get_info()
keep = int(float(sys.argv[1]) * 2**30)
x = torch.empty(max(free - keep, 0), dtype=torch.uint8, device="cuda:0")
torch.cuda.synchronize()
print("holding", x.numel(), "free after", torch.cuda.mem_get_info()[0], flush=True)
sys.stdin.readline()
"""


def wait_end(runs, run_id: str, timeout: float, on_tick=None):
    deadline = time.time() + timeout
    while time.time() < deadline:
        rec = runs.load(run_id)
        if not rec.active:
            return rec
        if on_tick:
            on_tick(rec)
        time.sleep(0.5)
    raise TimeoutError(run_id)


def long_dataset(path: Path, rows: int, chars: int) -> Path:
    text = "我是一个由 CSDN 迪菲赫尔曼 开发和维护的大语言模型。" * (chars // 26 + 1)
    data = [{"instruction": f"请复述第{i}段", "input": "", "output": text[:chars]} for i in range(rows)]
    path.write_text(json.dumps(data, ensure_ascii=False))
    return path


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--leave-gib", type=float, default=2.0)
    ap.add_argument("--skip-train", action="store_true")
    ns = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="sdk-gpu-"))
    os.environ["SWIFTDECK_HOME"] = str(work / "home")
    from engine import demo, gpu

    report: dict = {"work": str(work)}
    assets = demo.build_demo(work / "demo")
    sampler = gpu.GpuSampler()

    report["train"] = {"status": "skipped"} if ns.skip_train else train_check(ns, work, assets, sampler, report)
    rec = oom_check(ns, work, assets, sampler, report)
    sampler.close()
    Path(ns.out).write_text(json.dumps(report, indent=1, default=str))
    ok = (report["train"]["status"] in ("finished", "skipped") and rec.meta.get("clean_up", {}).get("left") == []
          and not report["oom"]["left"] and report["oom"]["diagnosis"]["kind"] == "cuda_oom")
    print("OK" if ok else "CHECK FAILED")
    return 0 if ok else 1


def train_check(ns, work, assets, sampler, report) -> dict:
    """A short real run on the GPU, with NVML attribution of the run's tree while it trains."""
    from engine import demo, gpu, runs, supervisor
    from engine.command import Command
    from engine.ops import launch
    from engine.ingest import RunReader

    args = demo.demo_sft_args(assets, work / "out1", epochs=20, logging_steps=5, save_steps=50)
    args[args.index("--torch_dtype") + 1] = "bfloat16"
    t0 = time.time()
    rec = launch.start(launch.check_launch(Command("sft", tuple(args), str(work))))
    seen: dict = {"max_ours": 0, "samples": 0}

    def tick(r):
        pids = {p.pid for p in supervisor.live_tree(r)}
        snap = sampler.sample()
        ours, others = gpu.attribute(snap, pids)
        seen["samples"] += 1
        used = sum(p.used_mem or 0 for p in ours)
        if used > seen["max_ours"]:
            seen.update(max_ours=used, ours=[(p.pid, p.name, p.used_mem) for p in ours],
                        others=[(p.pid, p.name, p.used_mem) for p in others], tree=sorted(pids))

    rec = wait_end(runs, rec.id, 600, tick)
    (Path(ns.out).parent / "train_console.log").write_text(rec.console_log.read_text(errors="replace")[-20000:])
    reader = RunReader(console_log=rec.console_log, run_dir=Path(rec.run_dir) if rec.run_dir else None)
    reader.poll()
    mem_keys = sorted({k for m in reader.state.metrics for k in m.values if "memory" in k})
    return {"status": rec.status, "exit_code": rec.exit_code, "wall_s": round(time.time() - t0, 1),
                       "steps": len(reader.state.metrics), "memory_keys": mem_keys,
                       "last_metrics": reader.state.metrics[-1].values if reader.state.metrics else None,
                       "attribution": seen, "left": [p.pid for p in supervisor.live_tree(rec)]}
    print("train:", json.dumps(report["train"], default=str)[:1500], flush=True)
    return report["train"]


def oom_check(ns, work, assets, sampler, report):
    """A real CUDA OOM: the card held by another process, then a step that needs more than is left."""
    from engine import demo, runs, supervisor
    from engine.command import Command
    from engine.ops import launch

    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(ns.leave_gib)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    report["holder"] = holder.stdout.readline().strip()
    before = sampler.sample()
    dataset = long_dataset(work / "long.json", rows=64, chars=20000)  # ~3,700 tokens a row
    args = demo.demo_sft_args(assets, work / "out2", epochs=1)
    args[args.index("--dataset") + 1] = str(dataset)
    args[args.index("--per_device_train_batch_size") + 1] = "64"
    args[args.index("--max_length") + 1] = "8192"
    args[args.index("--torch_dtype") + 1] = "bfloat16"
    # the preflight refuses a GPU that another process fills until the user confirms: this test confirms
    rec = launch.start(launch.check_launch(Command("sft", tuple(args), str(work))).confirmed())
    rec = wait_end(runs, rec.id, 600)
    after = sampler.sample()
    holder.stdin.write("\n")
    holder.stdin.flush()
    holder.wait(30)
    console = rec.console_log.read_text(errors="replace")
    oom_lines = [ln for ln in console.splitlines() if "out of memory" in ln.lower()][:3]
    report["oom"] = {"status": rec.status, "exit_code": rec.exit_code, "clean_up": rec.meta.get("clean_up"),
                     "diagnosis": rec.meta.get("diagnosis"), "oom_lines": oom_lines,
                     "gpu_used_before_launch": [g.mem_used for g in before.gpus],
                     "gpu_used_after_clean": [g.mem_used for g in after.gpus],
                     "left": [p.pid for p in supervisor.live_tree(rec)]}
    (Path(ns.out).parent / "oom_console.log").write_text(console[-20000:])
    print("oom:", json.dumps(report["oom"], default=str)[:3000], flush=True)
    return rec


if __name__ == "__main__":
    sys.exit(main())
