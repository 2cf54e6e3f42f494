"""engine.status: a run's status from its record, its processes and its files, whichever process wrote last.

Real files and real (dead) processes; the end-to-end versions with ms-swift are in tests/test_engine_e2e.py.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import psutil

from engine import diagnose, runs, status
from engine.checkpoints import RunFolder
from test_checkpoints import safetensors

RUN = "v0-20261130-120000"
MAIN_END = "[INFO:swift] End time of running main: 2026-11-30 12:00:31.250000"


def dead_pid() -> tuple[int, float]:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    ctime = psutil.Process(proc.pid).create_time()
    proc.wait()
    return proc.pid, ctime


def gone_run(tmp_path: Path, console: list[str], **fields) -> runs.RunRecord:
    """A running record whose runner and ms-swift process are both dead (their pids verified as gone)."""
    rec = runs.create("sft", ["swift", "sft", "--output_dir", "output"], str(tmp_path))
    pid, ctime = dead_pid()

    def running(r: runs.RunRecord) -> None:
        r.status, r.pid, r.pgid, r.create_time, r.runner_pid, r.runner_create_time = \
            "running", pid, pid, ctime, pid, ctime
        for key, value in fields.items():
            setattr(r, key, value)

    runs.update(rec.id, running)
    rec.console_log.write_text("\n".join(console) + "\n")
    return rec


def run_folder(tmp_path: Path, *, steps: int, max_steps: int, final: bool = True) -> Path:
    """output/<RUN> with logged steps 1..steps of max_steps, checkpoint-<steps>, and ms-swift's final record."""
    run_dir = tmp_path / "output" / RUN
    ckpt = run_dir / f"checkpoint-{steps}"
    ckpt.mkdir(parents=True)
    (ckpt / "adapter_config.json").write_text(json.dumps({"r": 8, "lora_alpha": 32}))
    safetensors(ckpt / "adapter_model.safetensors")
    lines = [{"loss": 1.0 / i, "global_step/max_steps": f"{i}/{max_steps}"} for i in range(1, steps + 1)]
    if final:
        lines.append({"last_model_checkpoint": str(ckpt), "best_model_checkpoint": None, "best_metric": None,
                      "global_step": steps, "log_history": []})
    (run_dir / "logging.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    return run_dir


def test_runner_killed_then_the_run_finished_is_finished_with_its_run_folder(home, tmp_path):
    run_dir = run_folder(tmp_path, steps=20, max_steps=20)
    rec = gone_run(tmp_path, [f"[INFO:swift] output_dir: output/{RUN}", "{'loss': '0.1'}", MAIN_END])
    assert rec.run_dir is None  # the runner died before it saw the output_dir line
    rec = runs.load(rec.id)
    assert rec.status == "finished" and rec.run_dir == str(run_dir) and rec.exit_code is None
    assert "runner was gone" in rec.notes[-1]
    d = diagnose.diagnose_run(rec)
    assert d.kind == "no_failure" and "finished" in d.summary
    assert [r.id for r in runs.all_runs() if r.status == "finished"] == [rec.id]


def test_a_stop_whose_runner_was_killed_is_stopped_and_names_its_checkpoint(home, tmp_path):
    run_dir = run_folder(tmp_path, steps=22, max_steps=900)
    rec = gone_run(tmp_path, [f"[INFO:swift] output_dir: output/{RUN}", MAIN_END], stop_requested="graceful",
                   run_dir=str(tmp_path / "output" / RUN))
    rec = runs.load(rec.id)
    assert rec.status == "stopped" and "diagnosis" not in rec.meta
    d = diagnose.diagnose_run(rec)
    assert d.kind == "stopped_by_user" and "graceful" in d.summary and "checkpoint-22" in d.summary
    assert d.details["checkpoint"] == str(run_dir / "checkpoint-22")
    assert d.remedies == [f"go on with --resume_from_checkpoint {run_dir / 'checkpoint-22'}"]


def test_runner_killed_and_the_console_shows_a_failure_is_failed(home, tmp_path):
    rec = gone_run(tmp_path, ["{'loss': '2.0', 'global_step/max_steps': '3/10'}", "Traceback (most recent call last):",
                              '  File "/x/trainer.py", line 1, in step', "    loss.backward()",
                              "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a "
                              "total capacity of 79.10 GiB of which 1.00 GiB is free."])
    rec = runs.load(rec.id)
    assert rec.status == "failed" and rec.meta["diagnosis"]["kind"] == "cuda_oom"
    assert diagnose.diagnose_run(rec).kind == "cuda_oom"


def test_nothing_in_the_files_is_lost(home, tmp_path):
    rec = runs.load(gone_run(tmp_path, ["{'loss': '2.0', 'global_step/max_steps': '3/10'}"]).id)
    assert rec.status == "lost" and "without an exit code" in rec.notes[-1]


def test_the_files_win_over_the_exit_code(home, tmp_path):
    """swiftdeck may end a slow teardown after ms-swift's main returned: the exit code is then a SIGKILL's."""
    run_folder(tmp_path, steps=20, max_steps=20)
    rec = runs.create("sft", ["swift", "sft"], str(tmp_path))
    rec.run_dir, rec.exit_code = str(tmp_path / "output" / RUN), -9
    done = status.Files(run_dir=rec.run_dir, main_ended_at=1.0,
                        folder=status.scan_run(Path(rec.run_dir), registry=False))
    assert status.decide(rec, alive=False, files=done) == "finished"
    assert status.decide(rec, alive=False, files=status.Files()) == "failed"
    rec.stop_requested = "force"
    assert status.decide(rec, alive=False, files=status.Files()) == "stopped"
    assert status.decide(rec, alive=True, files=None) == "stopping"
    rec.exit_code, rec.stop_requested = 0, None
    assert status.decide(rec, alive=False, files=status.Files()) == "finished"


def test_main_end_time_is_read_from_the_console():
    t = status.main_end_time(b"x\n" + MAIN_END.encode() + b"\n")
    assert abs(t - __import__("datetime").datetime(2026, 11, 30, 12, 0, 31, 250000).timestamp()) < 1e-6
    assert status.main_end_time(b"[INFO:swift] Start time of running main: 2026-11-30 12:00:00.0") is None


def test_a_failure_with_a_full_console_volume_is_disk_full(home, tmp_path):
    """The trainer died writing its console on a full disk: the console holds no error, the runner's exit note
    says the console's volume had nothing free."""
    full = [{"what": "console", "path": "/home/u/.local/share/swiftdeck/runs/x", "free_bytes": 0,
             "total_bytes": 50 * 2**30}]
    rec = gone_run(tmp_path, ["{'loss': '2.0', 'global_step/max_steps': '3/10'}", "Train:  30%|###"])
    runs.update(rec.id, lambda r: (setattr(r, "exit_code", 1), setattr(r, "status", "failed"),
                                   r.meta.update(exit_disk=full)))
    d = diagnose.diagnose_run(runs.load(rec.id))
    assert d.kind == "disk_full" and "0 bytes free" in d.summary and "console" in d.summary
    assert "had 0 bytes free" in d.evidence and any("SWIFTDECK_HOME" in r for r in d.remedies)
    roomy = [dict(full[0], free_bytes=20 * 2**30)]
    runs.update(rec.id, lambda r: r.meta.update(exit_disk=roomy))
    assert diagnose.diagnose_run(runs.load(rec.id)).kind == "unknown"


def test_folder_labels_without_a_record_say_what_the_files_show(home, tmp_path):
    def label(steps, max_steps, final=True):
        folder = status.scan_run(run_folder(tmp_path / f"{steps}-{max_steps}-{final}", steps=steps,
                                            max_steps=max_steps, final=final), registry=False)
        assert isinstance(folder, RunFolder)
        return folder.label

    assert label(20, 20) == "finished step 20/20"
    assert label(22, 900) == "ended at step 22/900"  # a final record short of max_steps: not finished
    assert label(5, 900, final=False) == "not finished step 5/900"


def test_a_stopped_server_is_stopped_even_though_it_printed_its_end_of_main():
    """A deploy ends only when asked; ms-swift prints "End time of running main" then too (seen in CI)."""
    from engine import runs, status

    rec = runs.RunRecord(id="deploy-20261130-000000-abcd", kind="deploy", argv=["swift", "deploy"], cwd="/",
                         status="stopping", stop_requested="graceful", exit_code=0)
    files = status.Files()
    files.main_ended_at = 1.0
    assert status.decide(rec, alive=False, files=files) == "stopped"
    rec.stop_requested = None
    assert status.decide(rec, alive=False, files=files) == "finished"
