"""engine.ingest on the recorded ms-swift 4.6 output and on synthetic edge cases."""
from __future__ import annotations

import json
import math
import os
import random
from pathlib import Path

import pytest

from engine.events import CheckpointSaved, Finished, Metrics, Progress, RunDirFound
from engine.ingest import (SEGMENT_CAP, ConsoleParser, FileTail, JsonlParser, RunReader, metrics_summary,
                           metrics_table, parse_duration, parse_repr_dicts)

BAR = "Train:  42%|████▏     | {n}/24 [00:04<00:02,  4.89it/s]"


def console_bytes(fixtures: Path) -> bytes:
    return (fixtures / "sft-tiny-h200.stdout").read_bytes() + (fixtures / "sft-tiny-h200.stderr").read_bytes()


def jsonl_records(fixtures: Path) -> list[dict]:
    lines = (fixtures / "run-v2" / "logging.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def feed_all(parser, data: bytes, cuts) -> list:
    """Feed `data` split at the sorted positions `cuts`, then flush."""
    events, prev = [], 0
    for cut in [*cuts, len(data)]:
        events += parser.feed(data[prev:cut])
        prev = cut
    return events + parser.flush()


def parse_console(data: bytes) -> list:
    return feed_all(ConsoleParser(), data, [])


def of(events, kind) -> list:
    return [e for e in events if isinstance(e, kind)]


def render_tqdm(rec: dict) -> str:
    """How transformers' ProgressCallback.on_log prints a logs dict under tqdm (floats as .4g strings)."""
    shown = {k: (f"{v:.4g}" if isinstance(v, float) else v) for k, v in rec.items() if k != "total_flos"}
    return str(shown)


# ---------------------------------------------------------------- small pieces


@pytest.mark.parametrize("text,seconds", [
    ("0s", 0), ("1m 49s", 109), ("2h 3m 4s", 7384), ("1d 0h 0m 5s", 86405), ("00:21", 21), ("1:02:03", 3723),
    ("59s", 59)])
def test_parse_duration(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "abc", "1x", "?", "1m 2"])
def test_parse_duration_rejects_garbage(text):
    with pytest.raises(ValueError):
        parse_duration(text)


def test_repr_dicts_are_parsed_without_eval():
    text = "{'a': '1', 'b': nan, 'c': -inf, 'd': None, 'e': np.float64(2.5), \"it's\": 'x'}" \
           "{'evil': __import__('os').getcwd()}"
    dicts = parse_repr_dicts(text)
    assert len(dicts) == 1  # the second dict is not a literal: never evaluated, just not matched
    d = dicts[0]
    assert d["a"] == "1" and math.isnan(d["b"]) and d["c"] == -math.inf and d["d"] is None and d["e"] == 2.5
    assert d["it's"] == "x"


# ---------------------------------------------------------------- recorded fixtures


def test_jsonl_fixture_every_step_once(swift_fixtures):
    records = jsonl_records(swift_fixtures)
    events = feed_all(JsonlParser(), (swift_fixtures / "run-v2" / "logging.jsonl").read_bytes(), [])
    metrics = of(events, Metrics)
    expected = [int(r["global_step/max_steps"].split("/")[0]) for r in records if "loss" in r]
    assert [m.step for m in metrics] == expected
    assert len(set(expected)) == len(expected)
    for m, rec in zip(metrics, [r for r in records if "loss" in r]):
        assert m.values["loss"] == rec["loss"] and m.values["learning_rate"] == rec["learning_rate"]
        assert m.max_steps == int(rec["global_step/max_steps"].split("/")[1])
    final = of(events, Finished)[-1]
    assert final.last_checkpoint == records[-1]["last_model_checkpoint"]
    assert final.best_checkpoint is None and final.best_metric is None
    summary = next(r for r in records if "train_runtime" in r)
    assert final.summary["train_runtime"] == summary["train_runtime"]
    assert final.summary["train_loss"] == summary["train_loss"]


