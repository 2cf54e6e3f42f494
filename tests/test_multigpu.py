"""Multi-GPU bookkeeping on CPU: real torchrun runs (`python -m torch.distributed.run`, as `swift sft` starts it with
NPROC_PER_NODE set) of a small worker that behaves like a trainer with the graceful-exit callback
(tests/data/torchrun/rank.py); the ranks are recorded from their environment, stopped through their record, and a
failed rank is reported from torchrun's own summary. Real ms-swift with two ranks: tests/test_multigpu_swift.py."""
from __future__ import annotations

import os
import signal
import socket
import sys
import time
from pathlib import Path

import psutil
import pytest
from test_engine_e2e import wait_for as e2e_wait_for

from engine import ranks, runs, supervisor
from engine.diagnose import diagnose_run

RANK_PY = Path(__file__).parent / "data" / "torchrun" / "rank.py"
START_TIMEOUT = 120  # torchrun imports torch: seconds on a loaded 2-core machine


_launched: list[str] = []


@pytest.fixture(autouse=True)
def _stop_what_was_launched():
    """A failing test leaves no torchrun behind: every run it launched is force-stopped afterwards."""
    yield
    while _launched:
        run_id = _launched.pop()
        try:
            supervisor.stop(runs.load(run_id), force=True, timeout_s=5)
        except (runs.UnknownRun, OSError, ValueError):
            pass


def wait_for(predicate, timeout: float, what: str):
    return e2e_wait_for(predicate, timeout, what, interval=0.1)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def launch_torchrun(out: Path, mode: str, env: dict[str, str]) -> runs.RunRecord:
    """A recorded `sft`-kind run of torchrun over rank.py, laid out by `env` as ms-swift passes it on: NPROC_PER_NODE,
    NNODES, NODE_RANK, MASTER_ADDR, MASTER_PORT become torchrun's options."""
    out.mkdir(parents=True, exist_ok=True)
    options = [f"--{k.lower()}={v}" for k, v in env.items()
               if k in ("NPROC_PER_NODE", "NNODES", "NODE_RANK", "MASTER_ADDR", "MASTER_PORT")]
    argv = [sys.executable, "-m", "torch.distributed.run", *options, str(RANK_PY), str(out), mode,
            "--callbacks", "graceful_exit"]
    rec = supervisor.launch_argv("sft", argv, cwd=out, env=env)
    _launched.append(rec.id)
    return rec


def wait_ranks(rec: runs.RunRecord, out: Path, expected: list[int]) -> runs.RunRecord:
    """The record once its ranks (global numbers `expected`) and its agent are recorded and each rank is in its step
    loop."""
    def ready():
        r = runs.load(rec.id)
        started = all((out / f"rank{i}.started").exists() for i in expected)
        return r if started and [x.rank for x in ranks.recorded(r)] == expected and ranks.recorded_agents(r) else None

    return wait_for(ready, START_TIMEOUT, f"ranks {expected} and the torchrun agent recorded")


def start_torchrun(out: Path, mode: str, env: dict[str, str] | None = None) -> runs.RunRecord:
    """Two ranks on one node, once both are recorded and training."""
    env = {"NPROC_PER_NODE": "2", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(free_port()), **(env or {})}
    return wait_ranks(launch_torchrun(out, mode, env), out, [0, 1])


def start_two_nodes(tmp_path: Path) -> tuple[runs.RunRecord, runs.RunRecord]:
    """The 2-node simulation on one host: each node its own torchrun (NNODES=2, NODE_RANK=0/1, NPROC_PER_NODE=1,
    MASTER_ADDR=127.0.0.1), each recorded as its own run."""
    base = {"NNODES": "2", "NPROC_PER_NODE": "1", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(free_port())}
    launched = [launch_torchrun(tmp_path / f"node{n}", "graceful", {**base, "NODE_RANK": str(n)}) for n in (0, 1)]
    return tuple(wait_ranks(rec, tmp_path / f"node{n}", [n]) for n, rec in enumerate(launched))


def assert_nothing_left(rec: runs.RunRecord, extra: list[psutil.Process] = ()) -> None:
    rec = runs.load(rec.id)
    assert supervisor.live_tree(rec) == []
    for r in ranks.recorded(rec):
        assert not runs.is_same_process(r.pid, r.create_time), f"rank {r.rank} (pid {r.pid}) is still alive"
    for proc in extra:
        assert not proc.is_running() or proc.status() == psutil.STATUS_ZOMBIE, f"{proc.pid} is still alive"


