"""GPU sampling through NVML (`nvidia-ml-py`, imported as `pynvml`) plus psutil, modelled on nvitop's `api/`.

A pure data layer: `GpuSampler.sample()` returns a frozen `GpuSnapshot` and never raises. Without NVML, a driver
or a GPU the snapshot says so (`available=False` and a one-line `reason`); a single NVML query that fails becomes
None (N/A) instead of an exception. Static facts (name, uuid) are cached per device, slow-changing ones (power
limit, process names) for a few seconds.

Process attribution: NVML reports pids in the driver's (host's) pid namespace. In a container with its own pid
namespace those numbers may name no local process, or an unrelated one. A reported pid is trusted only if the local
process of that number has a /dev/nvidia* file open (checked once per pid, cached); otherwise its name is `N/A` and
`attribute()` never counts it as one of ours.
"""
from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass
from typing import Callable, Iterable

import psutil

NO_GPU = "No NVIDIA GPU (NVML not available)"
NOT_VISIBLE = "N/A"  # name of a GPU process that is not a process of this pid namespace (or already gone)
STATIC_TTL_S = 10.0  # power limit, process names
INIT_RETRY_S = 30.0  # after a failed nvmlInit, try again at most this often


@dataclass(frozen=True)
class GpuProcess:
    pid: int
    used_mem: int | None  # bytes; None where NVML cannot tell (e.g. WDDM, some containers)
    name: str


@dataclass(frozen=True)
class GpuInfo:
    index: int
    name: str
    uuid: str
    mem_used: int  # bytes (0 where NVML could not read memory)
    mem_total: int
    util_gpu: float | None  # percent
    temperature: float | None  # °C
    power_w: float | None
    power_limit_w: float | None
    processes: tuple[GpuProcess, ...]


@dataclass(frozen=True)
class GpuSnapshot:
    available: bool
    reason: str  # why not available ("" when available)
    gpus: tuple[GpuInfo, ...]
    taken_at: float


class _Ttl:
    """A tiny time-to-live cache: get(key, compute) recomputes a value older than `ttl` seconds."""

    def __init__(self, ttl: float):
        self.ttl, self._data = ttl, {}

    def get(self, key, compute: Callable):
        now = time.monotonic()
        hit = self._data.get(key)
        if hit is not None and hit[1] > now:
            return hit[0]
        value = compute()
        self._data[key] = (value, now + self.ttl)
        if len(self._data) > 4096:  # drop expired entries now and then (pids come and go)
            self._data = {k: v for k, v in self._data.items() if v[1] > now}
        return value


def _uses_nvidia_device(pid: int) -> bool | None:
    """True if process `pid` (of this pid namespace) has a /dev/nvidia* file open; None where we cannot look."""
    fd_dir = f"/proc/{pid}/fd"
    try:
        fds = os.listdir(fd_dir)
    except FileNotFoundError:
        return False if os.path.isdir("/proc/self/fd") else None  # no such pid here (or no procfs at all)
    except OSError:  # permission denied: another user's process
        return None
    for fd in fds:
        try:
            if os.readlink(f"{fd_dir}/{fd}").startswith("/dev/nvidia"):
                return True
        except OSError:
            continue
    return False


def _process_name(pid: int) -> str:
    """The local name of a pid that NVML reported, or NOT_VISIBLE if no local process of that pid uses a GPU."""
    if _uses_nvidia_device(pid) is False:
        return NOT_VISIBLE
    try:
        return psutil.Process(pid).name() or NOT_VISIBLE
    except (psutil.NoSuchProcess, psutil.ZombieProcess):
        return NOT_VISIBLE
    except psutil.Error:
        return "?"