def test_console_fixture_has_same_steps_and_keys_as_jsonl(swift_fixtures):
    """The console was recorded from a sibling run (same command), so steps and metric names must agree;
    the numbers themselves differ between the two runs (rounding is checked on a rendering below)."""
    events = parse_console(console_bytes(swift_fixtures))
    records = [r for r in jsonl_records(swift_fixtures) if "loss" in r]
    metrics = of(events, Metrics)
    assert [m.step for m in metrics] == [int(r["global_step/max_steps"].split("/")[0]) for r in records]
    for m, rec in zip(metrics, records):
        assert set(m.values) == set(rec) - {"global_step/max_steps"}
        assert all(isinstance(v, float) for v in m.values.values())
    assert of(events, RunDirFound) == [RunDirFound("/tmp/w/output/v1-20261127-173725")]
    saves = of(events, CheckpointSaved)
    assert [c.step for c in saves] == [10, 20, 24]
    assert all(c.path.endswith(f"checkpoint-{c.step}") for c in saves)
    final = of(events, Finished)[-1]
    assert final.last_checkpoint.endswith("/checkpoint-24") and final.best_checkpoint is None
    assert {"train_runtime", "train_loss", "train_steps_per_second"} <= set(final.summary)
    bars = [p for p in of(events, Progress) if p.epoch is None]
    assert bars and bars[-1].step == 24 and bars[-1].max_steps == 24
    assert all(p.seconds_per_it is None or p.seconds_per_it > 0 for p in bars)


def test_console_rendering_of_jsonl_matches_within_rounding(swift_fixtures):
    """Render every logging.jsonl record the way the tqdm callback prints it, glue the lines into a bar
    stream like a merged console, and parse back: same steps, values equal to 4 significant digits."""
    records = jsonl_records(swift_fixtures)
    logged = [r for r in records if "last_model_checkpoint" not in r]
    stream = ""
    for rec in logged:
        step = int(rec["global_step/max_steps"].split("/")[0])
        stream += "\r" + BAR.format(n=step) + "\r" + " " * 50 + "\r" + render_tqdm(rec) + "\n"
    events = parse_console(stream.encode())
    metrics = of(events, Metrics)
    train = [r for r in logged if "loss" in r]
    assert [m.step for m in metrics] == [int(r["global_step/max_steps"].split("/")[0]) for r in train]
    for m, rec in zip(metrics, train):
        for key, value in rec.items():
            if isinstance(value, float):
                assert m.values[key] == pytest.approx(value, rel=5e-4, abs=1e-12), key
    summary = of(events, Finished)[-1].summary
    assert summary["train_runtime"] == pytest.approx(logged[-1]["train_runtime"], rel=5e-4)


def test_console_chunk_split_invariance(swift_fixtures):
    data = console_bytes(swift_fixtures)
    whole = parse_console(data)
    rng = random.Random(1234)
    # every split point near a segment boundary or a dict edge, plus random single and multi splits
    interesting = {i + d for i, b in enumerate(data) if b in b"\r\n{}" for d in (-2, -1, 0, 1, 2)}
    points = sorted(p for p in interesting if 0 < p < len(data))
    for cut in points[::15] + rng.sample(range(1, len(data)), 100):
        assert feed_all(ConsoleParser(), data, [cut]) == whole, cut
    for _ in range(30):
        cuts = sorted(rng.sample(range(1, len(data)), rng.randint(2, 400)))
        assert feed_all(ConsoleParser(), data, cuts) == whole
    assert feed_all(ConsoleParser(), data, range(1, len(data))) == whole  # byte by byte


def test_jsonl_chunk_split_invariance(swift_fixtures):
    data = (swift_fixtures / "run-v2" / "logging.jsonl").read_bytes()
    whole = feed_all(JsonlParser(), data, [])
    rng = random.Random(99)
    near_newline = {i + d for i, b in enumerate(data) if b == 10 for d in (-1, 0, 1)}
    for cut in sorted(c for c in near_newline | set(range(1, len(data), 17)) if 0 < c < len(data)):
        assert feed_all(JsonlParser(), data, [cut]) == whole, cut
    for _ in range(30):
        assert feed_all(JsonlParser(), data, sorted(rng.sample(range(1, len(data)), 50))) == whole


