"""Long runs at scale (issue 9): `swiftdeck metrics --json / --format jsonl / csv` write rows straight from the
columns (engine.metrics_text), read by a forked child (engine.read_ahead), and the bytes are those of writing each
row's dict with orjson / csv.writer."""
from __future__ import annotations

import csv
import io
import json
import math
import random
import struct
from array import array
from pathlib import Path

import orjson
import pytest

from engine.ingest import JsonlParser, RunReader, iter_metrics_rows, metrics_keys, metrics_table, stream_states
from engine.metrics_text import csv_rows, json_rows
from tests.test_scale import SAMPLE, swiftdeck, write_run

REPO = Path(__file__).resolve().parents[1]


def _floats(count: int) -> list[float]:
    """Random doubles of every exponent, and the ones where orjson and repr write exponents differently."""
    rnd = random.Random(7)
    out = []
    while len(out) < count:
        v = struct.unpack("<d", rnd.getrandbits(64).to_bytes(8, "little"))[0]
        if math.isfinite(v):
            out.append(v)
    for e in range(-325, 309):
        for m in ("1", "1.5", "9.999999999999999", "1.2345678901234567"):
            v = float(f"{m}e{e}")
            if math.isfinite(v) and v:
                out += [v, -v]
    for e in range(-8, 18):
        out += [round(rnd.uniform(1, 10) * 10 ** e, rnd.randint(0, 12)) for _ in range(200)]
    return out + [0.0, -0.0, 1e-5, 1e-4, 9.99999e-5, 0.00001234, 1e16, 1e15, 9999999999999998.0]


def test_rows_text_is_what_orjson_and_csv_writer_give_row_by_row():
    values = _floats(60_000)
    width = 3
    n = len(values) // width
    steps = array("q", range(n))
    cols = {f"k{i}": array("d", values[i::width][:n]) for i in range(width)}
    cols["odd %b \"key\""] = array("d", values[:n])  # a key that needs escaping, with a % in it
    rows = [{"step": s, **{k: c[i] for k, c in cols.items()}} for i, s in enumerate(steps)]
    assert json_rows(steps, cols, b",\n") == b",\n".join(map(orjson.dumps, rows))
    assert json_rows(steps, cols, b"\n") == b"\n".join(map(orjson.dumps, rows))

    keys = ["step", "k0", "missing", *cols, "also missing"]
    want = io.StringIO()
    csv.writer(want, lineterminator="\n").writerows([[r.get(k, "") for k in keys] for r in rows])
    assert csv_rows(steps, cols, keys).decode() == want.getvalue()
    assert json_rows(array("q"), {}, b"\n") == b"" and csv_rows(array("q"), {}, ["step"]) == b""


def _old_outputs(run: Path) -> dict[str, str]:
    """The three formats as `swiftdeck metrics` wrote them before (a dict per row through orjson / csv.writer)."""
    state = RunReader(run_dir=run).read_all()
    rows = list(iter_metrics_rows(state))
    jsonl = "".join(orjson.dumps(r).decode() + "\n" for r in rows)
    table = io.StringIO()
    w = csv.writer(table, lineterminator="\n")
    w.writerow(metrics_keys(state))
    w.writerows([["" if r.get(k) is None else r[k] for k in metrics_keys(state)] for r in rows])
    return {"jsonl": jsonl, "csv": table.getvalue(), "rows": ",\n".join(orjson.dumps(r).decode() for r in rows)}


def _odd_run(folder: Path) -> Path:
    """A run with what takes the slow paths: NaN (Python's json writes it), a record with as many keys as the
    others but another one, bad and blank lines, an eval row every 7 steps, small and large numbers, a new key in
    the last line."""
    run = write_run(folder, steps=3000)
    template = json.loads(SAMPLE.read_text().splitlines()[0])
    lines = (run / "logging.jsonl").read_text().splitlines()
    odd = []
    for i, line in enumerate(lines):
        rec = json.loads(line)
        if "loss" in rec and i % 101 == 5:
            rec["loss"] = float("nan")
        if "loss" in rec and i % 211 == 9:
            rec["other_acc"] = rec.pop("token_acc")
        if "loss" in rec and i % 97 == 3:
            rec["learning_rate"] = [1e-05, 3e-06, 9.5e-05, 1.5e16][i % 4]
        odd.append(json.dumps(rec))
        if i % 500 == 250:
            odd += ["", "not json", "[1, 2]"]
    odd.append(json.dumps({**template, "loss": 0.5, "new_key": 1e-5, "global_step/max_steps": "3001/3001"}))
    (run / "logging.jsonl").write_text("\n".join(odd) + "\n")
    return run


