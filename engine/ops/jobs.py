"""Stop a run, deploy and wait until it answers, merge and wait until it is written, and the processes of ended
runs that outlived them: the same functions behind `swiftdeck stop|deploy|merge|leftovers` and the dashboard."""
from __future__ import annotations

import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from engine import deploy as deploy_mod
from engine import leftovers as leftovers_mod
from engine import merge as merge_mod
from engine import runs, supervisor
from engine.command import GRACEFUL
from engine.runs import RunRecord

Cancelled = Callable[[], bool]


def stop(rec: RunRecord, *, force: bool = False, timeout_s: float = 120.0) -> supervisor.StopReport:
    """Graceful for training (a checkpoint at the next step; where ms-swift has no graceful stop, as in 3.x, SIGINT
    to the trainer), SIGINT for servers; escalates; confirms that no process of the run's tree is left."""
    return supervisor.stop(rec, force=force, timeout_s=timeout_s)


def stop_words(rec: RunRecord, force: bool = False) -> str:
    """What a stop of this kind of run does, for a confirmation or a progress line."""
    if force:
        return "kills the whole process tree now"
    if rec.kind in ("sft", "pt", "rlhf"):
        if GRACEFUL not in rec.argv:  # ms-swift 3.x (no graceful_exit callback), or a run started without it
            return "interrupts the trainer: this ms-swift has no graceful stop, so no checkpoint is saved at the " \
                   "next step (the last saved one stays)"
        return "saves a checkpoint at the next step, then exits"
    return JOB_STOP_WORDS.get(rec.kind, "asks it to exit, then ends its processes")


JOB_STOP_WORDS = {
    "deploy": "stops serving: the server is asked to exit (SIGINT), then its processes are ended; the adapters "
              "it served stay on disk",
    "export": "ends the merge: its output folder is left incomplete (delete it, or merge again)",
    "chat": "ends the chat worker (the dashboard starts a new one when asked)",
}


def named(rec: RunRecord) -> str:
    """How a message names a run or job: "run sft-…" for training; a job's id already says its kind ("deploy-…")."""
    if rec.kind in ("sft", "pt", "rlhf"):
        return f"run {rec.id}"
    return rec.id if rec.id.startswith(f"{rec.kind}-") else f"{rec.kind} {rec.id}"


# ---------------------------------------------------------------- what a job is doing (its view, `runs --all`)

REQUEST_RE = re.compile(rb'"(?:GET|POST) (/v1/[^ "]*) HTTP/[\d.]+" (\d{3})')  # uvicorn's access lines (swift deploy)


def count_requests(data: bytes) -> tuple[int, int]:
    """(API requests, of which failed: status >= 400) among uvicorn's access lines in console bytes `data`."""
    total = failed = 0
    if b"/v1/" in data:
        for m in REQUEST_RE.finditer(data):
            if m.group(1).startswith(b"/v1/models"):
                continue  # swiftdeck's own probes and clients listing models: not requests to the model
            total += 1
            failed += int(m.group(2)) >= 400
    return total, failed


def facts(rec: RunRecord, requests: tuple[int, int] | None = None) -> list[tuple[str, str]]:
    """(what, value) rows that say what a deploy, merge or chat job serves or writes; [] for a training run."""
    from engine.command import Command

    cmd = Command.of_record(rec)
    meta = rec.meta if isinstance(rec.meta, dict) else {}
    if rec.kind == "deploy":
        url = meta.get("url") if isinstance(meta.get("url"), str) else None
        if url is None and cmd.flag("--port"):
            url = f"http://{cmd.flag('--host') or '127.0.0.1'}:{cmd.flag('--port')}"
        where = f"{url}/v1" if url else "?"
        if rec.active:
            where += "" if meta.get("ready") else "  (starting: waiting for /health)"
        else:
            where += f"  (not serving: {rec.status})"
        rows = [("URL", where)]
        models = meta.get("models") if isinstance(meta.get("models"), list) else []
        adapters = cmd.flags("--adapters") or []
        rows.append(("serves", ", ".join(map(str, models or adapters)) or "the base model"))
        if cmd.flag("--model"):
            rows.append(("base", cmd.flag("--model")))
        if requests is not None:
            rows.append(("requests", f"{requests[0]}" + (f" ({requests[1]} failed)" if requests[1] else "")))
        return rows
    if rec.kind == "export":
        ckpt = cmd.flag("--adapters")
        if not ckpt:
            return [("command", cmd.display())]
        out = merge_mod.merged_path(Path(ckpt))
        state = ("written" if out.is_dir() else "missing") if rec.status == "finished" else \
            ("being written" if out.exists() else "not started yet") if rec.active else \
            ("left incomplete: delete it or merge again" if out.exists() else "not written")
        return [("merges", ckpt), ("writes", f"{out}  ({state})")]
    if rec.kind == "chat":
        loaded = meta.get("loaded") or meta.get("adapters") or []
        return [("chat worker", "the dashboard's chat model"), ("loaded", ", ".join(map(str, loaded)) or "-")]
    return []