# ---------------------------------------------------------------- synthetic console edge cases

TQDM_DICT = ("{'loss': '6.421', 'grad_norm': '1.347', 'learning_rate': '0.0005', 'token_acc': '0', 'epoch': '0.125', "
             "'global_step/max_steps': '%d/24', 'elapsed_time': '3s', 'remaining_time': '1m 9s', "
             "'train_speed(s/it)': '3.022'}")


def test_partial_line_waits_for_completion():
    line = (TQDM_DICT % 1).encode() + b"\n"
    p = ConsoleParser()
    assert p.feed(line[:40]) == []
    assert p.feed(line[40:-1]) == []
    events = p.feed(line[-1:])
    assert of(events, Metrics)[0].step == 1


def test_bar_segment_ending_with_cr_is_complete():
    events = ConsoleParser().feed(("\r" + BAR.format(n=10) + "\r").encode())
    assert of(events, Progress) == [Progress(10, 24, None, 4.0, 2.0, pytest.approx(1 / 4.89))]


def test_interleaved_stdout_stderr_dict_glued_to_bar():
    data = ("\r" + BAR.format(n=1) + "\r" + " " * 40 + "\r\r" + BAR.format(n=1) + (TQDM_DICT % 1) + "\n"
            "\r" + BAR.format(n=2) + "[INFO:swift] Saving model checkpoint to /o/v0-20260101-000000/checkpoint-2\n"
            + (TQDM_DICT % 2) + "\r" + BAR.format(n=3) + "\n").encode()
    events = parse_console(data)
    assert [m.step for m in of(events, Metrics)] == [1, 2]
    assert of(events, CheckpointSaved) == [CheckpointSaved(2, "/o/v0-20260101-000000/checkpoint-2")]
    assert [p.step for p in of(events, Progress)] == [1, 1, 2, 2, 3]  # bar, dict, bar, dict, bar (in text order)


def test_two_dicts_on_one_line_and_eval_dict():
    eval_dict = ("{'eval_loss': '7.585', 'eval_runtime': '0.1766', 'eval_token_acc': '0.1412', 'epoch': '3', "
                 "'global_step/max_steps': '2/24', 'elapsed_time': '3s', 'remaining_time': '0s', "
                 "'train_speed(s/it)': '0.3261'}")
    events = parse_console(((TQDM_DICT % 2) + " " + eval_dict + "\n").encode())
    metrics = of(events, Metrics)
    assert [m.step for m in metrics] == [2, 2]
    assert metrics[0].values["loss"] == 6.421 and metrics[1].values["eval_loss"] == 7.585


def test_rank_prefix_and_other_ranks():
    data = (f"[rank0]: [INFO:swift] output_dir: /o/v3-20260101-000000\n[rank0]: {TQDM_DICT % 4}\n"
            f"[rank1]: {TQDM_DICT % 5}\n").encode()
    events = parse_console(data)
    assert of(events, RunDirFound) == [RunDirFound("/o/v3-20260101-000000")]
    assert [m.step for m in of(events, Metrics)] == [4]


def test_numeric_dict_with_bare_nan_disable_tqdm():
    line = ("{'loss': 9.6770134, 'grad_norm': nan, 'learning_rate': 9.33e-05, 'token_acc': 0.0, 'epoch': 0.4, "
            "'global_step/max_steps': '1/6', 'elapsed_time': '0s', 'remaining_time': '2s', "
            "'train_speed(s/it)': 0.418435}\n")
    (m,) = of(parse_console(line.encode()), Metrics)
    assert m.step == 1 and m.max_steps == 6 and math.isnan(m.values["grad_norm"])
    assert m.values["loss"] == 9.6770134 and m.values["remaining_time"] == 2.0


