"""The dashboard on a distributed run: the GPU pane shows each rank (its GPU, memory and utilisation) as this run's
and the rest of those GPUs as other processes; the log pane shows the master rank's lines by default, each rank's
on request, and a rank that died or never started.

The GPU readings are NVML's own, recorded on 2 x H200 (tests/data/multigpu/h200x2-gpu-pane.json); the ranks are
real processes of this machine with torchrun's environment, recorded as the run's ranks as the runner records them,
and the recorded pids are mapped onto them (NVML reports the pids a run's ranks have)."""
from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from engine import runs
from engine.gpu import NO_GPU, GpuInfo, GpuProcess, GpuSnapshot
from test_tui_support import FIXED_START, ReplayGpu, fixed_clock, make_run, text_of, until
from tui.app import SwiftdeckApp
from tui.gpufeed import GpuFeed
from tui.model import RunSource
from tui.widgets.gpu import GpuPane
from tui.widgets.log import LogPane

DATA = Path(__file__).parent / "data" / "multigpu"
MiB = 1024 ** 2


def recorded_snapshot(pid_of: dict[int, int], other: bool) -> GpuSnapshot:
    """The H200 reading of the DDP run while it trained, its rank pids mapped by `pid_of`; with `other`, the process
    that filled GPU 1 in the OOM scenario is on GPU 1 as well."""
    data = json.loads((DATA / "h200x2-gpu-pane.json").read_text())
    totals = {i: mib * MiB for i, _, mib in data["host_gpus"]}
    names = {i: name for i, name, _ in data["host_gpus"]}
    gpus = []
    for g in data["ddp"]["gpus"]:
        procs = [GpuProcess(pid_of[p["pid"]], p["used_mib"] * MiB, p["name"])
                 for p in data["ddp"]["processes"] if p["gpu"] == g["index"]]
        used = g["mem_used_mib"] * MiB
        o = data["other_on_gpu1"]
        if other and o["gpu"] == g["index"]:
            procs.append(GpuProcess(o["pid"], o["used_bytes"], o["name"]))
            used += o["used_bytes"]
        gpus.append(GpuInfo(g["index"], names[g["index"]], f"GPU-{g['index']}", used, totals[g["index"]], g["util"],
                            None, None, None, tuple(procs)))
    return GpuSnapshot(True, "", tuple(gpus), FIXED_START)


RANK_CHILD = "import sys, time; sys.stdout.close(); time.sleep(120)"


def start_ranks(n: int, world: int = 2) -> list[subprocess.Popen]:
    """`n` processes with the environment torchrun gives its workers (ranks 0..n-1 of `world`)."""
    procs = []
    for r in range(n):
        env = {**os.environ, "TORCHELASTIC_RUN_ID": "none", "RANK": str(r), "LOCAL_RANK": str(r),
               "WORLD_SIZE": str(world), "GROUP_RANK": "0", "LOCAL_WORLD_SIZE": str(world),
               "TORCHELASTIC_RESTART_COUNT": "0", "CUDA_VISIBLE_DEVICES": "0,1"}
        procs.append(subprocess.Popen([sys.executable, "-c", RANK_CHILD], env=env))
    return procs


def record_ranks(rec: runs.RunRecord, procs: list[subprocess.Popen], world: int = 2) -> runs.RunRecord:
    """The run as the runner records a 2-process torchrun run: its environment and its ranks (pid + start time)."""
    def fill(r: runs.RunRecord) -> None:
        r.env = {"CUDA_VISIBLE_DEVICES": "0,1", "NPROC_PER_NODE": str(world)}
        r.meta["ranks"] = [{"pid": p.pid, "create_time": psutil.Process(p.pid).create_time(), "rank": i,
                            "local_rank": i, "world_size": world, "node_rank": 0, "gpu": str(i), "restart": 0}
                           for i, p in enumerate(procs)]
        r.meta["agents"] = []

    return runs.update(rec.id, fill)


@pytest.fixture
def rank_procs():
    made: list[subprocess.Popen] = []
    yield made
    for p in made:
        p.kill()
        p.wait()


def gpu_text(app) -> str:
    return text_of(app.query_one(GpuPane).query_one("#gpu-body"))


