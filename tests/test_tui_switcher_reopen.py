"""The run switcher between two opens (issue 9): every open lists the runs as they are now (a run started, ended,
moved on or gone since the last open shows so), reads again only the runs whose files changed, finds the run
folders of an output dir by their names without reading a checkpoint, and is drawn over an opaque background,
scrolled to the run shown. Real registry records and run folders (the recorded ms-swift 4.6 output), real Textual
(Pilot); what is read is seen through Python's audit hooks (sys.addaudithook), not mocked."""
from __future__ import annotations

import asyncio
import shutil
import sys
import threading
from pathlib import Path

from engine import checkpoints, runs
from engine.ops.runs import discover
from test_tui_support import fixed_clock, make_run, settled, until
from tui.app import SwiftdeckApp
from tui.gpufeed import GpuFeed
from tui.model import RunSource
from tui.screens.runs import RunListing, RunsScreen, is_job

PROGRESS_22 = b"\rTrain:  92%|#########1| 22/24 [00:05<00:00,  7.16it/s]\r"


class NoGpu:
    def sample(self):
        from engine.gpu import NO_GPU, GpuSnapshot

        return GpuSnapshot(False, f"{NO_GPU}: none here", (), 0.0)

    def close(self) -> None:
        pass


class Reads:
    """The files opened and the folders listed while `watching` (every thread), from Python's audit events."""

    _installed: "Reads | None" = None

    def __init__(self) -> None:
        self.watching = False
        self.opened: list[Path] = []
        self.listed: list[Path] = []
        self._lock = threading.Lock()

    @classmethod
    def get(cls) -> "Reads":
        if cls._installed is None:  # an audit hook cannot be removed: one per test process, off unless watching
            cls._installed = cls()
            sys.addaudithook(cls._installed._hook)
        reads = cls._installed
        reads.opened, reads.listed = [], []
        return reads

    def _hook(self, event: str, args: tuple) -> None:
        if not self.watching or event not in ("open", "os.scandir", "os.listdir"):
            return
        path = args[0] if args else None
        if isinstance(path, (str, bytes, Path)):
            with self._lock:
                (self.opened if event == "open" else self.listed).append(Path(path if not isinstance(path, bytes)
                                                                              else path.decode()))


def bare_run(where: Path, swift_fixtures: Path) -> Path:
    """A run folder as ms-swift leaves it, not in the registry (checkpoints 20 and 24)."""
    shutil.copytree(swift_fixtures / "run-v2", where, symlinks=True)
    for ckpt in where.glob("checkpoint-*"):
        (ckpt / "adapter_model.safetensors").write_bytes((2).to_bytes(8, "little") + b"{}")
    return where


def app_on(rec, out: Path) -> SwiftdeckApp:
    return SwiftdeckApp(RunSource.of_record(rec), output_dir=out, clock=fixed_clock, gpu_feed=GpuFeed(NoGpu()),
                        poll_s=3600, gpu_s=3600, remember_theme=False, check_leftovers=False)


def listed(app) -> dict[str, list]:
    """The switcher's rows as shown, by run key (the cells after the ▶/✓ marks)."""
    table = app.screen.query_one("#runs-table")
    return {src.key: table.get_row_at(i)[1:] for i, src in enumerate(app.screen.sources)}


def as_read_now(out: Path) -> dict[str, list]:
    """What a first open would list now: a fresh read (no cells kept from before), jobs left out."""
    sources, rows = RunListing(out).read()
    return {s.key: list(rows[s.key]) for s in sources if not is_job(s)}


async def open_switcher(pilot, ready=lambda screen: bool(screen._rows)) -> RunsScreen:
    await pilot.press("w")
    assert await until(pilot, lambda: isinstance(pilot.app.screen, RunsScreen) and ready(pilot.app.screen))
    return pilot.app.screen


async def close_switcher(pilot) -> None:
    await pilot.press("escape")
    assert await until(pilot, lambda: not isinstance(pilot.app.screen, RunsScreen))


# ---------------------------------------------------------------- discover()


