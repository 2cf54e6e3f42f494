"""Check engine.gpu on a real NVIDIA GPU and time it (run on the device machine, not in CI).

    PYTHONPATH=. python3 bench/gpu_check.py --out $OUT/gpu.json --pytest

Needs torch, psutil and nvidia-ml-py (stdlib json, no orjson). Steps: a child process allocates --mib MiB on
cuda:0 through torch; GpuSampler must list the child's pid with that memory and attribute() must call it ours;
the child frees the tensor (memory must drop while the process lives), then exits (its pid must leave NVML's list;
the delay is measured). Then sample() and the single NVML queries are timed. Exit code 0 only if every check held.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time

MiB = 1024 * 1024
CHILD = r"""
import os, sys, torch
x = torch.empty({mib} * 1024 * 1024, dtype=torch.uint8, device="cuda:0")
x.fill_(1); torch.cuda.synchronize()
print("allocated", os.getpid(), flush=True)
sys.stdin.readline()
del x; torch.cuda.empty_cache(); torch.cuda.synchronize()
print("freed", flush=True)
sys.stdin.readline()
"""


def timed(fn, n: int) -> dict:
    """Per-call wall time of fn() over n calls, in µs."""
    fn()  # warm-up
    times = []
    for _ in range(n):
        t0 = time.perf_counter_ns()
        fn()
        times.append((time.perf_counter_ns() - t0) / 1000)
    times.sort()
    return {"n": n, "mean_us": round(statistics.fmean(times), 2), "p50_us": round(times[n // 2], 2),
            "p99_us": round(times[int(n * 0.99) - 1], 2), "min_us": round(times[0], 2), "max_us": round(times[-1], 2)}


def environment() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    env = {"python": sys.version.split()[0], "kernel": platform.release(), "pid_ns": None}
    for pkg in ("torch", "psutil", "nvidia-ml-py"):
        try:
            env[pkg] = version(pkg)
        except PackageNotFoundError:
            env[pkg] = None
    try:
        env["pid_ns"] = os.readlink("/proc/self/ns/pid")
    except OSError:
        pass
    try:
        import pynvml

        pynvml.nvmlInit()
        env["driver"] = pynvml.nvmlSystemGetDriverVersion()
        env["nvml"] = pynvml.nvmlSystemGetNVMLVersion()
        pynvml.nvmlShutdown()
    except Exception as exc:
        env["nvml_error"] = repr(exc)
    return env


def gpu_summary(snap) -> list[dict]:
    return [{"index": g.index, "name": g.name, "mem_used_mib": g.mem_used // MiB, "mem_total_mib": g.mem_total // MiB,
             "util": g.util_gpu, "temp": g.temperature, "power_w": g.power_w, "power_limit_w": g.power_limit_w,
             "processes": [[p.pid, None if p.used_mem is None else p.used_mem // MiB, p.name] for p in g.processes]}
            for g in snap.gpus]


def raw_nvml_timings(n: int) -> dict:
    """The single NVML queries a sample makes on GPU 0, each timed alone (for comparison with sample())."""
    import pynvml as nv

    nv.nvmlInit()
    h = nv.nvmlDeviceGetHandleByIndex(0)
    queries = {
        "memory_v2": lambda: nv.nvmlDeviceGetMemoryInfo(h, nv.nvmlMemory_v2),
        "utilization": lambda: nv.nvmlDeviceGetUtilizationRates(h),
        "temperature": lambda: nv.nvmlDeviceGetTemperature(h, nv.NVML_TEMPERATURE_GPU),
        "power": lambda: nv.nvmlDeviceGetPowerUsage(h),
        "compute_processes": lambda: nv.nvmlDeviceGetComputeRunningProcesses(h),
        "graphics_processes": lambda: nv.nvmlDeviceGetGraphicsRunningProcesses(h),
    }
    out = {}
    for name, fn in queries.items():
        try:
            out[name] = timed(fn, n)["mean_us"]
        except Exception as exc:
            out[name] = repr(exc)
    nv.nvmlShutdown()
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="gpu.json")
    ap.add_argument("--mib", type=int, default=1024, help="GPU memory the child allocates")
    ap.add_argument("--iters", type=int, default=1000)
    ap.add_argument("--pytest", action="store_true", help="also run tests/test_gpu.py (the GPU-path test)")
    args = ap.parse_args()
    missing = [m for m in ("torch", "psutil", "pynvml") if not _importable(m)]
    report: dict = {"checks": {}, "environment": environment()}
    checks = report["checks"]
    if missing:
        report["error"] = f"missing Python packages: {missing}"
        return finish(report, args.out)

    from engine import gpu

    sampler = gpu.GpuSampler()
    base = sampler.sample()
    report["baseline"] = {"available": base.available, "reason": base.reason, "gpus": gpu_summary(base)}
    checks["nvml_available"] = base.available and bool(base.gpus)
    if not checks["nvml_available"]:
        return finish(report, args.out)

    child = subprocess.Popen([sys.executable, "-c", CHILD.format(mib=args.mib)], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)
    try:
        line = child.stdout.readline().split()
        checks["child_allocated"] = bool(line) and line[0] == "allocated"
        if not checks["child_allocated"]:
            report["error"] = "the torch child did not allocate (see stderr above)"
            return finish(report, args.out)
        report["child"] = {"popen_pid": child.pid, "pid_inside_child": int(line[1]),
                           "has_dev_nvidia_open": gpu._uses_nvidia_device(child.pid)}
        snap = sampler.sample()
        report["with_child"] = gpu_summary(snap)
        listed = {p.pid: p for g in snap.gpus for p in g.processes}
        held = gpu.gpu_memory_of([child.pid], snap)
        ours, others = gpu.attribute(snap, {child.pid})
        report["child"].update(listed=child.pid in listed, held_mib=held // MiB,
                               name=listed[child.pid].name if child.pid in listed else None,
                               ours=[[p.pid, p.name] for p in ours], others=[[p.pid, p.name] for p in others])
        checks["child_pid_listed"] = child.pid in listed
        checks["child_memory_at_least_alloc"] = held >= args.mib * MiB
        checks["child_attributed_ours"] = [p.pid for p in ours] == [child.pid]
        # CUDA's device 0 need not be NVML's index 0: compare the GPU that lists the child (else GPU 0)
        i = next((g.index for g in snap.gpus for p in g.processes if p.pid == child.pid), 0)
        checks["gpu_mem_used_grew"] = snap.gpus[i].mem_used - base.gpus[i].mem_used >= args.mib * MiB * 0.9

        cached = gpu.GpuSampler(ttl=60)
        report["timing"] = {
            "sample_1_process": timed(sampler.sample, args.iters),
            "sample_ttl_cached": timed(cached.sample, args.iters),
            "tree_usage_1_pid": timed(lambda: gpu.tree_usage([child.pid]), min(args.iters, 200)),
            "raw_nvml_gpu0": raw_nvml_timings(args.iters),
        }
        cached.close()

        child.stdin.write("\n")
        child.stdin.flush()
        checks["child_freed"] = child.stdout.readline().strip() == "freed"
        after_free = gpu.gpu_memory_of([child.pid], sampler.sample())
        report["child"]["held_after_free_mib"] = after_free // MiB  # the CUDA context stays while it lives
        checks["memory_dropped_after_free"] = held - after_free >= args.mib * MiB * 0.9
    finally:
        try:
            child.stdin.write("\n")
            child.stdin.close()
            child.wait(timeout=30)
        except (OSError, subprocess.TimeoutExpired):  # BrokenPipe: it already died
            child.kill()
            child.wait()
        exited = time.perf_counter()

    waited = None
    while time.perf_counter() - exited < 10:  # how long NVML keeps listing a process that has exited
        if gpu.gpu_memory_of([child.pid], sampler.sample()) == 0:
            waited = time.perf_counter() - exited
            break
        time.sleep(0.005)
    report["child"]["released_after_exit_s"] = None if waited is None else round(waited, 3)
    checks["memory_gone_after_exit"] = waited is not None
    sampler.close()

    if args.pytest:
        res = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_gpu.py"],
                             capture_output=True, text=True)
        report["pytest"] = {"rc": res.returncode, "tail": (res.stdout + res.stderr)[-3000:]}
        checks["pytest_gpu_tests_pass"] = res.returncode == 0
    return finish(report, args.out)


def _importable(module: str) -> bool:
    try:
        __import__(module)
        return True
    except ImportError:
        return False


def finish(report: dict, out: str) -> int:
    report["ok"] = bool(report["checks"]) and all(report["checks"].values()) and "error" not in report
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with open(out, "w") as f:
        json.dump(report, f, indent=2)
    env = report["environment"]
    print(f"environment: {json.dumps(env)}")
    for gpu_ in report.get("baseline", {}).get("gpus", []):
        print(f"GPU {gpu_['index']}: {gpu_['name']} {gpu_['mem_used_mib']}/{gpu_['mem_total_mib']} MiB")
    if "child" in report:
        print(f"child: {json.dumps(report['child'])}")
    for name, t in report.get("timing", {}).items():
        print(f"timing {name}: {json.dumps(t)}")
    for name, ok in report["checks"].items():
        print(f"{'PASS' if ok else 'FAIL'} {name}")
    if "pytest" in report:
        print("pytest:", report["pytest"]["tail"].strip().splitlines()[-1:])
    if "error" in report:
        print("ERROR:", report["error"])
    print(f"{'OK' if report['ok'] else 'NOT OK'}: report written to {out}")
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