def section(text: str, title: str) -> str:
    """The lines of one section of the pane ("This run", "Other processes on these GPUs")."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(title))
    end = next((i for i in range(start + 1, len(lines)) if lines[i] and not lines[i].startswith(" ")), len(lines))
    return "\n".join(lines[start:end])


def test_gpu_pane_shows_each_rank_on_its_gpu_as_this_runs_and_the_rest_as_others(home, tmp_path, swift_fixtures,
                                                                                  rank_procs):
    rank_procs += start_ranks(2)
    rec = record_ranks(make_run(swift_fixtures, tmp_path, "running"), rank_procs)
    snap = recorded_snapshot({840: rank_procs[0].pid, 841: rank_procs[1].pid}, other=True)

    async def go():
        app = SwiftdeckApp(RunSource.of_record(rec), clock=fixed_clock, gpu_feed=GpuFeed(ReplayGpu(snap)),
                           poll_s=3600, gpu_s=0.2, remember_theme=False, check_leftovers=False)
        async with app.run_test(size=(200, 56)) as pilot:
            assert await until(pilot, lambda: "rank 1" in gpu_text(app)), gpu_text(app)
            text = gpu_text(app)
            assert "GPU0 NVIDIA H200  ← this run's rank 0" in text and "GPU1 NVIDIA H200  ← this run's rank 1" in text
            ours = section(text, "This run")
            assert f"rank 0  GPU 0      1.7 GiB  util   4%  pid {rank_procs[0].pid}" in ours, ours
            assert f"rank 1  GPU 1      1.7 GiB  util  21%  pid {rank_procs[1].pid}" in ours, ours
            others = section(text, "Other processes on these GPUs")
            assert "3121 python3" in others and "137.8 GiB on GPU 1" in others, others
            assert str(rank_procs[0].pid) not in others and str(rank_procs[1].pid) not in others

            rank_procs[1].kill()  # rank 1 dies while the run goes on
            rank_procs[1].wait()
            assert await until(pilot, lambda: "rank 1  GPU 1   gone" in gpu_text(app)), gpu_text(app)
            assert "← this run's rank 0" in gpu_text(app)
    asyncio.run(go())


def test_a_rank_not_started_shows_as_such(home, tmp_path, swift_fixtures, rank_procs):
    rank_procs += start_ranks(1)
    rec = record_ranks(make_run(swift_fixtures, tmp_path, "running"), rank_procs)
    runs.update(rec.id, lambda r: r.env.update(NPROC_PER_NODE="2"))
    rec = runs.load(rec.id)
    snap = recorded_snapshot({840: rank_procs[0].pid, 841: 999_999_999}, other=False)

    async def go():
        app = SwiftdeckApp(RunSource.of_record(rec), clock=fixed_clock, gpu_feed=GpuFeed(ReplayGpu(snap)),
                           poll_s=3600, gpu_s=0.2, remember_theme=False, check_leftovers=False)
        async with app.run_test(size=(200, 56)) as pilot:
            assert await until(pilot, lambda: "rank 1" in gpu_text(app)), gpu_text(app)
            ours = section(gpu_text(app), "This run")
            assert "rank 1  not started yet" in ours and f"rank 0  GPU 0      1.7 GiB" in ours, ours
    asyncio.run(go())


def test_without_nvml_the_pane_says_so_and_lists_the_ranks(home, tmp_path, swift_fixtures, rank_procs):
    rank_procs += start_ranks(2)
    rec = record_ranks(make_run(swift_fixtures, tmp_path, "running"), rank_procs)
    none = GpuSnapshot(False, f"{NO_GPU}: NVML Shared Library Not Found", (), FIXED_START)

    async def go():
        app = SwiftdeckApp(RunSource.of_record(rec), clock=fixed_clock, gpu_feed=GpuFeed(ReplayGpu(none)),
                           poll_s=3600, gpu_s=0.2, remember_theme=False, check_leftovers=False)
        async with app.run_test(size=(120, 40)) as pilot:
            assert await until(pilot, lambda: "rank 1" in gpu_text(app)), gpu_text(app)
            text = gpu_text(app)
            assert text.startswith("No NVIDIA GPU (NVML not available)") and "NVML Shared Library Not Found" in text
            assert f"rank 0  running  pid {rank_procs[0].pid}" in text, text
            assert f"rank 1  running  pid {rank_procs[1].pid}" in text, text
            assert "GiB" not in text and "Traceback" not in text
    asyncio.run(go())


# ---------------------------------------------------------------- the log pane

def log_shown(app) -> list[str]:
    pane = app.query_one(LogPane)
    view = pane.view
    return [pane.store.line(view.line_number(i)) for i in range(view.total)]


def ranks_text(app) -> str:
    return text_of(app.query_one("#log-ranks"))


async def scanned(pilot, app, rank) -> bool:
    """The log pane shows the lines of `rank` (None: every line) and its scan is done."""
    pane = app.query_one(LogPane)
    return await until(pilot, lambda: pane.filter.rank == rank and "filtering" not in text_of(
        pane.query_one("#log-status")) and (rank is None or pane.view.view is not None))


def oom_run(swift_fixtures, tmp_path, ranks_kept=(0, 1)) -> runs.RunRecord:
    """The 2-rank H200 run that ran out of memory on rank 1 (its console and its record's ranks and environment)."""
    rec = make_run(swift_fixtures, tmp_path, "failed")
    data = json.loads((DATA / "h200x2-gpu-pane.json").read_text())["oom_run"]

    def fill(r: runs.RunRecord) -> None:
        r.env = dict(data["env"])
        r.meta["ranks"] = [x for x in data["ranks"] if x["rank"] in ranks_kept]
        r.exit_code = data["exit_code"]

    rec = runs.update(rec.id, fill)
    rec.console_log.write_bytes((DATA / "oom-rank1-h200x2.log").read_bytes())
    return rec


def app_on(rec, size=(200, 56)) -> SwiftdeckApp:
    none = GpuSnapshot(False, f"{NO_GPU}: NVML Shared Library Not Found", (), FIXED_START)
    return SwiftdeckApp(RunSource.of_record(rec), clock=fixed_clock, gpu_feed=GpuFeed(ReplayGpu(none)), poll_s=3600,
                        gpu_s=3600, remember_theme=False, check_leftovers=False)


def test_log_shows_the_master_ranks_lines_and_each_rank_on_request(home, tmp_path, swift_fixtures):
    rec = oom_run(swift_fixtures, tmp_path)
    console = (DATA / "oom-rank1-h200x2.log").read_text().splitlines()
    rank1 = [line for line in console if line.startswith("[rank1]:")]
    assert len(rank1) > 100 and any(line.startswith("[rank0]:") for line in console)

    async def go():
        app = app_on(rec)
        async with app.run_test(size=(200, 56)) as pilot:
            assert await scanned(pilot, app, 0)
            shown = log_shown(app)
            assert not any(line.startswith("[rank1]:") for line in shown)
            assert len(shown) == len(console) - len(rank1)
            assert any(line.startswith("[rank0]:[W1130") for line in shown)
            assert any(line.startswith("[INFO:swift]") for line in shown)
            bar = ranks_text(app)
            assert "0 ■ ended: pid 3237" in bar and "1 ■ ended: pid 3238, 1 error line" in bar, bar
            assert "showing rank 0 (master)" in bar

            await pilot.press("greater_than_sign")  # rank 1's lines: its OOM traceback
            assert await scanned(pilot, app, 1)
            assert log_shown(app) == [line.rstrip() for line in rank1]
            assert "showing rank 1" in ranks_text(app)
            assert app.query_one("#log-filter-rank").value == "1"

            await pilot.press("greater_than_sign")  # every line
            assert await scanned(pilot, app, None)
            assert len(log_shown(app)) == len(console) and "showing all ranks" in ranks_text(app)
    asyncio.run(go())


def test_a_rank_that_never_started_shows_as_such(home, tmp_path, swift_fixtures):
    rec = oom_run(swift_fixtures, tmp_path, ranks_kept=(0,))

    async def go():
        app = app_on(rec)
        async with app.run_test(size=(200, 56)) as pilot:
            assert await until(pilot, lambda: "never started" in ranks_text(app)), ranks_text(app)
            assert "1 ✖ never started" in ranks_text(app) and "0 ■ ended" in ranks_text(app)
    asyncio.run(go())


def test_a_single_process_run_has_no_rank_line_and_every_line_shows(home, tmp_path, swift_fixtures):
    rec = make_run(swift_fixtures, tmp_path, "finished")

    async def go():
        app = app_on(rec)
        async with app.run_test(size=(200, 56)) as pilot:
            pane = app.query_one(LogPane)
            assert await until(pilot, lambda: pane.store is not None and pane.store.count > 50)
            assert pane.filter.rank is None and pane.view.view is None
            assert not app.query_one("#log-ranks").display and not app.query_one("#log-filter-rank").display
    asyncio.run(go())


def test_ranks_that_died_show_torchruns_exit_code_and_signal(home, tmp_path):
    """A real torchrun run whose rank 1 exits with code 3: torchrun ends rank 0 with SIGTERM and prints its
    ChildFailedError summary; the log pane names both from it."""
    from test_multigpu import START_TIMEOUT, start_torchrun, wait_for

    from engine import supervisor

    out = tmp_path / "out"
    rec = start_torchrun(out, "fail1")
    try:
        (out / "fail").touch()
        rec = wait_for(lambda: (r := runs.load(rec.id)) and not r.active and r, START_TIMEOUT, "the run to end")
    finally:
        supervisor.stop(runs.load(rec.id), force=True, timeout_s=5)
    assert "ChildFailedError" in rec.console_log.read_text()

    async def go():
        app = app_on(rec)
        async with app.run_test(size=(200, 56)) as pilot:
            assert await until(pilot, lambda: "exited with code 3" in ranks_text(app)), ranks_text(app)
            bar = ranks_text(app)
            assert "1 ✖ died: exited with code 3 (first failure)" in bar, bar
            # torchrun's SIGTERM to rank 0 is in its summary when rank 0 had not exited by itself yet
            assert "0 ✖ died: killed by SIGTERM" in bar or "0 ■ ended" in bar, bar
    asyncio.run(go())


def test_the_filter_bar_picks_a_rank(home, tmp_path, swift_fixtures):
    rec = oom_run(swift_fixtures, tmp_path)

    async def go():
        app = app_on(rec)
        async with app.run_test(size=(200, 56)) as pilot:
            assert await scanned(pilot, app, 0)
            await pilot.press("slash", "tab", "tab")  # text, level, rank
            select = app.query_one("#log-filter-rank")
            assert await until(pilot, lambda: select.has_focus)
            assert select.value == "0"  # the master rank, as shown
            await pilot.press("enter", "down", "enter")  # from "Rank 0 (master)" to "Rank 1"
            assert await scanned(pilot, app, 1)
            assert log_shown(app) and all(line.startswith("[rank1]:") for line in log_shown(app))
            assert "showing rank 1" in ranks_text(app)
    asyncio.run(go())
