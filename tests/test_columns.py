"""Logged steps kept by column (issue 9): the block read of logging.jsonl gives the same steps as a line-by-line
read in any chunking (each step once, in order, train and eval apart, a cut last line read once it completes), the
dashboard's series read the columns in place, the checkpoint losses of the run on screen come from the observer's
columns, and a chart frame keeps min/max per pixel column."""
from __future__ import annotations

import json
import math
import os
import random
from pathlib import Path

from engine import checkpoints
from engine.events import Metrics
from engine.ingest import JsonlParser, RunReader, metrics_table
from engine.metric_columns import NewRows
from engine.observer import RunObserver
from tui.series import downsample

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "tests" / "data" / "ms-swift-4.6" / "run-v2" / "logging.jsonl"


def lines_of_a_messy_run() -> list[bytes]:
    """ms-swift 4.6 train lines with eval lines, a nan loss (Python's json writes NaN), a step logged again, a
    late step, a line that is no JSON, a train line of another layout, and the final records."""
    template = json.loads(SAMPLE.read_text().splitlines()[0])
    out = []
    for n in range(1, 301):
        rec = {**template, "loss": 5.0 - n / 100, "global_step/max_steps": f"{n}/400"}
        if n == 50:
            rec["loss"] = float("nan")
        if n == 120:
            rec = {**rec, "extra": 1.5}  # another layout for one step
        out.append(json.dumps(rec).encode())
        if n % 40 == 0:
            out.append(json.dumps({"eval_loss": 9.0 + n, "eval_token_acc": 0.5, "epoch": 1.0,
                                   "global_step/max_steps": f"{n}/400"}).encode())
        if n == 77:
            out.append(b"not json {")
        if n == 200:
            out.append(json.dumps({**template, "loss": 0.25, "global_step/max_steps": "150/400"}).encode())
            out.append(json.dumps({**template, "loss": 0.5, "global_step/max_steps": "7/400"}).encode())
    for line in SAMPLE.read_bytes().splitlines()[-2:]:
        out.append(line)
    return out


def line_by_line(data: bytes) -> list[Metrics]:
    """The old reading: a Metrics per line, each (step, kind) once, the later line winning, in step order."""
    kept: dict[tuple, Metrics] = {}
    parser = JsonlParser()
    for ev in parser.feed(data) + parser.flush():
        if isinstance(ev, Metrics):
            kept[(ev.step, any(k.startswith("eval_") for k in ev.values))] = ev
    return [kept[k] for k in sorted(kept)]


def same(a: list[Metrics], b: list[Metrics]) -> bool:
    """Equal, nan equal to nan."""
    def norm(m):
        return m.step, m.max_steps, {k: "nan" if isinstance(v, float) and math.isnan(v) else v
                                     for k, v in m.values.items()}
    return len(a) == len(b) and all(norm(x) == norm(y) for x, y in zip(a, b))


def test_block_read_gives_every_step_once_in_order_in_any_chunking(tmp_path):
    data = b"\n".join(lines_of_a_messy_run()) + b"\n"
    want = line_by_line(data)
    assert len(want) == 300 + 300 // 40 and want[6].values["loss"] == 0.5  # step 7 logged again: the later wins
    rng = random.Random(9)
    for trial in range(6):
        run = tmp_path / f"v{trial}-20260101-000000"
        run.mkdir()
        path = run / "logging.jsonl"
        path.write_bytes(b"")
        reader = RunReader(run_dir=run)
        pos = 0
        while pos < len(data):  # the file grows in random pieces, often mid-line
            cut = min(len(data), pos + rng.choice((1, 7, 300, 5000, 40000)))
            with open(path, "ab") as fh:
                fh.write(data[pos:cut])
            pos = cut
            reader.poll()
        reader.poll(final=True)
        st = reader.state
        assert same(list(st.metrics), want), trial
        assert list(st.train.steps) == sorted(set(st.train.steps)) and len(st.eval) == 300 // 40
        assert "eval_loss" not in st.train.cols and "loss" not in st.eval.cols  # train and eval kept apart
        assert st.finished is not None and st.finished.last_checkpoint.endswith("checkpoint-24")
        assert reader._jsonl.parser.skipped == 1  # the line that is no JSON


