"""Long runs at scale (issue 9): a long logging.jsonl is first shown from a sample of the file (the whole
history's shape, the last step and ETA) while the whole file is read; the exact rows then replace it."""
from __future__ import annotations

import json

from engine.ingest import RunReader, sample_jsonl
from tests.test_scale import SAMPLE, write_run


def test_a_sample_spans_the_history_and_ends_at_the_last_step(tmp_path):
    run = write_run(tmp_path / "run", steps=6000)  # ~1.7 MB: far more lines than the sample takes
    full = RunReader(run_dir=run).read_all()
    sample = sample_jsonl(run / "logging.jsonl", points=200)
    steps = list(sample.train.steps)
    assert steps == sorted(set(steps)) and set(steps) <= set(full.train.steps)  # real steps, once, in order
    assert steps[0] <= 40 and steps[-1] == 6000 and 200 <= len(steps) < 800  # the start, the end, not every one
    assert max(b - a for a, b in zip(steps, steps[1:])) < 6000 // 50  # no big hole (~30 apart, an eval line hit: 60)
    for i, step in enumerate(steps):  # each value is the one logged at that step
        j = full.train.steps.index(step)
        assert sample.train.cols["loss"][i] == full.train.cols["loss"][j]
    assert sample.progress.step == full.progress.step == 6000
    assert sample.progress.remaining_s == full.progress.remaining_s and sample.max_steps == 6000


def test_a_small_file_is_sampled_whole_and_a_cut_last_line_is_left_out(tmp_path):
    run = write_run(tmp_path / "run", steps=40)
    line = json.loads(SAMPLE.read_text().splitlines()[0])
    with open(run / "logging.jsonl", "a") as fh:
        fh.write(json.dumps({**line, "global_step/max_steps": "41/40"})[:30])  # still being written
    sample = sample_jsonl(run / "logging.jsonl")
    assert list(sample.train.steps) == list(range(1, 41)) and list(sample.eval.steps) == list(range(7, 41, 7))
    assert list(sample_jsonl(tmp_path / "missing.jsonl").train.steps) == []


