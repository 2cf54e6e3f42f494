"""A long console log opens at its end (issue 9, "open the log pane at the end < 1 s"): the real dashboard on a bare
console log shows the file's last lines while the whole file is still being read, says how far the read is, answers
`t` and the filter meanwhile, and then shows the whole log, every line once and in order, staying at the bottom (or
where the user scrolled to).

The read is made long and observable the legitimate way: a small threshold and small read steps (module constants),
and the app's progress hook, which the reading thread calls (and waits for) between two steps of the read: here it
also waits until the pane has been laid out, then lets the test look at the pane (or act on it) mid-read."""
from __future__ import annotations

import asyncio

import pytest

from engine.ops.runs import resolve
from test_tui_support import until
from tui import model
from tui.app import SwiftdeckApp
from tui.logstore import LogFilter, collapse
from tui.widgets.log import LogPane, LogView

LINES = 40_000
TB_AT = 11_000  # the first Traceback's line


def write_console(path) -> list[str]:
    """~3 MB of console text (INFO lines, tqdm bars with \\r updates, step dicts, one Traceback); the lines as the
    pane must show them."""
    raw: list[bytes] = []
    for i in range(LINES):
        if i == TB_AT:
            raw.append(b"Traceback (most recent call last):")
        elif i == TB_AT + 1:
            raw.append(b"RuntimeError: CUDA error: an illegal memory access was encountered")
        elif i % 10 == 1:
            raw.append(f"Train:   1%|#  | {i}/99999 [00:01<05:00]\rTrain:   2%|## | {i}/99999 [00:02<04:59]".encode())
        elif i % 997 == 5:
            raw.append(f"[INFO:swift] needle line {i}".encode())
        else:
            raw.append(f"[INFO:swift] line {i:06d} tokens/s {i * 7 % 10007} mem 21.3 GiB padding 0.{i % 100:02d}"
                       .encode())
    path.write_bytes(b"\n".join(raw) + b"\n")
    return [collapse(r) for r in raw]


def visible_rows(view: LogView) -> list[str]:
    top, height = int(view.scroll_y), view.scrollable_content_region.height
    return [view.store.line(view.line_number(r)) for r in range(top, min(view.total, top + height))]


def status(app) -> str:
    return str(app.query_one("#log-status").render())


class MidRead(SwiftdeckApp):
    """The dashboard, with `on_progress(pane)` called at each progress report of a long read, once the log pane has
    been laid out and has settled (scrolled to the end when it follows)."""

    on_progress = staticmethod(lambda pane: None)

    async def _loading(self, watch, done, total) -> None:
        super()._loading(watch, done, total)
        view = self.query_one(LogView)
        loop = asyncio.get_running_loop()
        end = loop.time() + 10
        while loop.time() < end and not (view.scrollable_content_region.height and (
                not view.follow or view.scroll_y >= view.max_scroll_y)):
            await asyncio.sleep(0.02)
        self.on_progress(self.query_one(LogPane))

    @classmethod
    def on(cls, log, on_progress) -> "MidRead":
        app = cls(resolve(str(log)), remember_theme=False, check_leftovers=False)
        app.on_progress = on_progress
        return app

    async def whole_log_read(self, pilot) -> bool:
        """Waits until the pane holds the whole index (no longer the end shown first)."""
        pane = self.query_one(LogPane)
        return await until(pilot, lambda: pane.store is not None and not getattr(pane.store, "tail_shown", False)
                           and pane.store.complete == LINES, timeout=120)


