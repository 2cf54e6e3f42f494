"""Long runs at scale (issue 9): `swiftdeck metrics` streamed as JSON / JSON lines / CSV, and a followed run's
state grown in place (no rebuild of the whole history per poll)."""
from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from pathlib import Path

from engine.events import Metrics
from engine.ingest import RunReader, iter_metrics_rows, metrics_table

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "tests" / "data" / "ms-swift-4.6" / "run-v2" / "logging.jsonl"


def swiftdeck(*args: str, home: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "SWIFTDECK_HOME": str(home)}
    return subprocess.run([sys.executable, "-m", "tui.cli", *args], env=env, capture_output=True, text=True,
                          timeout=60, cwd=REPO)


def write_run(folder: Path, steps: int, eval_every: int = 7) -> Path:
    """A run folder whose logging.jsonl repeats a real ms-swift 4.6 record with new steps and losses and an eval
    record every `eval_every` steps."""
    folder.mkdir(parents=True)
    template = json.loads(SAMPLE.read_text().splitlines()[0])
    lines = []
    for n in range(1, steps + 1):
        lines.append(json.dumps({**template, "loss": 5.0 - n / steps, "global_step/max_steps": f"{n}/{steps}"}))
        if n % eval_every == 0:
            lines.append(json.dumps({"eval_loss": 9.0 + n, "epoch": 1.0, "global_step/max_steps": f"{n}/{steps}"}))
    (folder / "logging.jsonl").write_text("\n".join(lines) + "\n")
    return folder


def test_metrics_json_jsonl_and_csv_give_every_step_once_in_order(tmp_path):
    run = write_run(tmp_path / "v0-20260101-000000", steps=500)
    home = tmp_path / "home"
    whole = swiftdeck("metrics", str(run), "--json", home=home)
    assert whole.returncode == 0, whole.stderr
    doc = json.loads(whole.stdout)
    rows = doc["metrics"]
    assert [r["step"] for r in rows] == list(range(1, 501))
    assert rows[499]["loss"] == 4.0 and "eval_loss" not in rows[499]
    assert rows[6]["eval_loss"] == 16.0 and rows[6]["loss"] == 5.0 - 7 / 500  # train and eval of step 7: one row
    assert set(doc) == {"kind", "metrics", "summary", "finished", "memory"}  # memory: the estimate vs measured

    lines = swiftdeck("metrics", str(run), "--format", "jsonl", home=home)
    assert lines.returncode == 0, lines.stderr
    assert [json.loads(line) for line in lines.stdout.splitlines()] == rows

    table = swiftdeck("metrics", str(run), "--format", "csv", home=home)
    assert table.returncode == 0, table.stderr
    parsed = list(csv.DictReader(io.StringIO(table.stdout)))
    assert len(parsed) == 500 and list(parsed[0])[:2] == ["step", "loss"] and "eval_loss" in parsed[0]
    for got, want in zip(parsed, rows):
        assert {k: v for k, v in got.items() if v != ""} == {k: str(v) for k, v in want.items() if v is not None}


def test_metrics_format_rejects_an_unknown_format_in_one_line(tmp_path):
    run = write_run(tmp_path / "v0-20260101-000000", steps=3)
    bad = swiftdeck("metrics", str(run), "--format", "xml", home=tmp_path / "home")
    assert bad.returncode != 0 and "Traceback" not in bad.stderr and "xml" in bad.stderr


def test_rows_are_made_one_at_a_time(tmp_path):
    state = RunReader(run_dir=write_run(tmp_path / "run", steps=30)).read_all()
    rows = iter_metrics_rows(state)
    assert not isinstance(rows, list) and next(rows) == metrics_table(state)[0]


def test_a_followed_run_grows_its_step_list_in_place(tmp_path):
    """A live run's next step is appended to the state's step list, not a re-sort of the whole history; a step
    logged out of order still lands in step order."""
    run = write_run(tmp_path / "run", steps=200)
    reader = RunReader(run_dir=run)
    reader.poll()
    before = reader.state.metrics
    line = json.loads(SAMPLE.read_text().splitlines()[0])
    with open(run / "logging.jsonl", "a") as fh:
        fh.write(json.dumps({**line, "loss": 1.5, "global_step/max_steps": "201/300"}) + "\n")
    new = [ev for ev in reader.poll() if isinstance(ev, Metrics)]
    assert [m.step for m in new] == [201]
    assert reader.state.metrics is before and before[-1].step == 201 and len(before) == 200 + 200 // 7 + 1
    with open(run / "logging.jsonl", "a") as fh:  # an eval record that arrives late for step 2
        fh.write(json.dumps({"eval_loss": 3.0, "global_step/max_steps": "2/300"}) + "\n")
    reader.poll()
    steps = [(m.step, "eval_loss" in m.values) for m in reader.state.metrics]
    assert steps == sorted(steps) and (2, True) in steps


def test_jsonl_records_stream_the_file_on_each_iteration(tmp_path):
    from engine.ingest import JsonlRecords

    path = tmp_path / "logging.jsonl"
    path.write_bytes(b'{"loss": 1.0}\n\nnot json\n[1, 2]\n{"loss": 2.0}')  # an unterminated last line too
    records = JsonlRecords(path)
    assert not isinstance(records, list) and records
    assert list(records) == list(records) == [{"loss": 1.0}, {"loss": 2.0}]
    assert not JsonlRecords(tmp_path / "missing.jsonl") and list(JsonlRecords(tmp_path / "missing.jsonl")) == []


def test_a_long_history_is_read_in_steps_that_report_progress(tmp_path, monkeypatch):
    """The dashboard's first read of a run bigger than one chunk says how far it got after each chunk (the loss
    pane shows it); a small run is read in one go without a word."""
    from engine.ops.runs import resolve
    from tui.model import POLL_CHUNK, RunWatch

    monkeypatch.setenv("SWIFTDECK_HOME", str(tmp_path / "home"))
    small = write_run(tmp_path / "small" / "v0-20260101-000000", steps=50)
    calls = []
    watch = RunWatch(resolve(str(small)), clock=lambda: 0.0)
    watch.progress = lambda done, total: calls.append((done, total))
    watch.poll()
    assert calls == []

    steps = POLL_CHUNK * 5 // 2 // len(SAMPLE.read_text().splitlines()[0]) + 1000  # about 2.5 chunks
    big = write_run(tmp_path / "big" / "v0-20260101-000000", steps=steps)
    size = (big / "logging.jsonl").stat().st_size
    assert size > 2 * POLL_CHUNK
    watch = RunWatch(resolve(str(big)), clock=lambda: 0.0)
    watch.progress = lambda done, total: calls.append((done, total))
    u = watch.poll()
    assert [done for done, _ in calls] == [POLL_CHUNK, 2 * POLL_CHUNK] and {t for _, t in calls} == {size}
    assert u.header.step == steps and len(u.new_metrics) == steps + steps // 7
