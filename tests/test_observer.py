"""engine.observer (issue 8, "one run observer"): one tail of a run's console.log feeds the console parser, the log
pane's line index and failure matching; the verdict on a failure reaches the dashboard as an engine.events.Failed.
Real recorded consoles (tests/data), real registry records, real files and processes; opens and bytes read are
counted by the interpreter itself (an audit hook, /proc/self/io), nothing is mocked."""
from __future__ import annotations

import asyncio
import os
import random
import re
import shutil
import sys
import time
from pathlib import Path

import psutil
import pytest

from engine import deploy, diagnose, runs, supervisor
from engine.events import CheckpointSaved, ConsoleAppended, Failed, Metrics, RunDirFound
from engine.ingest import ConsoleTail, LineSplitter
from engine.observer import HEAD, TAIL, RunObserver
from test_tui_failure import app_for, argv_of, failed_record, sidecar
from test_tui_support import settled
from tui.logstore import LogStore, collapse
from tui.model import RunSource, RunWatch
from tui.widgets.failure import FailureCard
from tui.widgets.log import LogPane

DATA = Path(__file__).parent / "data"
RECORDED = sorted((DATA / "failures").glob("*.json"))
CONSOLES = DATA / "consoles"
SPLIT_LOGS = [CONSOLES / "sft-tiny-h200.log", CONSOLES / "cuda_oom-h200.log",
              DATA / "failures" / "disk_full.log", DATA / "failures" / "killed_by_signal-sigint.log"]


class Opens:
    """Counts how often this process opens one path, on any thread (the interpreter's `open` audit event)."""

    _active: list["Opens"] = []
    _installed = False

    def __init__(self, path: Path):
        self.path, self.count = os.fspath(path), 0

    def __enter__(self) -> "Opens":
        if not Opens._installed:
            sys.addaudithook(Opens._hook)
            Opens._installed = True
        Opens._active.append(self)
        return self

    def __exit__(self, *exc) -> None:
        Opens._active.remove(self)

    @staticmethod
    def _hook(event: str, args: tuple) -> None:
        if event == "open" and Opens._active and isinstance(args[0], str):
            for o in Opens._active:
                if args[0] == o.path:
                    o.count += 1


def running_record(where: Path, argv: list[str] | None = None) -> runs.RunRecord:
    """A registry record of a run going on now (its runner is this test process, so the registry keeps it
    running), with an empty console.log."""
    argv = argv or ["swift", "sft"]
    rec = runs.create("sft", argv, str(where))
    me = psutil.Process()

    def fill(r: runs.RunRecord) -> None:
        r.status, r.runner_pid, r.runner_create_time = "running", me.pid, me.create_time()

    rec = runs.update(rec.id, fill)
    rec.console_log.write_bytes(b"")
    return rec


def end(rec: runs.RunRecord, exit_code: int) -> runs.RunRecord:
    def ended(r: runs.RunRecord) -> None:
        r.status, r.exit_code, r.ended_at, r.runner_pid = ("finished" if exit_code == 0 else "failed",
                                                           exit_code, time.time(), None)
    return runs.update(rec.id, ended)


def index(events) -> LogStore:
    store = LogStore(None)
    for ev in events:
        if isinstance(ev, ConsoleAppended):
            store.add(ev)
    return store


def lines_of(store: LogStore) -> list[str]:
    return [store.line(i) for i in range(store.count)]


def of(events, kind) -> list:
    return [e for e in events if isinstance(e, kind)]


def diagnosis_of(path: Path, rec: runs.RunRecord) -> Failed:
    """What the runner would have recorded: engine.diagnose on the file, bounded read."""
    return Failed.from_json(diagnose.diagnose_file(path, exit_code=rec.exit_code, command=rec.kind,
                                                   args=rec.argv[2:]).to_json())


# ---------------------------------------------------------------- one tail, any chunking


