"""engine.gpu: the no-GPU path (real on CI: no NVIDIA driver), psutil usage of real processes, attribution, and a
GPU-path test that runs only where NVML works (the device machine: see bench/gpu_check.py and docs/GPU.md)."""
from __future__ import annotations

import os
import subprocess
import sys
import time
import types

import pytest

from engine import gpu
from engine.gpu import NO_GPU, NOT_VISIBLE, GpuInfo, GpuProcess, GpuSampler, GpuSnapshot


HAVE_NVML = gpu.nvml_gpu_count() > 0
MiB = 1024 * 1024


@pytest.fixture
def child(python):
    """A real child process that holds ~64 MiB and burns CPU until it is told to stop."""
    code = ("import sys, time\nbuf = bytearray(64 * 1024 * 1024)\nfor i in range(0, len(buf), 4096): buf[i] = 1\n"
            "print('ready', flush=True)\nend = time.time() + 60\nwhile time.time() < end: pass\n")
    proc = subprocess.Popen([python, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    yield proc
    proc.kill()
    proc.wait()


@pytest.fixture
def sleeper(python):
    proc = subprocess.Popen([python, "-c", "import time; time.sleep(60)"])
    yield proc
    proc.kill()
    proc.wait()


@pytest.mark.skipif(HAVE_NVML, reason="this machine has a working NVML")
def test_no_nvml_sample_is_unavailable_and_never_raises():
    with GpuSampler() as sampler:
        snap = sampler.sample()
        assert snap.available is False
        assert snap.reason.startswith(NO_GPU + ": ")
        assert len(snap.reason) > len(NO_GPU) + 2  # the detail (e.g. "NVML Shared Library Not Found")
        assert snap.gpus == ()
        assert abs(snap.taken_at - time.time()) < 60
        assert sampler.sample().reason == snap.reason  # cached failure, still no exception
    assert GpuSampler().sample().available is False  # after close, a new sampler behaves the same
    assert gpu.gpu_memory_of([os.getpid()]) == 0


def test_tree_usage_of_real_processes(child):
    cpu, rss = gpu.tree_usage([child.pid])
    assert rss > 64 * MiB  # the child touched 64 MiB
    time.sleep(0.5)
    cpu, rss2 = gpu.tree_usage([child.pid, os.getpid()])
    assert cpu > 0  # the child is busy-looping (measured since the previous call)
    assert rss2 > rss  # this test process's RSS is added
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    assert gpu.tree_usage([gone.pid]) == (0.0, 0)  # a vanished pid counts 0 and does not raise


def _snapshot() -> GpuSnapshot:
    def info(index, procs):
        return GpuInfo(index, "GPU", f"GPU-{index}", 0, 80 * 1024 * MiB, None, None, None, None, tuple(procs))

    return GpuSnapshot(True, "", (
        info(0, [GpuProcess(100, 10 * MiB, "python"), GpuProcess(200, 5 * MiB, "other"),
                 GpuProcess(300, 7 * MiB, NOT_VISIBLE)]),
        info(1, [GpuProcess(100, 3 * MiB, "python"), GpuProcess(101, None, "python"),
                 GpuProcess(400, None, "x")]),
    ), time.time())


def test_attribute_splits_ours_and_others():
    ours, others = gpu.attribute(_snapshot(), {100, 101, 300, 999})
    # pid 100 is on both GPUs: one entry with the memory summed; largest first; unknown memory stays None
    assert ours == [GpuProcess(100, 13 * MiB, "python"), GpuProcess(101, None, "python")]
    # 300 is in the run's pids but NVML's pid is not visible here: never ours
    assert others == [GpuProcess(300, 7 * MiB, NOT_VISIBLE), GpuProcess(200, 5 * MiB, "other"),
                      GpuProcess(400, None, "x")]
    assert gpu.attribute(GpuSnapshot(False, NO_GPU, (), 0.0), {100}) == ([], [])


def test_gpu_memory_of_snapshot():
    snap = _snapshot()
    assert gpu.gpu_memory_of([100], snap) == 13 * MiB
    assert gpu.gpu_memory_of({100, 101, 200}, snap) == 18 * MiB
    assert gpu.gpu_memory_of([999], snap) == 0


def _fake_nvml(procs_v3_missing=False, devices=2, local_pid=1):
    """A stand-in pynvml for the error-handling paths a real driver rarely shows (NOT a real NVML)."""
    nv = types.SimpleNamespace(NVML_ERROR_NOT_SUPPORTED=3, NVML_ERROR_FUNCTION_NOT_FOUND=13,
                               NVML_ERROR_ARGUMENT_VERSION_MISMATCH=25, NVML_ERROR_GPU_IS_LOST=15,
                               NVML_TEMPERATURE_GPU=0, nvmlMemory_v2=0x02000028, calls=[])

    class NVMLError(Exception):
        def __init__(self, value):
            self.value = value

    def call(name, result):
        def fn(handle, *args):
            nv.calls.append((name, handle))
            if isinstance(result, BaseException):
                raise result
            return result(handle) if callable(result) else result
        return fn

    P = types.SimpleNamespace
    nv.NVMLError = NVMLError
    nv.nvmlInit = lambda: None
    nv.nvmlShutdown = lambda: nv.calls.append(("shutdown", None))
    nv.nvmlDeviceGetCount = lambda: devices
    nv.nvmlDeviceGetHandleByIndex = lambda i: i
    nv.nvmlDeviceGetName = call("name", lambda h: f"Fake GPU {h}")
    nv.nvmlDeviceGetUUID = call("uuid", lambda h: f"GPU-{h}")
    nv.nvmlDeviceGetEnforcedPowerLimit = call("plimit", 700_000)
    nv.nvmlDeviceGetMemoryInfo = call("mem", lambda h, *v: P(used=(h + 1) * MiB, total=80 * 1024 * MiB))
    nv.nvmlDeviceGetUtilizationRates = call("util", lambda h: P(gpu=50) if h == 0 else _raise(NVMLError(15)))
    nv.nvmlDeviceGetTemperature = call("temp", NVMLError(3))
    nv.nvmlDeviceGetPowerUsage = call("power", 123_456)
    mine = local_pid  # a real local pid, but it has no /dev/nvidia* open: not a GPU process of this namespace
    compute = [P(pid=mine, usedGpuMemory=5 * MiB), P(pid=2 ** 22 + 7, usedGpuMemory=None)]
    graphics = [P(pid=mine, usedGpuMemory=None)]
    v3 = Exception("NVMLLibraryMismatchError") if procs_v3_missing else None
    nv.nvmlDeviceGetComputeRunningProcesses = call("compute", v3 or compute)
    nv.nvmlDeviceGetComputeRunningProcesses_v2 = call("compute_v2", compute)
    nv.nvmlDeviceGetGraphicsRunningProcesses = call("graphics", v3 or graphics)
    nv.nvmlDeviceGetGraphicsRunningProcesses_v2 = call("graphics_v2", graphics)
    return nv


def _raise(exc):
    raise exc


@pytest.mark.parametrize("v3_missing", [False, True])
def test_nvml_errors_become_none(monkeypatch, v3_missing, sleeper):
    nv = _fake_nvml(procs_v3_missing=v3_missing, local_pid=sleeper.pid)
    monkeypatch.setitem(sys.modules, "pynvml", nv)
    sampler = GpuSampler()
    snap = sampler.sample()
    assert snap.available and snap.reason == ""
    g0, g1 = snap.gpus
    assert (g0.name, g0.uuid, g0.mem_used, g0.util_gpu, g0.temperature) == ("Fake GPU 0", "GPU-0", MiB, 50.0, None)
    assert (g0.power_w, g0.power_limit_w) == (123.456, 700.0)
    assert g1.util_gpu is None  # GPU_IS_LOST for this query only: N/A, the rest of the device still reads
    # own pid listed as compute and graphics: once, with the known memory; neither pid is a GPU process here
    assert g0.processes == (GpuProcess(sleeper.pid, 5 * MiB, NOT_VISIBLE), GpuProcess(2 ** 22 + 7, None, NOT_VISIBLE))
    nv.calls.clear()
    sampler.sample()
    asked = {name for name, _ in nv.calls}
    assert "temp" not in asked  # NOT_SUPPORTED is not asked again
    assert {"name", "uuid", "plimit"}.isdisjoint(asked)  # cached
    assert ("util", 1) in nv.calls  # a transient error is asked again
    assert ("compute_v2" in asked) == v3_missing and ("compute" in asked) != v3_missing
    sampler.close()
    assert ("shutdown", None) in nv.calls


def test_nvml_without_devices(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", _fake_nvml(devices=0))
    snap = GpuSampler().sample()
    assert not snap.available and snap.reason.startswith("No NVIDIA GPU") and snap.gpus == ()


def test_device_that_cannot_be_opened_is_left_out(monkeypatch):
    nv = _fake_nvml(devices=3)
    nv.nvmlDeviceGetHandleByIndex = lambda i: _raise(nv.NVMLError(4)) if i == 1 else i  # NO_PERMISSION
    monkeypatch.setitem(sys.modules, "pynvml", nv)
    snap = GpuSampler().sample()
    assert snap.available and [g.index for g in snap.gpus] == [0, 2] and snap.gpus[1].uuid == "GPU-2"


def test_sampler_ttl_shares_a_reading(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", _fake_nvml())
    sampler = GpuSampler(ttl=3600)
    assert sampler.sample() is sampler.sample()
    assert GpuSampler(ttl=0).sample() is not None


@pytest.mark.skipif(not HAVE_NVML, reason="needs a working NVML (NVIDIA driver + GPU)")
def test_real_gpu_sees_child_memory_and_its_release(python):
    """On a GPU machine: a child holding 512 MiB through torch appears with that memory; after it exits, not."""
    code = ("import sys, torch\nx = torch.empty(512 * 1024 * 1024, dtype=torch.uint8, device='cuda:0')\n"
            "torch.cuda.synchronize()\nprint('ready', flush=True)\nsys.stdin.readline()\n")
    proc = subprocess.Popen([python, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    with GpuSampler() as sampler:
        try:
            assert proc.stdout.readline().strip() == "ready", "the torch child did not start"
            snap = sampler.sample()
            assert snap.available and snap.gpus, snap.reason
            # CUDA's device 0 need not be NVML's index 0 (CUDA_DEVICE_ORDER): look on every GPU
            listed = {p.pid: (g, p) for g in snap.gpus for p in g.processes}
            assert proc.pid in listed, f"child pid {proc.pid} not in NVML's list {listed} (pid namespace?)"
            g = listed[proc.pid][0]
            assert g.mem_total > 0 and g.mem_used > 512 * MiB and g.name != "N/A" and g.uuid.startswith("GPU-")
            listed = {pid: p for pid, (_, p) in listed.items()}
            assert listed[proc.pid].name.startswith("python")
            held = gpu.gpu_memory_of([proc.pid], snap)
            assert held >= 512 * MiB
            ours, _ = gpu.attribute(snap, {proc.pid})
            assert [p.pid for p in ours] == [proc.pid]
        finally:
            proc.stdin.close()
            proc.wait(timeout=60)
        deadline = time.time() + 10
        while gpu.gpu_memory_of([proc.pid], sampler.sample()) and time.time() < deadline:
            time.sleep(0.1)
        assert gpu.gpu_memory_of([proc.pid], sampler.sample()) == 0