def test_non_utf8_bytes_do_not_crash():
    data = b"\xff\xfe garbage \xc3(\n[INFO:swift] Saving model checkpoint to /o/\xe9t\xe9/checkpoint-7\n" + \
        (TQDM_DICT % 7).encode() + b"\xff\n"
    events = parse_console(data)
    assert of(events, CheckpointSaved)[0].step == 7
    assert [m.step for m in of(events, Metrics)] == [7]


def test_five_megabyte_line_is_capped():
    big = b"x" * (5 * 1024 * 1024)
    p = ConsoleParser()
    events = []
    for i in range(0, len(big), 65536):
        events += p.feed(big[i:i + 65536])
        assert len(p._pending) <= SEGMENT_CAP
    events += p.feed((TQDM_DICT % 3).encode() + b"\n")  # the dict ends the huge line: still seen
    events += p.feed(big + b"\n" + (TQDM_DICT % 4).encode() + b"\n")
    assert [m.step for m in of(events, Metrics)] == [3, 4]


def test_swift2_global_step_without_max_steps():
    line = "{'loss': 2.07, 'acc': 0.56, 'grad_norm': 1.8, 'learning_rate': 1e-05, 'epoch': 0.01, 'global_step': 5}\n"
    events = parse_console(line.encode())
    (m,) = of(events, Metrics)
    assert m.step == 5 and m.max_steps is None and m.values["acc"] == 0.56
    assert of(events, Progress)[0] == Progress(5, None, 0.01, None, None, None)


def test_swift3_train_speed_iter_per_s_and_percentage():
    line = ("{'loss': 1.7, 'acc': 0.6, 'grad_norm': 3.2, 'learning_rate': 9.9e-05, 'memory(GiB)': 19.7, "
            "'train_speed(iter/s)': 0.25, 'epoch': 0.01, 'global_step/max_steps': '3/375', 'percentage': '0.80%', "
            "'elapsed_time': '12s', 'remaining_time': '24m 53s'}\n")
    events = parse_console(line.encode())
    (m,) = of(events, Metrics)
    assert m.step == 3 and m.max_steps == 375 and "percentage" not in m.values
    (p,) = of(events, Progress)
    assert p.seconds_per_it == 4.0 and p.remaining_s == 24 * 60 + 53


def test_bar_variants_and_ignored_bars():
    data = ("\rTrain:   4%|▍         | 1/24 [1:02:03<?, ?it/s]\r"
            "\rTrain:   8%|▊         | 2/24 [00:03<00:34,  1.57s/it]\r"
            "\rVal: 100%|██████████| 3/3 [00:00<00:00, 28.32it/s]\n"
            "\rMap: 100%|██████████| 32/32 [00:00<00:00, 3541.23 examples/s]\n"
            "\rLoading checkpoint shards: 100%|██████████| 2/2 [00:01<00:00,  1.20it/s]\n").encode()
    progress = of(parse_console(data), Progress)
    assert progress == [Progress(1, 24, None, 3723.0, None, None), Progress(2, 24, None, 3.0, 34.0, 1.57)]


def test_end_lines_give_finished():
    data = (b"[INFO:swift] last_model_checkpoint: /o/v0-20260101-000000/checkpoint-24\n"
            b"[INFO:swift] best_model_checkpoint: /o/v0-20260101-000000/checkpoint-20\n"
            b"[INFO:swift] End time of running main: 2026-11-27 17:37:57.090911\n")
    p = ConsoleParser()
    finished = of(feed_all(p, data, []), Finished)
    assert finished[-1] == Finished("/o/v0-20260101-000000/checkpoint-24", "/o/v0-20260101-000000/checkpoint-20")
    assert len(finished) == 2  # the End-time line adds nothing new, so no duplicate event
    assert p.end_time == "2026-11-27 17:37:57.090911"


def test_jsonl_nan_and_garbage_lines():
    data = (b'{"loss": NaN, "grad_norm": Infinity, "global_step/max_steps": "1/2"}\n'
            b'not json\n[1, 2]\n{"loss": 1.5, "global_step/max_steps": "2/2"}\n')
    p = JsonlParser()
    metrics = of(feed_all(p, data, []), Metrics)
    assert [m.step for m in metrics] == [1, 2] and math.isnan(metrics[0].values["loss"])
    assert metrics[0].values["grad_norm"] == math.inf and p.skipped == 2


