"""End to end on CPU: real `swift sft` LoRA runs on the offline demo model, launched through the CLI.

Each test starts its own short run; they are the slowest tests of the suite (tens of seconds each).
"""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import psutil
import pytest

from engine import checkpoints, demo, runs, status, supervisor
from engine.events import CheckpointSaved, Metrics
from engine.ingest import RunReader

pytestmark = pytest.mark.slow
RUN_TIMEOUT = 420


def swiftdeck(*args: str, home: Path, **kw) -> subprocess.CompletedProcess:
    env = {**os.environ, "SWIFTDECK_HOME": str(home)}
    return subprocess.run([sys.executable, "-m", "tui.cli", *args], env=env, capture_output=True, text=True,
                          timeout=kw.pop("timeout", 180), **kw)


def started_id(stdout: str) -> str:
    match = re.search(r"started run (\S+)", stdout)
    assert match, stdout
    return match.group(1)


def wait_for(predicate, timeout: float, what: str, interval: float = 0.5):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def wait_ended(run_id: str) -> runs.RunRecord:
    return wait_for(lambda: (r := runs.load(run_id)) and not r.active and r, RUN_TIMEOUT, f"run {run_id} to end")


def logged_steps(run_dir: Path) -> list[int]:
    steps = []
    for line in (run_dir / "logging.jsonl").read_text().splitlines():
        record = json.loads(line)
        if "global_step/max_steps" in record and "loss" in record:
            steps.append(int(record["global_step/max_steps"].split("/")[0]))
    return steps


def short_args(assets, out: Path, **kw) -> list[str]:
    kw.setdefault("epochs", 4)  # 50 rows / batch 10 = 5 steps per epoch
    kw.setdefault("save_steps", 10)
    kw.setdefault("logging_steps", 1)
    return demo.demo_sft_args(assets, out, **kw)


def diagnosis(run_id: str, home: Path) -> dict:
    proc = swiftdeck("diagnose", run_id, "--json", home=home)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return json.loads(proc.stdout)


def kill_runner(rec: runs.RunRecord) -> None:
    """SIGKILL swiftdeck's runner of a run (verified by pid + start time), like an OOM killer or a crash."""
    assert runs.is_same_process(rec.runner_pid, rec.runner_create_time)
    runner = psutil.Process(rec.runner_pid)
    runner.kill()
    runner.wait(10)