def test_a_cut_last_line_is_read_once_it_completes(tmp_path):
    run = tmp_path / "v0-20260101-000000"
    run.mkdir()
    lines = SAMPLE.read_bytes().splitlines()[:3]
    (run / "logging.jsonl").write_bytes(lines[0] + b"\n" + lines[1] + b"\n" + lines[2][:40])
    reader = RunReader(run_dir=run)
    reader.emit_metrics = False
    reader.poll()
    assert list(reader.state.train.steps) == [1, 2]
    with open(run / "logging.jsonl", "ab") as fh:
        fh.write(lines[2][40:] + b"\n")
    reader.poll()
    assert list(reader.state.train.steps) == [1, 2, 4] and reader.state.train.cols["loss"][-1] == 6.4094677


def test_the_dashboard_gets_new_rows_as_a_view_of_the_columns(tmp_path):
    run = tmp_path / "v0-20260101-000000"
    run.mkdir()
    data = b"\n".join(lines_of_a_messy_run()[:100]) + b"\n"
    (run / "logging.jsonl").write_bytes(data)
    observer = RunObserver(run_dir=run)
    observer.reader.emit_metrics = False
    assert not any(isinstance(ev, Metrics) for ev in observer.poll())  # no Metrics object per step
    st = observer.state
    rows = NewRows.since(st.train, st.eval, None)
    assert same(list(rows), line_by_line(data)) and not rows.rebuilt
    with open(run / "logging.jsonl", "ab") as fh:
        fh.write(SAMPLE.read_bytes().splitlines()[0].replace(b'"1/24"', b'"500/500"') + b"\n")
    observer.poll()
    more = NewRows.since(st.train, st.eval, rows.mark())
    assert [m.step for m in more] == [500] and not more.rebuilt
    with open(run / "logging.jsonl", "ab") as fh:  # a late step: rows move, a reader starts over
        fh.write(SAMPLE.read_bytes().splitlines()[0].replace(b'"1/24"', b'"300/500"') + b"\n")
    observer.poll()
    late = NewRows.since(st.train, st.eval, more.mark())
    assert late.rebuilt and len(late) == len(st.metrics)

    from tui.series import ColumnSeries
    loss = ColumnSeries(st.train, "loss")
    loss.update(late.t1)
    assert loss.ys.arr is st.train.cols["loss"] and loss.xs.arr is st.train.steps  # read in place, not copied
    assert list(loss.xs) == list(st.train.steps) and len(loss.ema) == len(st.train)


def test_checkpoint_losses_come_from_the_observers_columns(tmp_path, swift_fixtures):
    import shutil

    run = tmp_path / "v2-20261127-174023"
    shutil.copytree(swift_fixtures / "run-v2", run)
    from_file = checkpoints.scan_run(run, registry=False)
    observer = RunObserver(run_dir=run)
    observer.poll()
    os.rename(run / "logging.jsonl", tmp_path / "moved.jsonl")  # the scan may not read it again
    from_columns = checkpoints.scan_run(run, registry=False, logged=observer)
    assert [(c.name, c.loss_step, c.loss, c.eval_loss, c.is_last, c.is_best) for c in from_columns.checkpoints] == \
        [(c.name, c.loss_step, c.loss, c.eval_loss, c.is_last, c.is_best) for c in from_file.checkpoints]
    assert from_file.checkpoints and all(c.loss is not None for c in from_columns.checkpoints)
    assert (from_columns.last_step, from_columns.max_steps, from_columns.ended, from_columns.final) == \
        (from_file.last_step, from_file.max_steps, from_file.ended, from_file.final)
    assert from_columns.notes == from_file.notes
    assert any("no logging.jsonl" in n for n in checkpoints.scan_run(run, registry=False).notes)  # really gone


