"""Prune and strip on the real checkpoints of a real demo training (copied, so the session's run stays whole):
`swiftdeck prune` keeps the best and the last N and frees exactly what it previewed; `swiftdeck strip` takes the
optimizer state of the checkpoints that won't be resumed; neither touches a checkpoint a live process may need —
what a running training writes or would resume from, what a training was started from, what a chat worker or a
deploy has loaded — even when that process started after the plan was made."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from engine import checkpoints
from engine.ops import checkpoints as ops
from test_wait_support import live_record

pytestmark = pytest.mark.slow  # trained_demo: one real `swift sft` per session (SWIFTDECK_TRAINED_DEMO reuses one)
REPO = Path(__file__).resolve().parents[1]


def swiftdeck(*args: str, home: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "SWIFTDECK_HOME": str(home)}
    return subprocess.run([sys.executable, "-m", "tui.cli", *args], env=env, capture_output=True, text=True,
                          timeout=120, cwd=REPO, stdin=subprocess.DEVNULL)


@pytest.fixture
def run_copy(trained_demo, tmp_path) -> Path:
    """The demo run's folder (args.json, logging.jsonl, every checkpoint-N, the last-checkpoint link), copied."""
    run = tmp_path / "output" / trained_demo.parent.name
    shutil.copytree(trained_demo.parent, run, symlinks=True)
    assert len(checkpoints.scan_run(run).checkpoints) >= 2, "the demo run saved fewer than 2 checkpoints"
    return run


def sizes(run: Path) -> dict[str, int]:
    return {c.name: ops.tree_size(c.path) for c in checkpoints.scan_run(run).checkpoints}


def test_prune_keeps_the_best_and_the_last_and_frees_what_it_previewed(home, run_copy):
    folder = checkpoints.scan_run(run_copy)
    names = [c.name for c in folder.checkpoints]
    best, why = ops.best_checkpoint(folder)
    assert best is not None and why, why
    size = sizes(run_copy)
    before = sorted(p.name for p in run_copy.iterdir())

    dry = swiftdeck("prune", str(run_copy), "--keep-last", "1", "--dry-run", "--json", home=home)
    assert dry.returncode == 0, dry.stderr
    plan = json.loads(dry.stdout)["plan"]
    keep = {names[-1], best.name}
    assert {i["name"] for i in plan["items"] if i["action"] == "keep"} == keep
    assert plan["best"] == best.name and plan["freed_bytes"] == sum(size[n] for n in names if n not in keep)
    assert sorted(p.name for p in run_copy.iterdir()) == before  # a dry run changes nothing

    text = swiftdeck("prune", str(run_copy), "--keep-last", "1", "--no-keep-best", home=home)
    assert text.returncode == 2 and text.stderr.strip() == "swiftdeck: nothing changed: no terminal to confirm on: " \
                                                           "add --yes"
    assert f"{names[0]}" in text.stdout and "delete, frees" in text.stdout  # the preview came first
    assert sorted(p.name for p in run_copy.iterdir()) == before

    disk_before = json.loads(swiftdeck("disk", str(run_copy.parent), "--json", home=home).stdout)
    done = swiftdeck("prune", str(run_copy), "--keep-last", "1", "--no-keep-best", "--yes", "--json", home=home)
    assert done.returncode == 0, done.stderr
    applied = json.loads(done.stdout)["applied"]
    assert sorted(Path(d["path"]).name for d in applied["done"]) == sorted(names[:-1]) and not applied["refused"]
    assert applied["freed_bytes"] == sum(size[n] for n in names[:-1])
    assert [c.name for c in checkpoints.scan_run(run_copy).checkpoints] == [names[-1]]
    disk_after = json.loads(swiftdeck("disk", str(run_copy.parent), "--json", home=home).stdout)
    assert disk_before["size_bytes"] - disk_after["size_bytes"] == applied["freed_bytes"]
    (run,) = disk_after["runs"]
    assert [c["name"] for c in run["checkpoints"]] == [names[-1]] and disk_after["volume_free"] > 0