@pytest.fixture
def long_read(monkeypatch, tmp_path):
    monkeypatch.setenv("SWIFTDECK_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(model, "TAIL_FROM", 1024 * 1024, raising=False)  # "a long log" from 1 MB on
    monkeypatch.setattr(model, "POLL_CHUNK", 128 * 1024)  # the read in small steps, each reporting progress
    log = tmp_path / "console.log"
    expected = write_console(log)
    notes: list[str] = []
    notify = LogPane.notify

    def spy_notify(self, message, *a, **kw):
        notes.append(str(message))
        return notify(self, message, *a, **kw)

    monkeypatch.setattr(LogPane, "notify", spy_notify)
    return log, expected, notes


def test_the_end_shows_first_and_the_whole_log_follows_at_the_bottom(long_read):
    log, expected, notes = long_read
    seen: list[dict] = []

    def on_call(pane: LogPane) -> None:
        view = pane.view
        shown = {"tail": pane.store.tail_shown, "complete": pane.store.complete, "status": status(pane.app),
                 "bottom": visible_rows(view)[-1:] if view.scrollable_content_region.height else [],
                 "follow": view.follow}
        if len(seen) == 2:  # while reading: `t` answers, the filter works on the lines shown
            pane.action_traceback()
            pane.set_filter(LogFilter("needle"))
            shown["filtered"] = [pane.store.line(i) for i in pane.view.view]
            shown["filter_status"] = status(pane.app)
            shown["tail_count"] = pane.store.count
        seen.append(shown)


    async def go():
        app = MidRead.on(log, on_call)
        async with app.run_test(size=(160, 48)) as pilot:
            pane, view = app.query_one(LogPane), app.query_one(LogView)
            assert await app.whole_log_read(pilot)
            # the filter given while reading now runs over the whole log
            assert await until(pilot, lambda: view.view is not None and "filtering" not in status(app), timeout=60)
            got = [pane.store.line(i) for i in view.view]
            assert got == [t for t in expected if "needle" in t] and len(got) > 30
            assert "the last" not in status(app) and "reading" not in status(app)
            pane.set_filter(LogFilter())
            await pilot.pause()
            # every line once, in order, numbered from 0
            assert pane.store.count == LINES
            assert [pane.store.line(i) for i in range(LINES)] == expected
            assert view.follow and visible_rows(view)[-1] == expected[-1]
            assert f"{LINES:,} lines" in status(app)
            await pilot.press("t")
            assert int(view.scroll_y) == TB_AT and visible_rows(view)[0] == expected[TB_AT]

    asyncio.run(go())
    assert len(seen) >= 5  # the read reported progress several times
    assert all(s["tail"] for s in seen)  # the end was shown during the whole read
    assert seen[0]["complete"] < LINES // 2
    # the last line at the bottom while less than the whole file was read
    assert seen[0]["bottom"] == [expected[-1]] and seen[0]["follow"]
    size = f"reading {log.stat().st_size / 1e6:.0f} MB…"
    assert all(size in s["status"] and " %  " in s["status"] and "the last" in s["status"] for s in seen)
    # `t` during the read: a clear answer, no jump; the filter: the lines shown, with a note
    assert any(n.startswith("still reading the log (") and "try again in a moment" in n for n in notes)
    third = seen[2]
    assert third["filtered"] == [t for t in expected[-third["tail_count"]:] if "needle" in t]
    assert "of the last" in third["filter_status"] and "the whole log once read" in third["filter_status"]


def test_a_view_scrolled_up_in_the_end_keeps_its_place_when_the_whole_log_arrives(long_read):
    log, expected, notes = long_read
    kept: list[str] = []

    def on_call(pane: LogPane) -> None:
        view = pane.view
        if not kept and view.follow and view.scroll_y >= view.max_scroll_y > 100:  # at the end, laid out
            view.scroll_to(y=view.max_scroll_y - 100, animate=False, immediate=True)  # the user scrolls up
            kept.append(visible_rows(view)[0])


    async def go():
        app = MidRead.on(log, on_call)
        async with app.run_test(size=(160, 48)) as pilot:
            pane, view = app.query_one(LogPane), app.query_one(LogView)
            assert await app.whole_log_read(pilot)
            await pilot.pause()
            assert kept and not view.follow
            assert visible_rows(view)[0] == kept[0]
            assert expected[int(view.scroll_y)] == kept[0]  # the row is the line's number in the whole log
            assert view.unseen == 0 and "new line" not in status(app)

    asyncio.run(go())


@pytest.mark.parametrize("tail_bytes", [1, 700, 4096, 50_000, 10 ** 9])
def test_the_end_shown_first_is_the_end_of_the_whole_index_line_for_line(tmp_path, tail_bytes):
    """The tail's lines are those the whole index shows for the same bytes (\\r bars, escapes, UTF-8, over-long
    lines, an unterminated last line), and take_index says where they begin in it."""
    import random

    from engine.events import ConsoleAppended
    from tui.logstore import LINE_CAP, LogStore

    rnd = random.Random(tail_bytes)
    pieces = [b"plain line", b"Train: 1%\rTrain: 2%\r", b"\x1b[31mred\x1b[0m \ttab", "caf\u00e9 \u4e2d\u6587".encode(),
              b"x" * (LINE_CAP + 300), b"--api_key sk-secret123", b"", b"\r\r"]
    data = b"".join(rnd.choice(pieces) + b" %d\n" % i for i in range(3000)) + b"Train: 50%|#####\rTrain: 51%|#####"
    log = tmp_path / "console.log"
    log.write_bytes(data)
    store = LogStore(log)
    shown = store.show_tail(tail_bytes)
    tail = [store.line(i) for i in range(store.count)]
    assert shown == len(tail) and store.tail_shown == (shown > 0) == (tail_bytes > 1)  # 1 byte: no whole line
    offset = 0
    while offset < len(data):  # the observer's chunks, in random sizes
        n = rnd.randint(1, 40_000)
        store.add(ConsoleAppended(offset, data[offset:offset + n], False))
        offset += n
        if shown:
            assert [store.line(i) for i in range(store.count)] == tail  # the index grows behind the tail
    assert store.take_index() is None  # not before the reader says the index reaches the end
    store.index_done()
    first = store.take_index() if shown else None
    assert not store.tail_shown and store.take_index() is None
    whole = [store.line(i) for i in range(store.count)]
    assert len(whole) == 3001 and whole[-1].startswith("Train: 51%")
    if shown:
        assert whole[first:] == tail
        assert whole[first:] == [store.line(first + k) for k in range(shown)]
