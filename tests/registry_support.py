"""Helpers for the registry tests: a process with a chosen pid (real pid reuse), a tiny real volume (tmpfs),
waiting for a condition with a deadline."""
from __future__ import annotations

import fcntl
import os
import subprocess
import time
from contextlib import contextmanager
from pathlib import Path

import psutil
import pytest

NS_LAST_PID = Path("/proc/sys/kernel/ns_last_pid")
PID_LOCK = "/tmp/swiftdeck-ns_last_pid.lock"


from test_tui_support import wait_for  # noqa: E402,F401  (the one non-Pilot wait of the suite)


def gone(pid: int, create_time: float | None = None) -> bool:
    """The process is dead (or a zombie, or another process has its pid now)."""
    try:
        proc = psutil.Process(pid)
        return proc.status() == psutil.STATUS_ZOMBIE or (
            create_time is not None and abs(proc.create_time() - create_time) >= 0.05)
    except psutil.NoSuchProcess:
        return True


def spawn_with_pid(pid: int, argv: list[str], **popen_kw) -> subprocess.Popen:
    """Start `argv` as process number `pid` (that pid must be free): ns_last_pid = pid - 1, then fork, under a
    lock so that our own tests do not race for it; retried if another process on the host took the number."""
    if os.geteuid() != 0 or not os.access(NS_LAST_PID, os.W_OK):
        pytest.skip("choosing a pid needs root (writes /proc/sys/kernel/ns_last_pid)")
    with open(PID_LOCK, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        for _ in range(50):
            if psutil.pid_exists(pid):
                break
            NS_LAST_PID.write_text(str(pid - 1))
            proc = subprocess.Popen(argv, **popen_kw)
            if proc.pid == pid:
                return proc
            proc.kill()
            proc.wait()
    raise AssertionError(f"could not get pid {pid} (another process holds it)")


@contextmanager
def tiny_volume(path: Path, size: str = "64k", *, read_only: bool = False):
    """A real tmpfs of `size` mounted at `path` (optionally read-only after `prepare` ran); unmounted at the end."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(path)], check=True)
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def remount_read_only(path: Path) -> None:
    subprocess.run(["mount", "-o", "remount,ro", str(path)], check=True)


def fill(volume: Path) -> Path:
    """Fill the volume to the last byte with one file; returns it (delete it to free the space)."""
    filler = volume / "filler"
    with open(filler, "wb", buffering=0) as fh:
        for chunk in (b"\0" * 4096, b"\0"):
            try:
                while fh.write(chunk):
                    pass
            except OSError:
                pass
    return filler


def leftover_tmp_files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if ".tmp" in p.name]