@contextmanager
def tmpfs(path: Path, size: str):
    """A real tmpfs mounted at `path` (root only), unmounted afterwards."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    path.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs: {mounted.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "--lazy", str(path)], check=True)


def fill(volume: Path, *, leave: int = 0) -> Path:
    """Fill a volume up to `leave` free bytes with one file."""
    filler = volume / "filler"
    st = os.statvfs(volume)
    with open(filler, "wb", buffering=0) as fh:
        os.posix_fallocate(fh.fileno(), 0, max(st.f_bfree * st.f_frsize - leave, 1))
        if not leave:
            try:
                while True:  # what fallocate's rounding left
                    fh.write(b"\0" * 4096)
                    fh.flush()
            except OSError:
                pass
    return filler


def assert_tree_gone(rec: runs.RunRecord) -> None:
    assert supervisor.live_tree(rec) == []
    for pid, ctime in [[rec.pid, rec.create_time], *rec.descendants]:
        assert not runs.is_same_process(int(pid), ctime), f"process {pid} of run {rec.id} is still alive"


def test_launcher_exits_run_finishes_and_history_is_complete(home, demo_assets, tmp_path):
    out = tmp_path / "output"
    proc = swiftdeck("train", "--", *short_args(demo_assets, out), home=home, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    run_id = started_id(proc.stdout)
    rec = wait_ended(run_id)  # the launching process is long gone: the run went on without it
    assert (rec.status, rec.exit_code) == ("finished", 0), (rec, rec.console_log.read_text()[-3000:])
    run_dir = Path(rec.run_dir)
    assert run_dir.parent == out and re.fullmatch(r"v\d+-\d{8}-\d{6}", run_dir.name)

    # every step of logging.jsonl appears exactly once in the events
    events = RunReader(console_log=rec.console_log, run_dir=run_dir).poll()
    metric_steps = [e.step for e in events if isinstance(e, Metrics) and "loss" in e.values]
    assert metric_steps == logged_steps(run_dir) == list(range(1, 21))

    # the checkpoints on disk are the last `save_total_limit` saved ones; the final record points at the last
    saved = sorted({e.step for e in events if isinstance(e, CheckpointSaved)})
    assert saved == [10, 20]
    (folder,) = checkpoints.scan(out)
    assert [c.step for c in folder.checkpoints] == saved
    assert folder.checkpoints[-1].is_last and all(c.kind == "lora" and c.complete for c in folder.checkpoints)

    # a fresh swiftdeck process reattaches by id and by run folder and sees the whole history
    for ref in (run_id, str(run_dir)):
        fresh = swiftdeck("metrics", ref, "--json", home=home)
        assert fresh.returncode == 0, fresh.stderr
        assert [row["step"] for row in json.loads(fresh.stdout)["metrics"] if "loss" in row] == list(range(1, 21))
    listed = json.loads(swiftdeck("runs", "--json", home=home).stdout)
    assert [(r["id"], r["status"], r["step"]) for r in listed] == [(run_id, "finished", 20)]
    assert_tree_gone(rec)


def test_launcher_sigkilled_mid_run_run_still_finishes(home, demo_assets, tmp_path):
    env = {**os.environ, "SWIFTDECK_HOME": str(home)}
    launcher = subprocess.Popen([sys.executable, "-m", "tui.cli", "train", "--wait", "--",
                                 *short_args(demo_assets, tmp_path / "output", epochs=6)],
                                cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                start_new_session=True)
    lines = iter(launcher.stdout.readline, "")  # the checks print first (notes, the dataset), then the run id
    run_id = started_id(next(line for line in lines if "started run" in line))
    rec = runs.load(run_id)
    reader = RunReader(console_log=rec.console_log)
    wait_for(lambda: any(isinstance(e, Metrics) for e in reader.poll()), RUN_TIMEOUT, "the first logged step")
    os.killpg(launcher.pid, signal.SIGKILL)  # like a dropped SSH session taking the terminal's processes
    launcher.wait(10)
    assert runs.load(run_id).active
    rec = wait_ended(run_id)
    assert (rec.status, rec.exit_code) == ("finished", 0)
    fresh = swiftdeck("metrics", run_id, "--json", home=home)
    steps = [row["step"] for row in json.loads(fresh.stdout)["metrics"] if "loss" in row]
    assert steps == logged_steps(Path(rec.run_dir)) == list(range(1, 31))
    assert_tree_gone(rec)


def test_graceful_stop_saves_a_new_checkpoint_and_leaves_no_process(home, demo_assets, tmp_path):
    out = tmp_path / "output"
    proc = swiftdeck("train", "--", *short_args(demo_assets, out, epochs=60, save_steps=100), home=home,
                     cwd=tmp_path)
    run_id = started_id(proc.stdout)
    rec = runs.load(run_id)
    reader = RunReader(console_log=rec.console_log)
    wait_for(lambda: reader.poll() is not None and reader.state.metrics and reader.state.metrics[-1].step >= 6,
             RUN_TIMEOUT, "step 6")
    assert supervisor.trainer_processes(runs.load(run_id)), "no trainer process found"
    stopped = swiftdeck("stop", run_id, home=home, timeout=300)
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    assert "SIGUSR1" in stopped.stdout
    rec = wait_ended(run_id)
    assert rec.status == "stopped" and "diagnosis" not in rec.meta
    (folder,) = checkpoints.scan(out)
    steps = [c.step for c in folder.checkpoints]
    # save_steps is 100 and the run stopped long before: the only checkpoint is the one the stop saved
    assert len(steps) == 1 and 6 <= steps[0] < 100, steps
    assert folder.checkpoints[0].complete and folder.checkpoints[0].resumable
    assert_tree_gone(rec)
    # diagnose says it was stopped, with the checkpoint; checkpoints labels it stopped (ms-swift's final record
    # is there as after a normal end)
    d = diagnosis(run_id, home)
    assert d["kind"] == "stopped_by_user" and "graceful" in d["summary"], d
    assert d["details"]["checkpoint"] == str(folder.checkpoints[0].path)
    table = swiftdeck("checkpoints", str(out), home=home).stdout
    assert f"[stopped step {steps[0]}/300]" in table, table

    # "relaunch with these changes": a remedy applied, resumed from the checkpoint the stop saved
    from engine.ops import launch

    remedy = "--per_device_train_batch_size 5 --gradient_accumulation_steps 2 (was 10 x 1: the effective batch stays)"
    cmd, changes = launch.plan_relaunch(rec, remedy)
    assert any("--per_device_train_batch_size 10 → 5" in c for c in changes), changes
    assert any("--resume_from_checkpoint" in c for c in changes)
    resumed = launch.start(launch.check_launch(cmd))
    reader = RunReader(console_log=resumed.console_log)
    first = wait_for(lambda: reader.poll() is not None and reader.state.metrics and reader.state.metrics[0],
                     RUN_TIMEOUT, "the resumed run's first step")
    assert first.step == steps[0] + 1, (first, steps)  # it continued, it did not start over
    supervisor.stop(runs.load(resumed.id), force=True)


def test_force_stop_kills_the_whole_tree(home, demo_assets, tmp_path):
    proc = swiftdeck("train", "--", *short_args(demo_assets, tmp_path / "output", epochs=60), home=home,
                     cwd=tmp_path)
    run_id = started_id(proc.stdout)
    wait_for(lambda: supervisor.trainer_processes(runs.load(run_id)), RUN_TIMEOUT, "the trainer process")
    tree = supervisor.live_tree(runs.load(run_id))
    assert len(tree) >= 2  # the swift wrapper and the trainer at least
    stopped = swiftdeck("stop", run_id, "--force", home=home)
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    rec = wait_ended(run_id)
    assert rec.status == "stopped" and rec.exit_code != 0
    assert not [p for p in tree if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    assert_tree_gone(rec)
    # killed by swiftdeck's own SIGKILL: not "the kernel's out-of-memory killer", not a failure at all
    assert "diagnosis" not in rec.meta, rec.meta["diagnosis"]
    d = diagnosis(run_id, home)
    assert d["kind"] == "stopped_by_user" and "force stop" in d["summary"], d


def test_graceful_stop_ends_a_slow_teardown_within_5s(home, demo_assets, tmp_path):
    """On an H200 a graceful stop took 24.8 s: after the checkpoint and the end of main, ms-swift's dataloader
    workers left one at a time. Here the 4 workers are frozen (SIGSTOP) so that they cannot leave by themselves;
    the tree must still be gone within 5 s of the end of main, the run stopped, its checkpoint whole."""
    args = short_args(demo_assets, tmp_path / "output", epochs=2, save_steps=1000)
    args[args.index("--dataloader_num_workers") + 1] = "4"
    # batch 1: 50 steps per epoch, so that the stop lands inside an epoch. At an epoch's end PyTorch joins the
    # (here frozen) workers for 5 s each before it starts the next epoch's.
    args[args.index("--per_device_train_batch_size") + 1] = "1"
    run_id = started_id(swiftdeck("train", "--", *args, home=home, cwd=tmp_path).stdout)
    reader = RunReader(console_log=runs.load(run_id).console_log)
    wait_for(lambda: reader.poll() is not None and reader.state.metrics and reader.state.metrics[-1].step >= 3,
             RUN_TIMEOUT, "step 3")
    rec = runs.load(run_id)
    workers = [w for t in supervisor.trainer_processes(rec) for w in t.children()]
    assert len(workers) == 4, workers
    # The stop is asked first, then the workers freeze: the step in progress has its batch, so ms-swift saves at
    # its end; frozen before the ask, the trainer could wait for a batch that never comes.
    supervisor.ask_to_stop(rec)
    for worker in workers:
        worker.suspend()
    asked = time.time()
    report = supervisor.stop(rec)
    gone = asked + report.seconds  # the tree was confirmed gone (before stop waits for the runner's record)
    assert report.clean, report
    rec = wait_ended(run_id)
    main_ended = status.main_ended(rec.console_log)
    assert main_ended is not None, rec.console_log.read_text()[-2000:]
    assert gone - main_ended < 5, (gone - main_ended, report.steps)
    assert rec.status == "stopped" and "diagnosis" not in rec.meta
    assert_tree_gone(rec)
    (folder,) = checkpoints.scan(tmp_path / "output")
    assert [c.complete and c.resumable for c in folder.checkpoints] == [True]


def test_stop_after_the_runner_was_killed_reports_stopped(home, demo_assets, tmp_path):
    out = tmp_path / "output"
    proc = swiftdeck("train", "--", *short_args(demo_assets, out, epochs=60, save_steps=1000), home=home,
                     cwd=tmp_path)
    run_id = started_id(proc.stdout)
    reader = RunReader(console_log=runs.load(run_id).console_log)
    wait_for(lambda: reader.poll() is not None and reader.state.metrics and reader.state.metrics[-1].step >= 3,
             RUN_TIMEOUT, "step 3")
    kill_runner(runs.load(run_id))
    assert runs.load(run_id).status == "running"  # ms-swift goes on without it
    stopped = swiftdeck("stop", run_id, home=home, timeout=300)
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    assert re.search(rf"run {run_id} stopped in [\d.]+s; no process", stopped.stdout), stopped.stdout
    rec = runs.load(run_id)
    assert rec.status == "stopped" and rec.exit_code is None
    (folder,) = checkpoints.scan(out)
    assert [(c.complete, c.resumable, c.is_last) for c in folder.checkpoints] == [(True, True, True)]
    assert folder.state == "stopped"
    assert diagnosis(run_id, home)["kind"] == "stopped_by_user"
    assert_tree_gone(rec)


def test_a_run_whose_runner_was_killed_and_that_finished_is_finished(home, demo_assets, tmp_path):
    out = tmp_path / "output"
    run_id = started_id(swiftdeck("train", "--", *short_args(demo_assets, out), home=home, cwd=tmp_path).stdout)
    rec = runs.load(run_id)
    kill_runner(rec)  # before ms-swift printed its run folder: the record never learns it from the runner
    assert runs.load(run_id).run_dir is None
    rec = wait_ended(run_id)
    assert rec.status == "finished" and rec.exit_code is None, (rec, rec.console_log.read_text()[-2000:])
    assert rec.run_dir and Path(rec.run_dir).parent == out
    listed = json.loads(swiftdeck("runs", "--json", home=home).stdout)
    assert [(r["id"], r["status"], r["run_dir"], r["step"]) for r in listed] == [(run_id, "finished", rec.run_dir, 20)]
    d = diagnosis(run_id, home)
    assert d["kind"] == "no_failure", d
    assert_tree_gone(rec)


def test_output_volume_full_during_the_final_save(home, demo_assets, tmp_path):
    """The output volume fills up while ms-swift writes its last checkpoint: the run failed (disk_full), the
    checkpoint cut short is neither last nor resumable, and `checkpoints` does not call the run finished."""
    with tmpfs(tmp_path / "output", "4m") as out:
        args = short_args(demo_assets, out, epochs=60, save_steps=150, logging_steps=10)  # saves at 150 and 300
        run_id = started_id(swiftdeck("train", "--", *args, home=home, cwd=tmp_path).stdout)

        def first_checkpoint():
            rec = runs.load(run_id)
            return rec.run_dir and (Path(rec.run_dir) / "checkpoint-150" / "trainer_state.json").is_file()

        wait_for(first_checkpoint, RUN_TIMEOUT, "checkpoint-150", interval=0.05)
        fill(out, leave=64 * 1024)  # less than the adapter weights (~160 KB)
        rec = wait_ended(run_id)
        assert rec.status == "failed" and rec.meta["diagnosis"]["kind"] == "disk_full", rec.meta
        (folder,) = checkpoints.scan(out)
        found = {c.name: c for c in folder.checkpoints}
        assert found["checkpoint-150"].is_last and found["checkpoint-150"].resumable
        cut = found["checkpoint-300"]
        assert not (cut.complete or cut.is_last or cut.is_best or cut.resumable), cut
        table = swiftdeck("checkpoints", str(out), home=home).stdout
        assert "[failed step" in table and "finished" not in table, table
        assert_tree_gone(rec)


def test_console_volume_full_is_diagnosed_disk_full(home, demo_assets, tmp_path):
    """$SWIFTDECK_HOME on a volume that fills up: the trainer dies writing its console, which then holds no
    error. Once there is room again, `diagnose` still says disk_full, from what the runner noted at exit."""
    with tmpfs(home, "8m"):
        args = short_args(demo_assets, tmp_path / "output", epochs=60, save_steps=1000)
        run_id = started_id(swiftdeck("train", "--", *args, home=home, cwd=tmp_path).stdout)
        reader = RunReader(console_log=runs.load(run_id).console_log)
        wait_for(lambda: reader.poll() is not None and reader.state.metrics, RUN_TIMEOUT, "the first logged step")
        filler = fill(home)
        rec = wait_ended(run_id)
        assert rec.status == "failed" and rec.exit_code != 0, rec
        filler.unlink()  # space is back
        d = diagnosis(run_id, home)
        assert d["kind"] == "disk_full" and "console" in d["summary"], d
        assert d["details"]["volume"]["free_bytes"] < 64 * 1024
        assert_tree_gone(rec)