def test_discover_finds_the_folders_a_checkpoint_scan_finds_without_reading_a_checkpoint(home, tmp_path,
                                                                                          swift_fixtures):
    out = tmp_path / "output"
    old = bare_run(out / "v0-20261101-100000", swift_fixtures)
    (out / "v1-20261102-100000").mkdir()  # a launch that failed at once: empty, not a run to open
    nested = bare_run(out / "Qwen2.5-0.5B" / "v2-20261103-100000", swift_fixtures)  # ms-swift's output/<model>/vN-*
    claimed = bare_run(out / "v3-20261104-100000", swift_fixtures)
    (out / "notes").mkdir()
    (out / "notes" / "todo.txt").write_text("not a run")
    (out / "v9-20261105-000000").write_text("a file, not a folder")
    rec = runs.create("sft", ["swift", "sft", "--model", "/tmp/tiny", "--output_dir", str(out)], str(tmp_path))
    runs.update(rec.id, lambda r: setattr(r, "run_dir", str(claimed)))

    reads = Reads.get()
    reads.watching = True
    try:
        found = discover(out)
    finally:
        reads.watching = False
    bare = [s.run_dir for s in found if s.record is None]
    assert bare == [nested.resolve(), old.resolve()]  # newest first; the record's folder once, as the record
    assert [s.key for s in found if s.record] == [rec.id]
    # the same folders as the full scan of the output dir (`swiftdeck ckpt`), in its order
    scanned = checkpoints.scan(out)
    assert checkpoints.run_folder_paths(out) == [f.path for f in scanned]
    assert bare == [f.path.resolve() for f in reversed(scanned) if not f.empty and f.path != claimed]
    # by names only: no checkpoint folder listed, no file in one opened (500 of them made the switcher slow)
    inside = [p for p in reads.opened + reads.listed if any(part.startswith("checkpoint-") for part in p.parts)]
    assert inside == []
    # an output dir that is itself a run folder
    assert [s.run_dir for s in discover(old) if s.record is None] == [old.resolve()]


# ---------------------------------------------------------------- the switcher, opened twice


def test_each_open_lists_the_runs_as_they_are_now(home, tmp_path, swift_fixtures):
    live = make_run(swift_fixtures, tmp_path / "live", "running")
    done = make_run(swift_fixtures, tmp_path / "done", "finished")
    out = tmp_path / "output"
    gone = bare_run(out / "v0-20261128-100000", swift_fixtures)  # newer than the records (2026-11-27)

    async def go():
        app = app_on(done, out)
        async with app.run_test(size=(160, 48)) as pilot:
            await settled(pilot)
            await open_switcher(pilot)
            rows = listed(app)
            assert sorted(rows) == sorted([str(gone.resolve()), live.id, done.id])
            assert list(rows)[0] == str(gone.resolve())  # newest first: the time in the folder's name
            assert rows[live.id][1:3] == ["running", "20/24"] and rows[done.id][1:3] == ["finished", "24/24"]
            assert rows == as_read_now(out)
            await close_switcher(pilot)

            # while the switcher is closed: the live run moves on a step and is stopped, the finished one is
            # renamed, a run is started from the CLI, a new run folder appears, the old one is deleted
            with open(live.console_log, "ab") as fh:
                fh.write(PROGRESS_22)
            runs.update(live.id, lambda r: (setattr(r, "status", "stopped"), setattr(r, "exit_code", -15)))
            runs.update(done.id, lambda r: setattr(r, "label", "renamed"))  # its files stay as they were
            started = runs.create("sft", ["swift", "sft", "--model", "/tmp/tiny"], str(tmp_path), label="cli")
            new = bare_run(out / "v1-20261129-100000", swift_fixtures)
            shutil.rmtree(gone)

            await open_switcher(pilot, lambda screen: started.id in [s.key for s in screen.sources])
            rows = listed(app)
            assert list(rows)[:2] == [started.id, str(new.resolve())] and sorted(list(rows)[2:]) == sorted(
                [live.id, done.id])  # the deleted folder is gone
            assert rows[live.id][1:3] == ["stopped", "22/24"]  # not the running 20/24 of the last open
            assert rows[done.id][0] == f"renamed {done.id}"
            assert rows == as_read_now(out)  # every cell as a first open would show it
            await pilot.press("J")  # the jobs too, as they are now
            assert await until(pilot, lambda: app.screen.show_jobs)
            await close_switcher(pilot)

    asyncio.run(go())