class GpuSampler:
    """Samples every NVIDIA GPU. NVML is initialised lazily on the first sample() and shut down by close().

    `ttl` > 0 makes sample() return the previous snapshot while it is younger than `ttl` seconds (several widgets
    can then share one reading). Thread-safe.
    """

    def __init__(self, ttl: float = 0.0):
        self.ttl = ttl
        self._lock = threading.Lock()
        self._nvml = None  # the pynvml module once nvmlInit succeeded
        self._handles: list[tuple[int, object]] = []  # (NVML index, handle) of the devices we may query
        self._init_error: str | None = None
        self._init_failed_at = 0.0
        self._last: GpuSnapshot | None = None
        self._static = _Ttl(float("inf"))
        self._slow = _Ttl(STATIC_TTL_S)
        self._names = _Ttl(STATIC_TTL_S)
        self._broken: set[tuple[int, str]] = set()  # (device, query) that failed as unsupported: not asked again

    def __enter__(self) -> GpuSampler:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def sample(self) -> GpuSnapshot:
        try:
            with self._lock:
                if self._last is not None and self.ttl > 0 and time.time() - self._last.taken_at < self.ttl:
                    return self._last
                self._last = self._sample()
                return self._last
        except Exception as exc:  # never raise into the UI
            return GpuSnapshot(False, f"{NO_GPU}: unexpected error: {exc!r}", (), time.time())

    def close(self) -> None:
        with self._lock:
            if self._nvml is not None:
                try:
                    self._nvml.nvmlShutdown()
                except Exception:
                    pass
            self._nvml, self._handles, self._last = None, [], None
            self._static, self._slow, self._names = _Ttl(float("inf")), _Ttl(STATIC_TTL_S), _Ttl(STATIC_TTL_S)
            self._broken = set()

    # -- internals (called with the lock held) --

    def _init(self) -> str | None:
        """Load NVML and the device handles; return an error message, or None."""
        if self._nvml is not None:
            return None
        if self._init_error and time.monotonic() - self._init_failed_at < INIT_RETRY_S:
            return self._init_error
        try:
            import pynvml
        except ImportError:
            error = "nvidia-ml-py is not installed (pip install nvidia-ml-py)"
        else:
            try:
                pynvml.nvmlInit()
                try:
                    count = pynvml.nvmlDeviceGetCount()
                except Exception:
                    pynvml.nvmlShutdown()
                    raise
                self._handles = []
                for i in range(count):
                    try:  # a device we may not open (NO_PERMISSION, GPU_IS_LOST) is left out, not fatal
                        self._handles.append((i, pynvml.nvmlDeviceGetHandleByIndex(i)))
                    except pynvml.NVMLError:
                        continue
                self._nvml, self._init_error = pynvml, None
                return None
            except Exception as exc:
                error = str(exc) or type(exc).__name__
        self._init_error, self._init_failed_at = error, time.monotonic()
        return error

    def _sample(self) -> GpuSnapshot:
        error = self._init()
        if error:
            return GpuSnapshot(False, f"{NO_GPU}: {error}", (), time.time())
        if not self._handles:
            return GpuSnapshot(False, "No NVIDIA GPU (NVML found no device)", (), time.time())
        gpus = tuple(self._device(i, h) for i, h in self._handles)
        return GpuSnapshot(True, "", gpus, time.time())

    def _query(self, index: int, what: str, fn: Callable, *args):
        """fn(*args), or None on an NVML error; a query the device does not support is not asked again."""
        if (index, what) in self._broken:
            return None
        nv = self._nvml
        try:
            return fn(*args)
        except nv.NVMLError as exc:
            if exc.value in (nv.NVML_ERROR_NOT_SUPPORTED, nv.NVML_ERROR_FUNCTION_NOT_FOUND,
                             nv.NVML_ERROR_ARGUMENT_VERSION_MISMATCH):
                self._broken.add((index, what))
            return None
        except Exception:  # e.g. NVMLLibraryMismatchError: a driver older than nvidia-ml-py
            self._broken.add((index, what))
            return None

    def _memory(self, index: int, handle):
        nv = self._nvml
        # v2 excludes driver-reserved memory from `used` (what nvidia-smi shows); older drivers only have v1
        mem = self._query(index, "mem_v2", nv.nvmlDeviceGetMemoryInfo, handle, nv.nvmlMemory_v2)
        return mem if mem is not None else self._query(index, "mem", nv.nvmlDeviceGetMemoryInfo, handle)

    def _device(self, index: int, handle) -> GpuInfo:
        nv, q = self._nvml, self._query
        name = self._static.get(("name", index), lambda: q(index, "name", nv.nvmlDeviceGetName, handle) or "N/A")
        uuid = self._static.get(("uuid", index), lambda: q(index, "uuid", nv.nvmlDeviceGetUUID, handle) or "N/A")
        limit_mw = self._slow.get(index, lambda: q(index, "plimit", nv.nvmlDeviceGetEnforcedPowerLimit, handle))
        mem = self._memory(index, handle)
        util = q(index, "util", nv.nvmlDeviceGetUtilizationRates, handle)
        temp = q(index, "temp", nv.nvmlDeviceGetTemperature, handle, nv.NVML_TEMPERATURE_GPU)
        power_mw = q(index, "power", nv.nvmlDeviceGetPowerUsage, handle)
        return GpuInfo(
            index=index, name=name, uuid=uuid,
            mem_used=int(mem.used) if mem is not None else 0, mem_total=int(mem.total) if mem is not None else 0,
            util_gpu=float(util.gpu) if util is not None else None,
            temperature=float(temp) if temp is not None else None,
            power_w=power_mw / 1000 if power_mw is not None else None,
            power_limit_w=limit_mw / 1000 if limit_mw is not None else None,
            processes=self._processes(index, handle),
        )

    def _processes(self, index: int, handle) -> tuple[GpuProcess, ...]:
        nv = self._nvml
        seen: dict[int, int | None] = {}
        queries = (("compute", nv.nvmlDeviceGetComputeRunningProcesses),
                   ("compute_v2", nv.nvmlDeviceGetComputeRunningProcesses_v2),  # drivers before 510
                   ("graphics", nv.nvmlDeviceGetGraphicsRunningProcesses),
                   ("graphics_v2", nv.nvmlDeviceGetGraphicsRunningProcesses_v2))
        for what, fn in queries:
            if what.endswith("_v2") and (index, what[:-3]) not in self._broken:
                continue  # the v3 query works (or failed for another reason): no fallback
            for p in self._query(index, what, fn, handle) or ():
                if seen.get(p.pid) is None:  # a process in both lists (C+G) is counted once
                    seen[p.pid] = p.usedGpuMemory
        return tuple(GpuProcess(pid, mem, self._names.get(pid, lambda pid=pid: _process_name(pid)))
                     for pid, mem in seen.items())