@pytest.mark.parametrize("log", SPLIT_LOGS, ids=lambda p: p.stem)
def test_random_chunk_splits_give_each_line_once_and_the_events_of_one_read(home, tmp_path, log):
    """A recorded console written piece by piece into a live run's console.log, polled after every piece, then the
    run ends: each byte and line arrives once, and the events are those of one read of the whole file."""
    data = log.read_bytes()
    whole_rec = failed_record(tmp_path, log, exit_code=1, argv=["swift", "sft", "--lora_rank", "8"])
    whole = RunObserver(console_log=whole_rec.console_log)
    once = whole.poll(runs.load(whole_rec.id))
    assert [e.data for e in of(once, ConsoleAppended)] == [data]
    rng = random.Random(log.name)
    for trial in range(4):
        rec = running_record(tmp_path, argv=["swift", "sft", "--lora_rank", "8"])
        observer = RunObserver(console_log=rec.console_log)
        cuts = sorted(rng.sample(range(1, len(data)), rng.choice([1, 7, 60, 400])))
        events, prev = [], 0
        for cut in [*cuts, len(data)]:
            with open(rec.console_log, "ab") as fh:
                fh.write(data[prev:cut])
            prev = cut
            events += observer.poll(runs.load(rec.id))
        events += observer.poll(end(rec, 1))

        chunks = of(events, ConsoleAppended)
        assert b"".join(c.data for c in chunks) == data  # every byte once, in order
        assert [c.offset for c in chunks] == [sum(len(c.data) for c in chunks[:i]) for i in range(len(chunks))]
        assert lines_of(index(events)) == lines_of(index(once))  # every line once
        store = index(events)
        assert [store.line(i) for i in range(store.complete)] == [collapse(raw) for raw in data.split(b"\n")[:-1]]
        for kind in (Metrics, CheckpointSaved, RunDirFound):
            assert of(events, kind) == of(once, kind), (trial, kind)
        assert observer.state.metrics == whole.state.metrics
        assert observer.state.progress == whole.state.progress
        assert observer.state.finished == whole.state.finished
        assert observer.state.checkpoints == whole.state.checkpoints
        verdicts = [f for f in of(events, Failed) if not f.live]
        assert verdicts == of(once, Failed) and len(verdicts) == 1  # the ended run's verdict, once
        assert observer.console_text() == data.decode("utf-8", errors="replace")


def test_console_tail_lines_are_split_on_cr_and_lf_in_any_chunking(tmp_path):
    """engine.runner's need (its ConsoleWatch): complete lines split on \\r and \\n, none lost or doubled."""
    data = (CONSOLES / "sft-tiny-h200.log").read_bytes()
    expected = [s.decode("utf-8", errors="replace") for s in re.split(rb"[\r\n]", data)[:-1] if s]
    assert any("Train:" in line for line in expected)  # tqdm's \r redraws are lines of their own
    rng = random.Random(3)
    for _ in range(5):
        path = tmp_path / "console.log"
        path.write_bytes(b"")
        tail, got, prev = ConsoleTail(path), [], 0
        for cut in [*sorted(rng.sample(range(1, len(data)), 200)), len(data)]:
            with open(path, "ab") as fh:
                fh.write(data[prev:cut])
            prev = cut
            got += tail.lines()
        assert got + tail.flush() == expected + ([data.rsplit(b"\n", 1)[1].decode()] if not data.endswith(b"\n")
                                                 else [])
    splitter = LineSplitter()
    assert splitter.feed(b"a\r\rb\nc") == ["a", "b"] and splitter.feed(b"") == [] and splitter.flush() == ["c"]
    path.write_bytes(b"new\n")  # replaced by a shorter file: read from its start again
    assert tail.lines() == ["new"]


