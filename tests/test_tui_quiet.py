"""The dashboard's steady cost while it watches a run (issue 9): one poll draws at most one frame, a poll with
nothing new draws none, and a growing log does not relayout the screen. Real Textual (Pilot) on the recorded
ms-swift 4.6 run; the frames are counted where Textual draws them (App._display) and lays out (Screen._refresh_layout).
"""
from __future__ import annotations

import asyncio
import json

from test_tui_support import fixed_clock, make_run, settled, until
from tui.app import SwiftdeckApp
from tui.model import RunSource
from tui.widgets.header import RunHeader
from tui.widgets.log import LogPane, LogView
from tui.widgets.loss import Chart, LossPane


class Counter:
    """Frames drawn, screen layouts and polls applied, counted from start()."""

    def __init__(self, app: SwiftdeckApp) -> None:
        self.app, self.frames, self.layouts, self.polls = app, 0, 0, 0
        self.counting = False
        display, apply = app._display, app._apply

        def counted_display(*a, **k):
            self.frames += self.counting
            return display(*a, **k)

        def counted_apply(*a, **k):
            self.polls += self.counting
            return apply(*a, **k)

        app._display, app._apply = counted_display, counted_apply
        screen = app.screen_stack[0]
        layout = screen._refresh_layout

        def counted_layout(*a, **k):
            self.layouts += self.counting
            return layout(*a, **k)

        screen._refresh_layout = counted_layout

    def start(self) -> None:
        self.frames = self.layouts = self.polls = 0
        self.counting = True


def app_for(rec, **kw) -> SwiftdeckApp:
    return SwiftdeckApp(RunSource.of_record(rec), clock=fixed_clock, remember_theme=False, check_leftovers=False,
                        **kw)


def test_polls_with_nothing_new_draw_no_frame(home, tmp_path, swift_fixtures):
    rec = make_run(swift_fixtures, tmp_path, "finished")

    async def go():
        app = app_for(rec, poll_s=0.1, gpu_s=0.1)
        async with app.run_test(size=(160, 48)) as pilot:
            count = Counter(app)
            await settled(pilot)
            assert await until(pilot, lambda: "finished" in app.query_one(RunHeader).render_info().plain)
            assert await until(pilot, lambda: app.last_gpu_view is not None)
            await pilot.pause(0.5)  # the first polls' pictures are drawn
            count.start()
            assert await until(pilot, lambda: count.polls >= 6, 10)
            await pilot.pause(0.1)
            assert count.frames == 0, f"{count.frames} frames for {count.polls} polls that found nothing new"
    asyncio.run(go())


def test_new_lines_draw_one_frame_a_poll_and_no_relayout(home, tmp_path, swift_fixtures):
    """A training that logs: each poll shows the new lines and step (the log follows its end) in one frame, without
    laying the screen out again."""
    rec = make_run(swift_fixtures, tmp_path, "running")
    jsonl = rec.run_dir and f"{rec.run_dir}/logging.jsonl"

    async def go():
        app = app_for(rec, poll_s=0.2, gpu_s=0.2)
        async with app.run_test(size=(160, 48)) as pilot:
            count = Counter(app)
            await settled(pilot)
            pane, view = app.query_one(LogPane), app.query_one(LogView)
            assert await until(pilot, lambda: view.follow and view.scroll_y == view.max_scroll_y > 0)
            await pilot.pause(0.5)
            count.start()
            for step in range(21, 25):
                lines = pane.store.complete
                rec_ = {"loss": 1.0 / step, "grad_norm": 1.0, "learning_rate": 1e-4, "epoch": step / 8,
                        "global_step/max_steps": f"{step}/24"}
                with open(rec.console_log, "ab") as fh:
                    fh.write(f"\rTrain:  90%|#########  | {step}/24 [00:05<00:00,  7.16it/s]\n"
                             f"{ {k: str(v) for k, v in rec_.items()} }\n".encode())
                with open(jsonl, "a") as fh:
                    fh.write(json.dumps(rec_) + "\n")
                assert await until(pilot, lambda: pane.store.complete >= lines + 2
                                   and f"{step}/24" in app.query_one(RunHeader).render_info().plain, 10)
                assert await until(pilot, lambda: view.scroll_y == view.max_scroll_y
                                   and view.max_scroll_y == view.virtual_size.height - view.scrollable_content_region.height
                                   == pane.store.count - view.scrollable_content_region.height, 5)
            await pilot.pause(0.1)
            assert count.layouts == 0, f"{count.layouts} screen layouts for {count.polls} polls"
            assert 0 < count.frames <= count.polls, f"{count.frames} frames for {count.polls} polls"
            # the last line written is on screen, at the bottom of the log
            bottom = view.render_line(view.scrollable_content_region.height - 1).text
            assert f"'loss': '{1 / 24}'" in bottom, bottom
    asyncio.run(go())


def test_chart_redraws_join_the_poll_frame(home, tmp_path, swift_fixtures):
    """Paced by the polls, the loss chart sets no timer of its own: a throttled redraw waits for the next poll,
    which draws it once it is due."""
    rec = make_run(swift_fixtures, tmp_path, "running")
    jsonl = f"{rec.run_dir}/logging.jsonl"

    async def go():
        app = app_for(rec, poll_s=0.2, gpu_s=0.2)
        async with app.run_test(size=(160, 48)) as pilot:
            await settled(pilot)
            loss, chart = app.query_one(LossPane), app.query_one("#loss-chart", Chart)
            assert await until(pilot, lambda: len(loss.loss) >= 1 and chart.lines)
            assert loss.paced
            drawn = len(chart.lines[0].xs)
            with open(jsonl, "a") as fh:
                fh.write(json.dumps({"loss": 0.5, "global_step/max_steps": "21/24"}) + "\n")
            assert await until(pilot, lambda: len(loss.loss) == drawn + 1, 10)
            assert loss._timer is None  # no timer: the next poll after MAIN_EVERY_S draws it
            assert await until(pilot, lambda: len(chart.lines[0].xs) == drawn + 1, 5)
    asyncio.run(go())


def test_end_watch_reads_only_active_or_changed_records(home, tmp_path, swift_fixtures):
    """Once a second the dashboard looks for runs that ended: an ended run's record is read again only when its
    file changed, an active one every time (its processes may end without a write); a run that ends is still told."""
    from engine import runs
    from tui import endnotice

    done = [make_run(swift_fixtures, tmp_path / state, state) for state in ("finished", "failed")]
    live = make_run(swift_fixtures, tmp_path / "live", "running")
    watch = endnotice.EndWatch()
    assert watch.check() == [] and watch.active == {live.id}
    first = watch.reads
    assert first == 3
    assert watch.check() == [] and watch.reads == first + 1  # the active one only
    runs.update(done[0].id, lambda r: setattr(r, "label", "renamed"))  # a changed file is read again
    assert watch.check() == [] and watch.reads == first + 3
    runs.update(live.id, lambda r: (setattr(r, "status", "finished"), setattr(r, "exit_code", 0),
                                    setattr(r, "ended_at", r.started_at + 90)))
    assert [(r.id, n.outcome) for r, n in watch.check()] == [(live.id, "finished")]
    assert watch.active == set()
    reads = watch.reads
    assert watch.check() == [] and watch.reads == reads  # nothing active, nothing changed: stats only