def test_every_rank_is_recorded_with_its_gpu_and_a_graceful_stop_reaches_each(home, tmp_path):
    out = tmp_path / "out"
    rec = start_torchrun(out, "graceful", env={"CUDA_VISIBLE_DEVICES": "3,5"})
    found = ranks.recorded(rec)
    pids = {int((out / f"rank{i}.started").read_text()): i for i in (0, 1)}
    assert [(r.rank, r.local_rank, r.world_size, r.node_rank, r.gpu) for r in found] == \
        [(0, 0, 2, 0, "3"), (1, 1, 2, 0, "5")]
    assert {r.pid: r.rank for r in found} == pids  # the trainers themselves, not their forked children
    assert [pid for pid, _ in ranks.recorded_agents(rec)] == [rec.pid]  # torchrun's agent is the leader here
    # each rank is in its own session (torchrun's start_new_session): the launcher's group does not hold them
    assert all(os.getpgid(r.pid) == r.pid != rec.pgid for r in found)
    children = [c for r in found for c in psutil.Process(r.pid).children()]
    assert len(children) == 2

    report = supervisor.stop(rec, timeout_s=60)
    assert report.clean, report
    assert report.steps[0] == f"SIGUSR1 → trainer rank 0 pid {found[0].pid}, rank 1 pid {found[1].pid}"
    assert {p.name for p in out.glob("rank*.saved")} == {"rank0.saved", "rank1.saved"}  # each "checkpointed"
    rec = runs.load(rec.id)
    assert (rec.status, rec.exit_code) == ("stopped", 0)
    assert_nothing_left(rec, children)


def test_ranks_deaf_to_the_graceful_signal_are_stopped_through_the_torchrun_agent(home, tmp_path):
    out = tmp_path / "out"
    rec = start_torchrun(out, "deaf")
    started = time.time()
    report = supervisor.stop(rec, timeout_s=2)
    assert report.clean, report
    assert any(s.startswith("still running after 2s: SIGTERM → torchrun agent") for s in report.steps), report.steps
    assert not any("SIGKILL" in s for s in report.steps), report.steps  # the agent ended its ranks itself
    assert time.time() - started < supervisor.AGENT_GRACE_S
    assert not list(out.glob("rank*.saved"))
    assert runs.load(rec.id).status == "stopped"
    assert_nothing_left(rec)


def test_ranks_orphaned_by_a_dead_agent_and_runner_are_stopped_from_their_record(home, tmp_path):
    out = tmp_path / "out"
    rec = start_torchrun(out, "graceful")
    assert runs.is_same_process(rec.runner_pid, rec.runner_create_time)
    runner = psutil.Process(rec.runner_pid)
    runner.kill()
    runner.wait(10)
    agent = psutil.Process(rec.pid)
    agent.kill()  # like an OOM killer taking torchrun: its workers, in their own sessions, live on
    agent.wait(10)
    orphans = [p for _, p in ranks.live(rec)]
    assert len(orphans) == 2 and all(p.ppid() != rec.pid for p in orphans)

    report = supervisor.stop(runs.load(rec.id), timeout_s=60)
    assert report.clean, report
    assert report.steps[0].startswith("SIGUSR1 → trainer rank 0 pid"), report.steps
    assert {p.name for p in out.glob("rank*.saved")} == {"rank0.saved", "rank1.saved"}
    assert_nothing_left(rec, orphans)


def test_a_failed_rank_is_named_from_torchruns_summary(home, tmp_path):
    out = tmp_path / "out"
    rec = start_torchrun(out, "fail1")
    (out / "fail").touch()
    rec = wait_for(lambda: (r := runs.load(rec.id)) and not r.active and r, START_TIMEOUT, "the run to end")
    assert rec.status == "failed" and rec.exit_code == 1
    rank1 = next(r for r in ranks.recorded(rec) if r.rank == 1)
    console = rec.console_log.read_text()
    assert "ChildFailedError" in console
    failures = ranks.child_failures(console)
    assert [f for f in failures if f["root_cause"]] == [
        {"rank": 1, "local_rank": 1, "exit_code": 3, "pid": rank1.pid, "signal": None,
         "traceback": "To enable traceback see: https://pytorch.org/docs/stable/elastic/errors.html",
         "root_cause": True}]
    # torchrun's SIGTERM to rank 0 shows as a failure too when rank 0 had not exited by itself yet
    assert all((f["rank"], f["signal"]) == (0, "SIGTERM") for f in failures if not f["root_cause"])
    d = diagnose_run(rec)
    assert f"torchrun: rank 1 (local rank 1, pid {rank1.pid}) exited with code 3" in d.summary, d.summary
    assert [f["rank"] for f in d.details["rank_failures"] if f["root_cause"]] == [1]
    assert_nothing_left(rec)