def summary(rec: RunRecord) -> str:
    """One line on a job, for the header and `swiftdeck runs --all`: "URL … · serves …", "merges … → …"."""
    rows = dict(facts(rec))
    if rec.kind == "deploy":
        return f"{rows['URL']} · serves {rows['serves']}"
    if rec.kind == "export" and "writes" in rows:
        return f"merges {rows['merges']} → {rows['writes']}"
    return " · ".join(f"{k} {v}" for k, v in rows.items())


# ---------------------------------------------------------------- deploy


@dataclass
class Deployed:
    rec: RunRecord
    url: str | None  # None when the wait was cancelled


def deploy(adapters: dict[str, str], *, model: str | None = None, host: str = "127.0.0.1", port: int | None = None,
           extra: list[str] | None = None, cwd: Path | None = None, label: str = "", timeout_s: float = 600.0,
           cancelled: Cancelled = lambda: False, started: Callable[[RunRecord], None] | None = None) -> Deployed:
    """Start `swift deploy` as a managed job and wait until /health answers (raises DeployError when it exits or
    times out). `started` is told the record as soon as the job exists."""
    rec = deploy_mod.start(adapters, model=model, host=host, port=port, extra=extra, cwd=cwd, label=label)
    if started is not None:
        started(rec)
    deadline = time.time() + timeout_s
    while not cancelled():
        try:
            url = deploy_mod.wait_ready(rec, timeout_s=1.0)
            return Deployed(runs.load(rec.id), url)  # read after the wait: it records the port and models
        except deploy_mod.DeployError:
            if runs.load(rec.id).active and time.time() < deadline:
                continue
            raise
    return Deployed(runs.load(rec.id), None)


# ---------------------------------------------------------------- merge


def merge(ckpt: Path, *, device_map_cpu: bool = False, wait: bool = True, cancelled: Cancelled = lambda: False,
          started: Callable[[RunRecord], None] | None = None, poll_s: float = 0.5) -> RunRecord:
    """`swift export --merge_lora` as a background job writing CKPT-merged/; with `wait`, returns the ended record
    (or the live one when cancelled)."""
    rec = merge_mod.start(Path(ckpt), device_map_cpu=device_map_cpu)
    if started is not None:
        started(rec)
    while wait and rec.active and not cancelled():
        time.sleep(poll_s)
        rec = runs.load(rec.id)
    return rec


merged_path = merge_mod.merged_path


# ---------------------------------------------------------------- leftovers


def find_leftovers(sampler=None) -> list[leftovers_mod.Leftover]:
    """Live processes of ended runs, with their GPU memory when NVML is there. `sampler`: an engine.gpu.GpuSampler
    to reuse (else a temporary one)."""
    from engine import gpu

    own = sampler is None
    sampler = sampler or gpu.GpuSampler()
    try:
        snapshot = sampler.sample()
    finally:
        if own:
            sampler.close()
    return leftovers_mod.find(snapshot)


def stop_leftovers(items: list[leftovers_mod.Leftover]) -> list[int]:
    """SIGTERM then SIGKILL, each pid re-verified by start time first; returns the pids still alive."""
    return leftovers_mod.stop(items)