# ---------------------------------------------------------------- FileTail and RunReader


def test_file_tail(tmp_path):
    path = tmp_path / "f.log"
    tail = FileTail(path)
    assert tail.read_new() == b""
    path.write_bytes(b"abc")
    assert tail.read_new() == b"abc"
    with open(path, "ab") as f:
        f.write(b"def")
    assert tail.read_new() == b"def" and tail.read_new() == b""
    path.write_bytes(b"x")  # truncated
    assert tail.read_new() == b"x" and tail.generation == 1
    other = tmp_path / "g.log"
    other.write_bytes(b"longer content")
    os.replace(other, path)  # replaced by another file (new inode)
    assert tail.read_new() == b"longer content" and tail.generation == 2
    path.unlink()
    assert tail.read_new() == b""


def make_run(tmp_path: Path, fixtures: Path) -> tuple[Path, Path, list[bytes], list[bytes]]:
    """A console.log (stdout dicts + stderr of the fixture, output_dir rewritten to a tmp run folder) and
    the lines of the fixture logging.jsonl, to be written piecewise."""
    run_dir = tmp_path / "output" / "v2-20261127-174023"
    run_dir.mkdir(parents=True)
    console = console_bytes(fixtures).replace(b"/tmp/w/output/v1-20261127-173725", str(run_dir).encode())
    jsonl = (fixtures / "run-v2" / "logging.jsonl").read_bytes().replace(b"/tmp/w/output", str(run_dir.parent).encode())
    jsonl = jsonl.splitlines(keepends=True)
    return tmp_path / "console.log", run_dir, [console[i:i + 997] for i in range(0, len(console), 997)], jsonl


def append(path: Path, data: bytes) -> None:
    with open(path, "ab") as f:
        f.write(data)


def state_view(reader: RunReader) -> tuple:
    st = reader.state
    p = st.progress
    return (st.run_dir, st.metrics, dict(st.checkpoints), st.finished, st.end_time, st.metrics_source,
            (p.step, p.max_steps) if p else None)


def test_run_reader_incremental_then_restart(tmp_path, swift_fixtures):
    console, run_dir, console_chunks, jsonl_lines = make_run(tmp_path, swift_fixtures)
    reader = RunReader(console)
    events = []
    rng = random.Random(5)
    while console_chunks or jsonl_lines:  # both files grow in an arbitrary interleaving
        if console_chunks and (not jsonl_lines or rng.random() < 0.6):
            append(console, console_chunks.pop(0))
        else:
            append(run_dir / "logging.jsonl", jsonl_lines.pop(0))
        events += reader.poll()
    events += reader.poll(final=True)
    records = [json.loads(x) for x in (run_dir / "logging.jsonl").read_text().splitlines()]
    train = [r for r in records if "loss" in r]
    metrics = of(events, Metrics)
    steps = [m.step for m in metrics]
    assert sorted(steps) == [int(r["global_step/max_steps"].split("/")[0]) for r in train]  # each exactly once
    assert [m.values["loss"] for m in reader.state.metrics] == [r["loss"] for r in train]  # jsonl is authoritative
    assert reader.state.metrics_source == "logging.jsonl"
    assert of(events, RunDirFound) == [RunDirFound(str(run_dir))]
    assert sorted(reader.state.checkpoints) == [10, 20, 24]
    assert reader.state.finished.last_checkpoint == records[-1]["last_model_checkpoint"]
    assert reader.state.end_time is not None and reader.state.progress.step == 24

    fresh = RunReader(console)
    fresh_events = fresh.poll(final=True)
    assert state_view(fresh) == state_view(reader)
    assert sorted(m.step for m in of(fresh_events, Metrics)) == sorted(steps)
    assert reader.poll() == [] and fresh.poll() == []