def test_metrics_bytes_are_those_of_a_dict_per_row_on_recorded_and_odd_runs(tmp_path):
    runs = [REPO / "tests/data/ms-swift-4.6/run-v2", REPO / "tests/data/rlhf/grpo", REPO / "tests/data/rlhf/dpo",
            _odd_run(tmp_path / "odd" / "v0-20260101-000000")]
    for run in runs:
        want = _old_outputs(run)
        got = {fmt: swiftdeck("metrics", str(run), "--format", fmt, home=tmp_path / "home") for fmt in ("jsonl", "csv")}
        doc = swiftdeck("metrics", str(run), "--json", home=tmp_path / "home")
        assert all(p.returncode == 0 for p in (*got.values(), doc)), [p.stderr for p in (*got.values(), doc)]
        assert got["jsonl"].stdout == want["jsonl"] and got["csv"].stdout == want["csv"]
        assert want["rows"] in doc.stdout and json.loads(doc.stdout)["metrics"] == metrics_table(
            RunReader(run_dir=run).read_all())


def test_a_record_with_other_keys_of_the_same_count_splits_the_block(tmp_path):
    """Runs of records of one layout are found by their number of keys; a record with as many keys but another
    one is read on its own, as a line-by-line read reads it."""
    run = _odd_run(tmp_path / "v0-20260101-000000")
    data = (run / "logging.jsonl").read_bytes()
    block, plain = JsonlParser(blocks=True), JsonlParser()
    events = []
    for i in range(0, len(data), 8192):  # most chunks have no NaN and no bad line: the fast path takes them
        events += block.feed(data[i:i + 8192])
    events += block.flush()
    ref = plain.feed(data) + plain.flush()
    assert any(type(ev).__name__ == "MetricsBlock" for ev in events)
    rows = [repr(m) for ev in events for m in (ev.metrics() if hasattr(ev, "cols") else [ev]) if hasattr(m, "values")]
    want = [repr(m) for m in ref if hasattr(m, "values")]  # repr: nan == nan
    assert rows == want and block.skipped == plain.skipped > 0
    assert any("other_acc" in m for m in rows) and any("nan" in m for m in rows)


def test_the_read_ahead_child_gives_the_parts_late_steps_and_facts_of_a_read_here(tmp_path):
    from engine.read_ahead import read_ahead_states

    run = write_run(tmp_path / "v0-20260101-000000", steps=4000)
    line = json.loads(SAMPLE.read_text().splitlines()[0])
    with open(run / "logging.jsonl", "a") as fh:
        fh.write(json.dumps({**line, "loss": 0.5, "global_step/max_steps": "12/4000"}) + "\n")  # far too late
        fh.write(json.dumps({**line, "loss": 0.25, "global_step/max_steps": "3990/4000"}) + "\n")  # placed
        fh.write(json.dumps({"train_runtime": 9.0, "global_step/max_steps": "4000/4000"}) + "\n")

    def parts(gen):
        return [(list(p.train.steps), list(p.eval.steps), metrics_table(p)) for p in gen]

    here_late, child_late = [], []
    here_reader, child_reader = RunReader(run_dir=run), RunReader(run_dir=run)
    here = parts(stream_states(here_reader, window=100, late=here_late, chunk=16 * 1024))
    child = parts(read_ahead_states(child_reader, child_late, min_bytes=0, window=100, chunk=16 * 1024))
    assert len(here) > 10 and child == here and child_late == here_late == [12]
    assert child_reader.state.finished == here_reader.state.finished and child_reader.state.finished.summary
    assert child_reader.state.progress == here_reader.state.progress


def test_an_error_in_the_read_ahead_child_is_raised_here_in_one_line(tmp_path):
    from engine.read_ahead import read_ahead_states

    run = write_run(tmp_path / "v0-20260101-000000", steps=50)
    reader = RunReader(run_dir=run)
    reader.poll = None  # not callable: the child's stream_states fails at its first read
    with pytest.raises(TypeError, match="not callable"):
        list(read_ahead_states(reader, [], min_bytes=0))


def test_a_long_run_read_by_the_child_gives_the_rows_and_the_late_step_message_of_a_read_here(tmp_path):
    from engine.read_ahead import FORK_BYTES

    run = write_run(tmp_path / "v0-20260101-000000", steps=70_000, eval_every=500)
    line = json.loads(SAMPLE.read_text().splitlines()[0])
    with open(run / "logging.jsonl", "a") as fh:  # step 5 again, 70,000 steps late: left out, and stderr says so
        fh.write(json.dumps({**line, "loss": 0.5, "global_step/max_steps": "5/70000"}) + "\n")
    assert (run / "logging.jsonl").stat().st_size >= FORK_BYTES
    late: list[int] = []
    want = "".join(orjson.dumps(r).decode() + "\n" for part in stream_states(RunReader(run_dir=run), late=late)
                   for r in iter_metrics_rows(part))
    got = swiftdeck("metrics", str(run), "--format", "jsonl", home=tmp_path / "home")
    assert got.returncode == 0 and got.stdout == want and late == [5]
    assert got.stderr.strip() == ("swiftdeck: 1 line(s) for steps already written came more than 65,536 steps late "
                                  "and were left out (step 5)")