def test_a_second_open_reads_again_only_the_runs_whose_files_changed(home, tmp_path, swift_fixtures):
    live = make_run(swift_fixtures, tmp_path / "live", "running")
    done = make_run(swift_fixtures, tmp_path / "done", "finished")
    failed = make_run(swift_fixtures, tmp_path / "failed", "failed")
    out = tmp_path / "output"
    folder = bare_run(out / "v0-20261127-100000", swift_fixtures)
    logs = ("console.log", "logging.jsonl", "args.json")  # what a row's cells are read from

    async def go():
        app = app_on(done, out)
        async with app.run_test(size=(160, 48)) as pilot:
            await settled(pilot)
            reads = Reads.get()
            reads.watching = True
            await open_switcher(pilot)
            reads.watching = False
            first = {p for p in reads.opened if p.name in logs}
            assert {live.console_log, done.console_log, failed.console_log, folder / "logging.jsonl"} <= first
            await close_switcher(pilot)

            with open(live.console_log, "ab") as fh:
                fh.write(PROGRESS_22)
            reads = Reads.get()
            reads.watching = True
            screen = await open_switcher(pilot)
            assert await until(pilot, lambda: screen._rows.get(live.id, ())[2:3] == ("22/24",))
            await settled(pilot)
            reads.watching = False
            again = {p for p in reads.opened if p.name in logs}
            assert again and again <= {live.console_log, Path(live.run_dir) / "logging.jsonl"}
            assert listed(app) == as_read_now(out)

    asyncio.run(go())


def test_a_slow_read_shows_the_last_list_meanwhile_then_the_runs_as_they_are(home, tmp_path, swift_fixtures):
    done = make_run(swift_fixtures, tmp_path / "done", "finished")
    out = tmp_path / "output"

    async def go():
        app = app_on(done, out)
        async with app.run_test(size=(160, 48)) as pilot:
            await settled(pilot)
            await open_switcher(pilot)
            await close_switcher(pilot)
            started = runs.create("sft", ["swift", "sft", "--model", "/tmp/tiny"], str(tmp_path), label="cli")
            listing = app.run_listing
            listing._lock.acquire()  # a read still going (the last open's): the new open's read waits for it
            try:
                screen = await open_switcher(pilot)
                assert [s.key for s in screen.sources] == [done.id]  # the last list, not a blank table
                assert not screen.query_one("#runs-table").loading
            finally:
                listing._lock.release()
            assert await until(pilot, lambda: [s.key for s in screen.sources] == [started.id, done.id])
            assert listed(app) == as_read_now(out)

    asyncio.run(go())


def test_the_list_is_drawn_over_an_opaque_background_scrolled_to_the_run_shown(home, tmp_path, swift_fixtures):
    out = tmp_path / "output"
    shown = bare_run(out / "v0-20261101-100000", swift_fixtures)  # the oldest of 61: the last row
    for i in range(60):
        runs.create("sft", ["swift", "sft", "--model", "/tmp/tiny"], str(tmp_path), label=f"run{i}")

    async def go():
        app = SwiftdeckApp(RunSource(run_dir=shown.resolve()), output_dir=out, clock=fixed_clock,
                           gpu_feed=GpuFeed(NoGpu()), poll_s=3600, gpu_s=3600, remember_theme=False,
                           check_leftovers=False)
        async with app.run_test(size=(160, 48)) as pilot:
            await settled(pilot)
            screen = await open_switcher(pilot, lambda s: len(s.sources) == 61)
            await settled(pilot)
            table = screen.query_one("#runs-table")
            assert table.cursor_row == 60 and table.get_row_at(60)[0].startswith("▶")
            assert table.max_scroll_y > 0 and table.scroll_y == table.max_scroll_y  # the run shown is in view
            assert table.vertical_scrollbar.position == table.scroll_y  # and the thumb says so
            # the dashboard is not drawn again under the switcher in every frame (a dimmed background would be)
            assert screen.styles.background.a == 1

    asyncio.run(go())