def test_a_rank_killed_by_a_signal_shows_the_signal(home, tmp_path):
    out = tmp_path / "out"
    rec = start_torchrun(out, "graceful")
    rank1 = next(r for r in ranks.recorded(rec) if r.rank == 1)
    assert runs.signal_verified(rank1.pid, rank1.create_time, signal.SIGKILL)
    rec = wait_for(lambda: (r := runs.load(rec.id)) and not r.active and r, START_TIMEOUT, "the run to end")
    assert rec.status == "failed"
    failures = ranks.child_failures(rec.console_log.read_text())
    assert sorted((f["rank"], f["exit_code"], f["signal"], f["root_cause"]) for f in failures) == \
        [(0, -15, "SIGTERM", False), (1, -9, "SIGKILL", True)]  # torchrun ended rank 0 itself
    d = diagnose_run(rec)
    assert "rank 1" in d.summary and "SIGKILL" in d.summary, d.summary
    assert_nothing_left(rec)


@pytest.mark.parametrize("stopped_node", [0, 1])
def test_a_force_stop_of_one_node_brings_the_other_node_down(home, tmp_path, stopped_node):
    nodes = start_two_nodes(tmp_path)
    assert [[(r.rank, r.node_rank, r.world_size) for r in ranks.recorded(n)] for n in nodes] == \
        [[(0, 0, 2)], [(1, 1, 2)]]
    other = 1 - stopped_node
    report = supervisor.stop(nodes[stopped_node], force=True)
    assert report.clean, report
    # the other node's swiftdeck sees its side is alone and stops it the graceful way
    rec = wait_for(lambda: (r := runs.load(nodes[other].id)) and not r.active and r, 60, "the other node to stop")
    assert rec.status == "stopped" and rec.stop_requested == "peer", (rec.status, rec.notes)
    assert any(n.startswith("stopping this node: ") for n in rec.notes), rec.notes
    assert (tmp_path / f"node{other}" / f"rank{other}.saved").exists()  # its rank got the graceful signal
    assert "multi-node" in diagnose_run(rec).summary
    for node in nodes:
        assert_nothing_left(node)


# ---------------------------------------------------------------- units


def test_the_gpu_of_a_local_rank_follows_cuda_visible_devices():
    assert ranks.gpu_of({}, 1) == "1"
    assert ranks.gpu_of({"CUDA_VISIBLE_DEVICES": "4,6"}, 1) == "6"
    assert ranks.gpu_of({"CUDA_VISIBLE_DEVICES": "GPU-aa, GPU-bb"}, 0) == "GPU-aa"
    assert ranks.gpu_of({"CUDA_VISIBLE_DEVICES": "2"}, 1) == "?1"


def test_torchruns_agent_is_told_from_its_command_line():
    assert ranks.is_agent(["/usr/bin/python3", "-m", "torch.distributed.run", "--nproc_per_node", "2", "x.py"])
    assert ranks.is_agent(["/venv/bin/torchrun", "--nproc_per_node", "2", "x.py"])
    assert not ranks.is_agent(["/usr/bin/python3", "/venv/lib/python3.11/site-packages/swift/cli/sft.py"])
    assert not ranks.is_agent(["/venv/bin/swift", "sft", "--model", "torch.distributed.run"])


def test_a_record_with_bad_rank_entries_keeps_the_good_ones(home):
    rec = runs.create("sft", ["swift", "sft"], "/tmp")
    rec = runs.update(rec.id, lambda r: r.meta.update(
        ranks=[{"pid": 10, "create_time": 1.0, "rank": 1, "local_rank": 1, "world_size": 2, "gpu": "1"},
               {"pid": "x"}, "junk", {"pid": 11, "create_time": 2.0, "rank": 0, "local_rank": 0, "world_size": 2}],
        agents=[[9, 0.5], ["bad"], 7]))
    assert [(r.rank, r.pid) for r in ranks.recorded(rec)] == [(0, 11), (1, 10)]
    assert ranks.recorded_agents(rec) == [(9, 0.5)]
    assert ranks.live(rec) == []  # none of those pids is that process