def test_run_reader_console_only(tmp_path, swift_fixtures):
    console, run_dir, chunks, _ = make_run(tmp_path, swift_fixtures)  # no logging.jsonl is ever written
    append(console, b"".join(chunks))
    reader = RunReader(console)
    events = reader.poll(final=True)
    expected = of(parse_console(console.read_bytes()), Metrics)
    assert of(events, Metrics) == expected and reader.state.metrics == expected
    assert reader.state.metrics_source == "console"
    assert reader.state.finished.summary["train_runtime"] > 0


def test_run_reader_switches_to_jsonl_without_duplicates(tmp_path):
    run_dir = tmp_path / "v0-20260101-000000"
    run_dir.mkdir()
    console = tmp_path / "console.log"
    append(console, f"[INFO:swift] output_dir: {run_dir}\n{TQDM_DICT % 1}\n".encode())
    reader = RunReader(console)
    first = of(reader.poll(), Metrics)
    assert [m.values["loss"] for m in first] == [6.421]
    append(run_dir / "logging.jsonl", b'{"loss": 6.42123456, "global_step/max_steps": "1/24"}\n'
                                      b'{"loss": 6.3, "global_step/max_steps": "2/24"}\n')
    append(console, f"{TQDM_DICT % 2}\n".encode())
    second = of(reader.poll(), Metrics)
    assert [m.step for m in second] == [2] and second[0].values["loss"] == 6.3
    assert [m.values["loss"] for m in reader.state.metrics] == [6.42123456, 6.3]  # state took the jsonl values
    fresh = RunReader(console)
    fresh.poll()
    assert fresh.state.metrics == reader.state.metrics


def test_run_reader_run_dir_only_and_truncation(tmp_path, swift_fixtures):
    reader = RunReader(run_dir=swift_fixtures / "run-v2")
    events = reader.poll()
    assert sorted(reader.state.checkpoints) == [20, 24]  # found on disk without a console log
    assert len(of(events, Metrics)) == len([r for r in jsonl_records(swift_fixtures) if "loss" in r])

    console = tmp_path / "console.log"
    append(console, f"{TQDM_DICT % 1}\n{TQDM_DICT % 2}\n".encode())
    reader = RunReader(console)
    assert len(of(reader.poll(), Metrics)) == 2
    console.write_bytes(f"{TQDM_DICT % 1}\n".encode())  # truncated and rewritten: nothing emitted twice
    assert of(reader.poll(), Metrics) == []
    append(console, f"{TQDM_DICT % 3}\n".encode())
    assert [m.step for m in of(reader.poll(), Metrics)] == [3]


def test_metrics_table_and_summary_are_json_safe(tmp_path):
    console = tmp_path / "console.log"
    eval_dict = "{'eval_loss': 7.5, 'epoch': 1.0, 'global_step/max_steps': '2/4'}"
    append(console, (f"{TQDM_DICT % 1}\n{TQDM_DICT % 2}\n{eval_dict}\n"
                     "{'loss': 5.0, 'grad_norm': nan, 'global_step/max_steps': '4/4'}\n").encode())
    reader = RunReader(console)
    reader.poll()
    table = metrics_table(reader.state)
    assert [row["step"] for row in table] == [1, 2, 4]
    assert table[1]["loss"] == 6.421 and table[1]["eval_loss"] == 7.5
    assert table[2]["grad_norm"] is None
    summary = metrics_summary(reader.state)
    assert summary["last_loss"] == 5.0 and summary["last_eval_loss"] == 7.5 and summary["max_steps"] == 4
    json.dumps(table, allow_nan=False)
    json.dumps(summary, allow_nan=False)


def test_run_reader_bounded_polls_reach_the_same_state(tmp_path, swift_fixtures):
    console, run_dir, chunks, jsonl_lines = make_run(tmp_path, swift_fixtures)
    append(console, b"".join(chunks))
    append(run_dir / "logging.jsonl", b"".join(jsonl_lines))
    whole = RunReader(console)
    whole.poll(final=True)
    bounded = RunReader(console, run_dir=run_dir)  # run_dir given: RunDirFound is still reported once
    events, polls = [], 0
    while True:
        events += bounded.poll(final=True, max_bytes=1500)
        polls += 1
        if bounded.caught_up:
            break
    assert polls > 10
    assert state_view(bounded) == state_view(whole)
    assert of(events, RunDirFound) == [RunDirFound(str(run_dir))]