def test_the_dashboard_shows_a_sample_first_then_every_step(tmp_path, monkeypatch):
    """RunWatch's first poll of a long logging.jsonl hands a preview Update (header at the last step, the chart
    from a sample) before it reads the whole file; its own Update then has every step once, in order, and later
    polls make no preview."""
    from engine.ops.runs import resolve
    from tui import model

    monkeypatch.setenv("SWIFTDECK_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(model, "PREVIEW_BYTES", 256 * 1024)
    monkeypatch.setattr(model, "PREVIEW_POINTS", 100)
    run = write_run(tmp_path / "v0-20260101-000000", steps=5000)
    watch = model.RunWatch(resolve(str(run)), clock=lambda: 0.0)
    seen = []
    watch.preview = lambda u: seen.append((u, len(watch.observer.state.train)))
    u = watch.poll()
    assert len(seen) == 1
    preview, rows_read = seen[0]
    assert rows_read == 0  # made before the history was read
    assert preview.reset and preview.header.step == 5000 and preview.header.last_loss == 5.0 - 5000 / 5000
    assert preview.header.eta_s == u.header.eta_s and 100 <= len(preview.new_metrics.train.steps) < 600
    assert u.reset and list(u.new_metrics.train.steps) == list(range(1, 5001))
    assert list(u.new_metrics.eval.steps) == list(range(7, 5001, 7))
    assert u.header == preview.header
    watch.poll()
    assert len(seen) == 1

    small = write_run(tmp_path / "small" / "v0-20260101-000000", steps=50)  # under PREVIEW_BYTES: no preview
    watch = model.RunWatch(resolve(str(small)), clock=lambda: 0.0)
    watch.preview = seen.append
    watch.poll()
    assert len(seen) == 1


def test_streamed_rows_are_every_step_once_in_order_with_the_later_line_winning(tmp_path):
    """engine.ingest.stream_states hands rows on as the file is read, holding back only the newest `window` train
    rows: a step logged again within them is written once with the later values, a late step lands in its place;
    a line later than the window is left out and reported."""
    from engine.ingest import metrics_table, stream_states

    run = write_run(tmp_path / "run", steps=3000)
    line = json.loads(SAMPLE.read_text().splitlines()[0])
    with open(run / "logging.jsonl", "a") as fh:  # a resume that logs steps 2991.. again, and a late step 5
        for n in range(2991, 3001):
            fh.write(json.dumps({**line, "loss": 0.5, "global_step/max_steps": f"{n}/3000"}) + "\n")
        fh.write(json.dumps({**line, "loss": 0.25, "global_step/max_steps": "5/3000"}) + "\n")
    whole = metrics_table(RunReader(run_dir=run).read_all())
    late: list[int] = []
    reader = RunReader(run_dir=run)
    parts = list(stream_states(reader, window=100, late=late, chunk=16 * 1024))
    streamed = [row for part in parts for row in metrics_table(part)]
    assert len(parts) > 1 and max(len(p.train) for p in parts) < 3000  # never the whole history at once
    assert [r["step"] for r in streamed] == list(range(1, 3001))
    assert [r["loss"] for r in streamed[2990:]] == [0.5] * 10 and late == [5]  # step 5 came 2995 steps late
    assert streamed[:4] + streamed[5:] == whole[:4] + whole[5:] and whole[4]["loss"] == 0.25

    late = []
    parts = list(stream_states(RunReader(run_dir=run), window=10_000, late=late, chunk=16 * 1024))  # holds it all
    assert late == [] and [row for part in parts for row in metrics_table(part)] == whole


def test_the_app_paints_a_sample_first_and_says_how_far_the_read_is(tmp_path, monkeypatch):
    """In the real dashboard the loss pane gets the sample first, its hint says "reading N MB… P % (a sample of K
    steps shown)" while the rest is read, and then holds every step with the note gone."""
    import asyncio

    from engine.ops.runs import resolve
    from tests.test_tui_support import until
    from tui import model
    from tui.app import SwiftdeckApp
    from tui.widgets.loss import LossPane

    monkeypatch.setenv("SWIFTDECK_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(model, "PREVIEW_BYTES", 256 * 1024)
    monkeypatch.setattr(model, "PREVIEW_POINTS", 100)
    monkeypatch.setattr(model, "POLL_CHUNK", 128 * 1024)  # a long read in steps, each reporting progress
    run = write_run(tmp_path / "v0-20260101-000000", steps=5000)
    seen: list[tuple[str, object]] = []
    add, set_loading = LossPane.add, LossPane.set_loading

    def spy_add(self, metrics):
        add(self, metrics)
        seen.append(("rows", len(self.loss)))

    def spy_loading(self, done, total):
        set_loading(self, done, total)
        seen.append(("hint", self.query_one("#loss-hint").shown))

    monkeypatch.setattr(LossPane, "add", spy_add)
    monkeypatch.setattr(LossPane, "set_loading", spy_loading)

    async def go():
        app = SwiftdeckApp(resolve(str(run)), remember_theme=False, check_leftovers=False)
        async with app.run_test(size=(200, 56)) as pilot:
            pane = app.query_one(LossPane)
            assert await until(pilot, lambda: len(pane.loss) == 5000)
            await pilot.pause()
            return pane.query_one("#loss-hint").shown

    final_hint = asyncio.run(go())
    rows = [n for kind, n in seen if kind == "rows" and n]
    hints = [h for kind, h in seen if kind == "hint"]
    assert 100 <= rows[0] < 600 and rows[-1] == 5000
    assert hints and all("reading 1 MB…" in h and f"a sample of {rows[0]:,} steps" in h for h in hints)
    assert "reading" not in final_hint


def test_a_streamed_csv_names_a_key_first_logged_at_the_last_line(tmp_path):
    """`metrics --format csv` streams the parts through a temporary file of raw columns: the header still names
    every key (one that first appears at the last line too) and the rows are those of the whole-file read."""
    import csv
    import io

    from engine.cli import _ColumnSpool
    from engine.ingest import iter_metrics_rows, metrics_keys, stream_states

    run = write_run(tmp_path / "run", steps=3000)
    line = json.loads(SAMPLE.read_text().splitlines()[0])
    with open(run / "logging.jsonl", "a") as fh:
        fh.write(json.dumps({**line, "loss": 0.5, "new_key": 7.0, "global_step/max_steps": "3001/3001"}) + "\n")
    whole = RunReader(run_dir=run).read_all()
    want = io.StringIO()
    w = csv.writer(want, lineterminator="\n")
    w.writerow(metrics_keys(whole))
    keys = metrics_keys(whole)
    w.writerows(["" if row.get(k) is None else row[k] for k in keys] for row in iter_metrics_rows(whole))

    spool = _ColumnSpool()
    parts = 0
    for part in stream_states(RunReader(run_dir=run), window=100, chunk=16 * 1024):
        spool.add(part)
        parts += 1
    got = io.StringIO()
    spool.write_csv(got)
    assert parts > 10 and got.getvalue() == want.getvalue()
    table = list(csv.DictReader(io.StringIO(got.getvalue())))
    assert len(table) == 3001 and table[-1]["new_key"] == "7.0" and table[0]["new_key"] == ""