def test_strip_leaves_the_last_resumable_and_the_others_loadable(home, run_copy):
    folder = checkpoints.scan_run(run_copy)
    names = [c.name for c in folder.checkpoints]
    assert all(c.resumable for c in folder.checkpoints)
    optimizer = {c.name: sum(ops.tree_size(p) if p.is_dir() else p.stat().st_size for p in ops.optimizer_files(c.path))
                 for c in folder.checkpoints}
    disk = json.loads(swiftdeck("disk", str(run_copy), "--json", home=home).stdout)
    assert {c["name"]: c["optimizer_bytes"] for c in disk["runs"][0]["checkpoints"]} == optimizer

    done = swiftdeck("strip", str(run_copy), "--keep-last", "1", "--yes", "--json", home=home)
    assert done.returncode == 0, done.stderr
    applied = json.loads(done.stdout)["applied"]
    assert sorted(Path(d["path"]).name for d in applied["done"]) == sorted(names[:-1])
    assert applied["freed_bytes"] == sum(optimizer[n] for n in names[:-1])
    after = checkpoints.scan_run(run_copy).checkpoints
    assert [c.name for c in after] == names  # nothing deleted
    assert all(c.complete and c.kind == "lora" and not c.resumable for c in after[:-1])
    assert after[-1].resumable
    again = swiftdeck("strip", str(run_copy), "--keep-last", "0", "--yes", home=home)
    assert again.returncode == 0 and "stripped 1 checkpoint(s), freed" in again.stdout, again.stdout
    assert again.stdout.count("keep: no optimizer state") == len(names) - 1
    assert not checkpoints.scan_run(run_copy).checkpoints[-1].resumable
    nothing = swiftdeck("strip", str(run_copy), "--keep-last", "0", "--yes", home=home)
    assert nothing.returncode == 0 and "nothing to strip" in nothing.stdout


def test_what_a_live_process_may_need_is_never_pruned_or_stripped(home, run_copy, tmp_path):
    names = [c.name for c in checkpoints.scan_run(run_copy).checkpoints]
    older, newest = run_copy / names[-2], run_copy / names[-1]
    link = run_copy / "last-checkpoint"
    link.unlink()
    link.symlink_to(older.name)  # ms-swift is saving the newest: the link still names the last complete one
    rest = [run_copy / n for n in names[:-2]]

    with live_record("sft", ["swift", "sft", "--output_dir", str(run_copy.parent)], tmp_path, run_dir=run_copy):
        plan = ops.plan_prune(run_copy, keep_last=0, keep_best=False)
        why = {i.name: " ".join(i.reasons) for i in plan.kept}
        assert set(why) == {older.name, newest.name}
        assert "newest checkpoint" in why[newest.name] and "would resume from" in why[older.name]
        strip = ops.plan_strip(run_copy, keep_last=0)
        assert {i.name for i in strip.kept} == {older.name, newest.name}
        proc = swiftdeck("prune", str(run_copy), "--keep-last", "0", "--no-keep-best", "--yes", home=home)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert "keep: in use:" in proc.stdout
    assert older.is_dir() and newest.is_dir() and not any(p.exists() for p in rest)

    # a training started from one (a relative path from its own folder) and a chat worker that loaded the other
    cwd = tmp_path / "elsewhere"
    cwd.mkdir()
    relative = os.path.relpath(link, cwd)  # through ms-swift's link, as users type it
    with live_record("sft", ["swift", "sft", "--resume_from_checkpoint", relative], cwd), \
            live_record("chat", [sys.executable, "-m", "engine.chat_worker"], tmp_path, meta={"loaded": [str(newest)]}):
        why = {i.name: " ".join(i.reasons) for i in ops.plan_prune(run_copy, keep_last=0, keep_best=False).kept}
        assert "was started from" in why[older.name] and "loaded by chat job" in why[newest.name], why

    # a plan made while nothing needed them; a deploy loads one before it is carried out: that one is refused
    plan = ops.plan_prune(run_copy, keep_last=0, keep_best=False)
    assert {i.name for i in plan.chosen} == {older.name, newest.name}
    with live_record("deploy", ["swift", "deploy", "--adapters", f"mine={newest}"], tmp_path):
        done = ops.apply(plan)
    assert [p.name for p, _ in done.done] == [older.name] and not older.exists()
    ((path, reason),) = done.refused
    assert path == newest and "loaded by deploy job" in reason and newest.is_dir()
    assert checkpoints.scan_checkpoint(newest).complete