@pytest.mark.slow
def test_live_swift_sft_console_and_jsonl_agree(tmp_path, demo_assets, python):
    """A real (short) `swift sft` on the demo model, stdout+stderr merged into one file as the supervisor
    does: the live reader emits every logged step once, and the console alone gives the same numbers."""
    import signal
    import subprocess
    import time

    from engine import checkpoints, demo

    log = tmp_path / "console.log"
    argv = [python, "-m", "swift.cli.sft",
            *demo.demo_sft_args(demo_assets, tmp_path / "output", epochs=1, save_steps=2, logging_steps=1),
            "--split_dataset_ratio", "0.2", "--eval_steps", "2"]
    with open(log, "ab") as f:
        proc = subprocess.Popen(argv, stdout=f, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    reader, events = RunReader(log), []
    try:
        deadline = time.monotonic() + 600
        while proc.poll() is None and time.monotonic() < deadline:
            events += reader.poll()
            time.sleep(0.2)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    events += reader.poll(final=True)
    assert proc.returncode == 0, log.read_bytes()[-3000:].decode(errors="replace")

    run_dir = Path(reader.state.run_dir)
    jsonl = feed_all(JsonlParser(), (run_dir / "logging.jsonl").read_bytes(), [])
    expected = [(m.step, "eval_loss" in m.values) for m in of(jsonl, Metrics)]
    assert any(is_eval for _, is_eval in expected) and len(expected) >= 4
    assert sorted((m.step, "eval_loss" in m.values) for m in of(events, Metrics)) == sorted(expected)
    assert reader.state.metrics == of(jsonl, Metrics)

    console_only = of(parse_console(log.read_bytes()), Metrics)
    assert [(m.step, "eval_loss" in m.values) for m in console_only] == expected
    for c, j in zip(console_only, of(jsonl, Metrics)):
        assert set(c.values) == set(j.values)
        for key, value in j.values.items():
            if key not in ("elapsed_time", "remaining_time"):
                assert c.values[key] == pytest.approx(value, rel=5e-4, abs=1e-12, nan_ok=True), key

    fin = reader.state.finished
    assert fin.summary["train_runtime"] > 0 and reader.state.end_time
    (run,) = checkpoints.scan(tmp_path / "output")
    assert run.finished and [c.step for c in run.checkpoints] == sorted(reader.state.checkpoints)[-2:]
    last = [c for c in run.checkpoints if c.is_last]
    assert len(last) == 1 and str(last[0].path) == fin.last_checkpoint
    assert all(c.complete and c.resumable and c.kind == "lora" for c in run.checkpoints)


def test_hostile_console_input_does_not_crash():
    rng = random.Random(7)
    junk = [b"{'a': '\\N'}", b"{'loss': 1.0, 'global_step': nan}", b"Train:  5%|x| 1/24 [00:01<00:02, 1.2.3it/s]",
            b"{'loss': 1e999999, 'global_step/max_steps': '1/0'}", b"{{{{'", b"{'x': np.float64(nan)}", b"\x00\xff{",
            b"[rank0]:", b"[rank7]: {'loss': 1.0, 'global_step': 3}", b"output_dir: ", b"{'k': 1,}",
            b"Saving model checkpoint to checkpoint-", b"last_model_checkpoint: None"]
    for _ in range(200):
        data = b"".join(rng.choice(junk) + rng.choice([b"\n", b"\r", b""]) for _ in range(20))
        events = feed_all(ConsoleParser(), data, sorted(rng.sample(range(1, len(data)), 3)))
        assert repr(events) == repr(parse_console(data))  # repr: nan != nan
    events = parse_console(b"{'loss': 1e999999, 'global_step/max_steps': '1/0'}\n{'k': 1,}\n")
    assert of(events, Metrics) == [Metrics(1, {"loss": math.inf}, None)]