def test_console_text_is_what_diagnose_reads_of_a_long_log(tmp_path):
    """The head and tail the observer keeps give engine.diagnose the same text as its bounded read of the file."""
    log = tmp_path / "console.log"
    oom = (CONSOLES / "cuda_oom-h200.log").read_bytes()
    filler = b"".join(b"[INFO:swift] line %d of a long run\n" % i for i in range((HEAD + TAIL) // 30))
    log.write_bytes(oom[:4000] + filler + oom)
    observer = RunObserver(console_log=log)
    for _ in range(3):  # read in several steps
        observer.poll(max_bytes=(HEAD + TAIL) // 2)
    observer.poll()
    assert observer.caught_up and log.stat().st_size > HEAD + TAIL
    assert observer.console_text() == diagnose.read_bounded(log)


# ---------------------------------------------------------------- the verdict as an event


@pytest.mark.parametrize("path", RECORDED, ids=lambda p: p.stem)
def test_failed_arrives_as_an_event_for_each_recorded_failure(home, tmp_path, path):
    meta = sidecar(path)
    rec = failed_record(tmp_path, path.with_suffix(".log"), exit_code=meta["exit_code"], argv=argv_of(meta))
    observer = RunObserver(console_log=rec.console_log)
    with Opens(rec.console_log) as opens:
        events = observer.poll(runs.load(rec.id))
    (failed,) = of(events, Failed)
    assert failed.kind == meta["kind"] and not failed.live
    assert failed == diagnosis_of(path.with_suffix(".log"), rec)  # the console diagnosed once, as the runner does
    assert failed.remedies and failed.summary
    assert opens.count == 1  # diagnosed from what the one tail read, not from a second read of the file
    assert of(observer.poll(runs.load(rec.id)), Failed) == []  # once

    bare = RunObserver(console_log=rec.console_log)  # the same log with no record (no exit code known)
    found = of(bare.poll(), Failed)
    if meta["kind"] == "killed_by_signal" and "aftermath" in path.stem:
        # the kill left only an orphaned worker's traceback: without the exit code that is all the log says
        assert [f.kind for f in found] in ([], ["unknown"])
    elif meta["kind"] == "killed_by_signal":  # a signal leaves no traceback: its exit code was the evidence
        assert [f.kind for f in found] in ([], ["killed_by_signal"])
    else:
        assert [f.kind for f in found] == [meta["kind"]]


def test_the_recorded_diagnosis_wins_and_garbage_in_it_is_not_used(home, tmp_path):
    log = DATA / "failures" / "disk_full.log"
    recorded = {"kind": "cuda_oom", "summary": "as the runner recorded it", "remedies": ["--max_length 512", 3],
                "evidence": "x"}
    rec = failed_record(tmp_path, log, exit_code=1, meta={"diagnosis": recorded})
    (failed,) = of(RunObserver(console_log=rec.console_log).poll(runs.load(rec.id)), Failed)
    assert failed == Failed("cuda_oom", "as the runner recorded it", "x", ("--max_length 512", "3"))
    odd = failed_record(tmp_path, log, exit_code=1, meta={"diagnosis": {"kind": 5, "remedies": "nope"}})
    (failed,) = of(RunObserver(console_log=odd.console_log).poll(runs.load(odd.id)), Failed)
    assert failed.kind == "disk_full"  # not a diagnosis: the console is diagnosed instead
    gone = failed_record(tmp_path, None, exit_code=None, status="lost")  # its console.log never existed
    (failed,) = of(RunObserver(console_log=gone.console_log).poll(runs.load(gone.id)), Failed)
    assert failed.kind == "unknown" and "could not be diagnosed (No such file or directory)" in failed.summary


def test_a_live_cuda_oom_line_gives_a_live_failed_then_the_verdict(home, tmp_path):
    """The run is still going when the OOM traceback lands on its console (the runner is stopping the tree)."""
    oom = (CONSOLES / "cuda_oom-h200.log").read_bytes()
    rec = running_record(tmp_path)
    observer = RunObserver(console_log=rec.console_log)
    cut = oom.index(b"torch.OutOfMemoryError")
    with open(rec.console_log, "ab") as fh:
        fh.write(oom[:cut + 30])  # the fatal line, not yet complete
    assert of(observer.poll(runs.load(rec.id)), Failed) == []
    with open(rec.console_log, "ab") as fh:
        fh.write(oom[cut + 30:])
    (live,) = of(observer.poll(runs.load(rec.id)), Failed)
    assert live.live and live.kind == "cuda_oom" and "process 2727 holds 133.79 GiB" in live.summary
    assert of(observer.poll(runs.load(rec.id)), Failed) == []  # once
    (final,) = of(observer.poll(end(rec, 1)), Failed)
    assert final.kind == "cuda_oom" and not final.live


# ---------------------------------------------------------------- the dashboard gets its data only from the events


def test_one_tail_of_the_console_per_poll_feeds_the_log_and_the_card(home, tmp_path):
    """A failed run in the dashboard's model: each poll opens console.log exactly once; the log store's lines and
    the card's verdict come from that one read."""
    log = DATA / "failures" / "cpu_oom.log"
    rec = failed_record(tmp_path, log, exit_code=1, argv=argv_of(sidecar(log.with_suffix(".json"))))
    watch = RunWatch(RunSource.of_record(rec), clock=lambda: 0.0)
    with Opens(rec.console_log) as opens:
        u = watch.poll()
    assert opens.count == 1
    assert u.failed is not None and u.failed.kind == "cpu_oom" and u.failure.diagnosis == u.failed.summary
    data = log.read_bytes()
    assert u.log_lines == data.count(b"\n") == watch.log.complete
    with open(rec.console_log, "ab") as fh:
        fh.write(b"swiftdeck: one more line\n")
    with Opens(rec.console_log) as opens:
        u = watch.poll()
        again = watch.poll()
    assert opens.count == 2 and u.log_lines == 1 and again.log_lines == 0
    assert watch.log.line(watch.log.complete - 1) == "swiftdeck: one more line"
    assert u.failed is again.failed  # sticky: not diagnosed again


def test_dashboard_reads_the_console_once_for_the_log_pane_and_the_failure_card(home, tmp_path):
    """The whole dashboard on a failed run, one poll: console.log is opened once in all; the card shows the verdict
    and the log pane every line."""
    path = DATA / "failures" / "disk_full.json"
    meta = sidecar(path)
    rec = failed_record(tmp_path, path.with_suffix(".log"), exit_code=meta["exit_code"], argv=argv_of(meta))

    async def go():
        app = app_for(RunSource.of_record(rec), poll_s=3600, gpu_s=3600)
        with Opens(rec.console_log) as opens:
            async with app.run_test(size=(120, 40)) as pilot:
                card = app.query_one(FailureCard)
                await settled(pilot)  # the one poll (the next is an hour away) is shown
                assert card.state.diagnosis["kind"] == "disk_full"
                assert "· disk_full: " in str(card.render())
                store = app.query_one(LogPane).store
                assert store.complete == path.with_suffix(".log").read_bytes().count(b"\n")
                count = opens.count
        assert count == 1
    asyncio.run(go())


# ---------------------------------------------------------------- deploy's readiness wait


SERVER = r"""
import http.server, socket, sys, time
for i in range(int(sys.argv[1])):  # the start-up output of a long model load
    print(f"[INFO:swift] loading shard {i}: " + "x" * 200)
print("[INFO:swift] model_list: ['robot', 'base']", flush=True)
time.sleep(float(sys.argv[2]))
class Health(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200 if self.path == "/health" else 404)
        self.end_headers()
    def log_message(self, *args):
        pass
server = http.server.HTTPServer(("127.0.0.1", 0), Health)
print(f"INFO:     Uvicorn running on http://127.0.0.1:{server.server_port} (Press CTRL+C to quit)", flush=True)
server.serve_forever()
"""


def read_bytes_so_far() -> int:
    """Bytes this process has read through read() calls (the kernel's count)."""
    return int(re.search(r"^rchar: (\d+)$", Path("/proc/self/io").read_text(), re.M).group(1))


def test_wait_ready_reads_the_console_once_not_every_time(home, tmp_path):
    """A real server process behind engine.runner that prints ~4 MB of start-up output, then its port only after a
    while: wait_ready finds the URL and the model list, reading the console about once (not once per 0.3 s)."""
    rec = supervisor.launch_argv("deploy", [sys.executable, "-c", SERVER, "20000", "3"], cwd=tmp_path)
    try:
        start = read_bytes_so_far()
        url = deploy.wait_ready(rec, timeout_s=60)
        taken = read_bytes_so_far() - start
        size = rec.console_log.stat().st_size
        done = runs.load(rec.id)
        assert url == f"http://127.0.0.1:{done.meta['port']}" and done.meta["ready"]
        assert done.meta["models"] == ["robot", "base"] and deploy.health(url)
        assert size > 4_000_000 and taken < 1.5 * size, (taken, size)
        assert deploy.wait_ready(done, timeout_s=5) == url  # known now: no console read at all
    finally:
        supervisor.stop(runs.load(rec.id))
    assert supervisor.live_tree(runs.load(rec.id)) == []
