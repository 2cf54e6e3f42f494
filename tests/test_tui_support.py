"""Registry runs built from the recorded ms-swift 4.6 output (tests/data/ms-swift-4.6), for the dashboard's tests.

The recorded console (stdout + stderr of `swift sft`) and run folder are copied into a temporary place and a
registry record points at them, as `swiftdeck train` would have made it. States:
- finished: the whole recording, exit code 0;
- running:  the recording cut just after checkpoint-20 was saved (logging.jsonl to step 20, checkpoint-24 gone),
            the record's runner pid is the test process itself, so the registry reports it `running`;
- failed:   the recorded CUDA OOM console (exit code 1).
"""
from __future__ import annotations

import asyncio
import os
import re
import shutil
import time
from pathlib import Path

import psutil

from engine import runs

FIXED_START = 1795801200.0  # a fixed wall clock (2026-11-27) so nothing in a snapshot depends on today
RUN_SPLIT = b"Saving model checkpoint to /tmp/w/output/v1-20261127-173725/checkpoint-20\n"


def _step(line: bytes) -> int | None:
    m = re.search(rb"global_step/max_steps.: .(\d+)/", line)
    return int(m.group(1)) if m else None


def _console(fixtures: Path, name: str) -> bytes:
    return (fixtures / f"{name}.stdout").read_bytes() + (fixtures / f"{name}.stderr").read_bytes()


def make_run(fixtures: Path, where: Path, state: str, *, label: str = "") -> runs.RunRecord:
    """A registry record (in the current SWIFTDECK_HOME) for one recorded state."""
    where.mkdir(parents=True, exist_ok=True)
    out = where / f"output-{state}"
    run_dir = out / "v2-20261127-174023"
    if state == "failed":
        console = (fixtures / "oom-h200.stdout").read_bytes() + (fixtures / "oom-h200.stderr").read_bytes()
        run_dir = None
    else:
        shutil.copytree(fixtures / "run-v2", run_dir, symlinks=True)
        for ckpt in run_dir.glob("checkpoint-*"):  # the recording left the weights out: a valid, empty file
            (ckpt / "adapter_model.safetensors").write_bytes((2).to_bytes(8, "little") + b"{}")
        console = _console(fixtures, "sft-tiny-h200")
        if state == "running":
            # stdout dicts up to step 20, then the stderr cut right after checkpoint-20 was saved
            stdout = (fixtures / "sft-tiny-h200.stdout").read_bytes().splitlines(keepends=True)
            stderr = (fixtures / "sft-tiny-h200.stderr").read_bytes()
            stderr = stderr[: stderr.index(RUN_SPLIT) + len(RUN_SPLIT)] + b"Train:  88%|########8 | 21/24 [00:05<00:00,  7.16it/s]"
            console = b"".join(l for l in stdout if _step(l) is None or _step(l) <= 20) + stderr
            jsonl = (run_dir / "logging.jsonl").read_bytes().splitlines(keepends=True)
            keep = [l for l in jsonl if _step(l) is not None and _step(l) <= 20 and b"train_runtime" not in l]
            (run_dir / "logging.jsonl").write_bytes(b"".join(keep))
            shutil.rmtree(run_dir / "checkpoint-24")
            link = run_dir / "last-checkpoint"
            if link.is_symlink() or link.exists():
                link.unlink()
    argv = ["swift", "sft", "--model", "/tmp/tiny", "--model_type", "qwen2", "--template", "qwen2_5",
            "--dataset", "/home/user/data/self_cognition.json", "--output_dir", str(out)]
    made = runs.create("sft", argv, str(where), label=label or state, output_dir=str(out))
    run_id = f"sft-20261127-174000-{state}"  # fixed, so snapshots do not depend on today or chance
    os.rename(made.folder, runs.runs_dir() / run_id)
    me = psutil.Process()

    def fill(r: runs.RunRecord) -> None:
        r.id = run_id
        r.run_dir = str(run_dir) if run_dir else None
        r.started_at = FIXED_START
        if state == "running":
            r.status, r.runner_pid, r.runner_create_time = "running", me.pid, me.create_time()
        else:
            r.status = "finished" if state == "finished" else "failed"
            r.exit_code = 0 if state == "finished" else 1
            r.ended_at = FIXED_START + 60

    rec = runs.update(run_id, fill)
    rec.console_log.write_bytes(console)
    return rec


def wait_for(predicate, timeout: float = 60.0, every: float = 0.2) -> bool:
    """Outside a Pilot test: True as soon as `predicate()` holds, False if it still does not after `timeout` s."""
    end = time.time() + timeout
    while time.time() < end:
        if predicate():
            return True
        time.sleep(every)
    return bool(predicate())


async def until(pilot, predicate, timeout: float = 30.0, every: float = 0.05) -> bool:
    """In a Pilot test: True as soon as `predicate()` holds, False if it still does not after `timeout` s."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while loop.time() < end:
        if predicate():
            return True
        await pilot.pause(every)
    return bool(predicate())


async def settled(pilot) -> None:
    """Every worker started so far is done and its result shown: the app hands a worker's result to the UI thread
    with call_from_thread, which returns once it has been applied; then the screen catches up (a cursor moved
    after a refresh, a relayout)."""
    from textual.worker import WorkerCancelled

    for worker in list(pilot.app.workers):
        try:
            await worker.wait()
        except WorkerCancelled:  # replaced by a newer one (exclusive) or the run shown changed
            pass
    await pilot.pause()
    await pilot.wait_for_scheduled_animations()


def text_of(widget) -> str:
    """What a widget shows (its rendered text)."""
    return str(widget.render())



def fixed_clock() -> float:
    return FIXED_START + 42.0


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return True
    except OSError:
        return False


class ReplayGpu:
    """An NVML sampler that gives back one recorded snapshot (hardware readings are inputs, like the clock)."""

    def __init__(self, snapshot):
        self.snapshot = snapshot

    def sample(self):
        return self.snapshot

    def close(self) -> None:
        pass