def test_metrics_rows_merge_train_and_eval_of_a_step_and_keep_nan_as_none(tmp_path):
    run = tmp_path / "v0-20260101-000000"
    run.mkdir()
    data = b"\n".join(lines_of_a_messy_run()) + b"\n"
    (run / "logging.jsonl").write_bytes(data)
    rows = metrics_table(RunReader(run_dir=run).read_all())
    assert [r["step"] for r in rows] == list(range(1, 301))
    assert rows[49]["loss"] is None and rows[39]["eval_loss"] == 49.0 and rows[39]["loss"] == 4.6
    assert rows[119]["extra"] == 1.5 and "extra" not in rows[118]


def test_downsample_keeps_min_and_max_per_pixel_column_of_the_x_range():
    """Steps that crowd one end of the x axis (a resumed run, eval every step at first) take no more of the points
    than their share of the width."""
    xs = list(range(20_000)) + list(range(20_000, 1_000_000, 500))
    ys = [math.sin(x / 3000) for x in xs]
    ys[5] = 40.0
    ys[-300] = -40.0
    dx, dy = downsample(xs, ys, 200)
    width = (xs[-1] - xs[0]) / 100
    per_column = {}
    for x in dx[:-1]:
        per_column[int((x - xs[0]) // width)] = per_column.get(int((x - xs[0]) // width), 0) + 1
    assert max(per_column.values()) <= 2 and len(dx) <= 201
    assert 40.0 in dy and -40.0 in dy and dx[-1] == xs[-1] and dx == sorted(dx)


def test_column_series_ema_is_tensorboards_over_a_long_history():
    """The EMA of a long column (the fast stretch after the debias died out) equals the step-by-step one exactly,
    a nan included, whether it is made at once or as the run grows."""
    import random

    from engine.metric_columns import Columns
    from tui.series import ColumnSeries, ema_debiased

    rng = random.Random(3)
    ys = [rng.random() * 4 for _ in range(30_000)]
    ys[21_000] = float("nan")
    cols = Columns()
    for i, y in enumerate(ys):
        cols.put(i + 1, {"loss": y})
    for weight in (0.0, 0.6, 0.99):
        want = ema_debiased(ys, weight)
        grown = ColumnSeries(cols, "loss", weight=weight)
        for n in (7, 5000, 21_000, 30_000):
            grown.update(n)
            assert len(grown.ema) == n
        at_once = ColumnSeries(cols, "loss", weight=weight)
        at_once.update(30_000)
        for got in (list(grown.ema), list(at_once.ema)):
            assert [repr(v) for v in got] == [repr(v) for v in want]


def test_a_frame_from_block_summaries_keeps_the_same_points():
    """downsample over a ColumnSeries (min/max per block kept as the run grows) picks exactly the points a full
    scan picks: nan, ties and spikes included."""
    import random

    from engine.metric_columns import Columns
    from tui.series import ColumnSeries

    rng = random.Random(11)
    cols = Columns()
    ys = [round(rng.random(), 2) for _ in range(60_000)]
    ys[100:2000] = [float("nan")] * 1900  # whole blocks without a finite value
    ys[33_333] = 99.0
    ys[44_444] = float("inf")
    for i, y in enumerate(ys):
        cols.put(i * 3 + 1, {"loss": y})
    series = ColumnSeries(cols, "loss")
    for n in (1000, 20_000, 60_000):
        series.update(n)
        for points in (50, 400, 1000):
            fast = downsample(series.xs, series.ys, points)
            assert fast == downsample(list(series.xs), list(series.ys), points), (n, points)
            assert downsample(series.xs, series.ema, points) == downsample(list(series.xs), list(series.ema), points)
    assert 99.0 in downsample(series.xs, series.ys, 50)[1]