# -- processes of a run --

_tracked: dict[int, psutil.Process] = {}  # kept between calls so cpu_percent() measures since the last call
_tracked_lock = threading.Lock()


def nvml_gpu_count() -> int:
    """Number of NVIDIA GPUs NVML sees; 0 without a driver or library (never raises)."""
    try:
        import pynvml

        pynvml.nvmlInit()
        try:
            return pynvml.nvmlDeviceGetCount()
        finally:
            pynvml.nvmlShutdown()
    except Exception:  # no driver / no library: no GPU
        return 0


def _tracked_process(pid: int) -> psutil.Process:
    proc = _tracked.get(pid)
    if proc is None or not proc.is_running():  # is_running() also catches a reused pid (create time differs)
        proc = _tracked[pid] = psutil.Process(pid)
        proc.cpu_percent(None)  # first call only starts the measurement
    return proc


def tree_usage(pids: Iterable[int]) -> tuple[float, int]:
    """Summed CPU % (100 = one core) and resident memory (bytes) of these processes; vanished ones count 0.

    CPU % is measured since the previous call for the same pid (a pid seen for the first time counts 0). RSS is
    summed as is, so pages shared between forks (dataloader workers) are counted more than once.
    """
    cpu, rss = 0.0, 0
    with _tracked_lock:
        for pid in {int(getattr(p, "pid", p)) for p in pids}:
            try:
                proc = _tracked_process(pid)
                with proc.oneshot():
                    cpu += proc.cpu_percent(None)
                    rss += proc.memory_info().rss
            except psutil.Error:
                _tracked.pop(pid, None)
        for pid in [pid for pid, proc in _tracked.items() if not proc.is_running()]:
            del _tracked[pid]
    return cpu, rss


def _merge(procs: Iterable[GpuProcess]) -> list[GpuProcess]:
    """One entry per pid (memory summed over the GPUs it uses), largest first."""
    merged: dict[int, GpuProcess] = {}
    for p in procs:
        if p.pid in merged:
            old = merged[p.pid]
            mem = None if old.used_mem is None and p.used_mem is None else (old.used_mem or 0) + (p.used_mem or 0)
            p = GpuProcess(p.pid, mem, old.name)
        merged[p.pid] = p
    return sorted(merged.values(), key=lambda p: (-(p.used_mem or 0), p.pid))


def attribute(snapshot: GpuSnapshot, run_pids: set[int]) -> tuple[list[GpuProcess], list[GpuProcess]]:
    """Split the GPU processes of `snapshot` into (ours, others): ours are those whose pid is in `run_pids` (the
    pids of a run's live process tree). A pid NVML reports that is not visible here (NOT_VISIBLE) is never ours."""
    ours, others = [], []
    for gpu in snapshot.gpus:
        for p in gpu.processes:
            (ours if p.pid in run_pids and p.name != NOT_VISIBLE else others).append(p)
    return _merge(ours), _merge(others)


_default: GpuSampler | None = None
_default_lock = threading.Lock()


def default_sampler() -> GpuSampler:
    """A process-wide sampler (for callers that have no sampler of their own)."""
    global _default
    with _default_lock:
        if _default is None:
            _default = GpuSampler()
        return _default


def gpu_memory_of(pids: Iterable[int], snapshot: GpuSnapshot | None = None) -> int:
    """GPU memory (bytes, over all GPUs) held by these pids, from `snapshot` or a fresh sample.
    0 when NVML is unavailable or reports no per-process memory."""
    snap = snapshot if snapshot is not None else default_sampler().sample()
    wanted = {int(getattr(p, "pid", p)) for p in pids}
    ours, _ = attribute(snap, wanted)
    return sum(p.used_mem or 0 for p in ours)
