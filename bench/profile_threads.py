"""Run `swiftdeck ARGS` with every thread under cProfile (not only the main one), and count the frames Textual
draws and who asked for each widget refresh (after a warm-up, SWIFTDECK_PROFILE_WARMUP s, default 8); on exit the
merged profile goes to $SWIFTDECK_PROFILE (pstats) and a summary to $SWIFTDECK_PROFILE.txt.
SWIFTDECK_PROFILE_TIMED=1: no cProfile; the CPU time (thread_time) of a frame, the poll, its apply, the GPU sample,
the end notices and each widget class's render_lines, and the process's and its UI thread's CPU, written on exit or
after SWIFTDECK_PROFILE_WINDOW s. SWIFTDECK_PROFILE_STACK=TEXT: the stack of the first refresh whose line has TEXT.

    python bench/profile_threads.py attach RUN      (bench_tui.py --profile FILE --all-threads runs it for you)
"""
from __future__ import annotations

import cProfile
import os
import pstats
import sys
import threading
import time

OUT = os.environ["SWIFTDECK_PROFILE"]
profiles: list[tuple[str, cProfile.Profile]] = []
lock = threading.Lock()
counts: dict[str, int] = {}
thread_names: dict[str, int] = {}
frames: list[float] = []
stacks: dict[str, str] = {}
_run = threading.Thread.run


TIMED = os.environ.get("SWIFTDECK_PROFILE_TIMED")  # no cProfile: CPU time (thread_time) of a few calls
spent: dict[str, float] = {}


def timed(cls, name: str, label: str | None = None) -> None:
    orig = getattr(cls, name)

    def wrapped(*a, **k):
        t = time.thread_time()
        try:
            return orig(*a, **k)
        finally:
            key = label or f"{cls.__name__}.{name}"
            spent[key] = spent.get(key, 0.0) + time.thread_time() - t

    setattr(cls, name, wrapped)


def run(self):
    if TIMED:
        return _run(self)
    prof = cProfile.Profile()
    with lock:
        profiles.append((self.name, prof))
        key = self.name.split("-")[0]
        thread_names[key] = thread_names.get(key, 0) + 1
    prof.enable()
    try:
        _run(self)
    finally:
        prof.disable()


threading.Thread.run = run


def _run_plain(fn) -> None:
    fn()


def count(cls, name: str) -> None:
    orig = getattr(cls, name)

    def wrapped(*a, **k):
        counts[f"{cls.__name__}.{name}"] = counts.get(f"{cls.__name__}.{name}", 0) + 1
        return orig(*a, **k)

    setattr(cls, name, wrapped)


def main() -> int:
    from textual.app import App
    from textual.screen import Screen
    from textual.widget import Widget

    _display = App._display

    def display(self, *a, **k):  # a frame: when, in the steady state (after the warm-up)
        frames.append(time.time())
        return _display(self, *a, **k)

    App._display = display
    count(Screen, "_refresh_layout")
    count(Widget, "refresh")
    _refresh = Widget.refresh

    def refresh(self, *regions, repaint=True, layout=False, recompose=False):
        f = sys._getframe(1)
        while f and "textual/widget.py" in f.f_code.co_filename:
            f = f.f_back
        where = f"{f.f_code.co_filename.rsplit('/', 2)[-1]}:{f.f_code.co_name}" if f else "?"
        g = f
        while g and ("site-packages/textual" in g.f_code.co_filename or "asyncio" in g.f_code.co_filename):
            g = g.f_back
        ours = f"{g.f_code.co_filename.rsplit('/', 2)[-1]}:{g.f_code.co_name}" if g else "?"
        key = f"refresh {type(self).__name__}#{self.id} layout={layout} from {where} < {ours}"
        counts[key] = counts.get(key, 0) + 1
        if os.environ.get("SWIFTDECK_PROFILE_STACK") and os.environ["SWIFTDECK_PROFILE_STACK"] in key \
                and key not in stacks:
            import traceback
            stacks[key] = "".join(traceback.format_stack()[-12:])
        return _refresh(self, *regions, repaint=repaint, layout=layout, recompose=recompose)

    Widget.refresh = refresh
    from tui import cli

    t0 = time.time()
    start = {"t": t0}
    main_clock = time.pthread_getcpuclockid(threading.main_thread().ident)

    def warmed() -> None:  # the counts are of the steady state: after the warm-up (bench_tui's 8 s)
        time.sleep(float(os.environ.get("SWIFTDECK_PROFILE_WARMUP", "8")))
        counts.clear()
        frames.clear()
        spent.clear()
        start["main"] = time.clock_gettime(main_clock)
        start["proc"] = sum(os.times()[:2])
        start["t"] = time.time()
        window = float(os.environ.get("SWIFTDECK_PROFILE_WINDOW", "0"))
        if TIMED and window:  # the report after `window` s, for a dashboard that is killed rather than quit
            time.sleep(window)
            timed_report(time.time() - start["t"], time.clock_gettime(main_clock) - start["main"],
                         sum(os.times()[:2]) - start["proc"])

    def timed_report(wall: float, main_cpu: float, proc_cpu: float) -> None:
        with open(OUT + ".txt", "w") as f:
            f.write(f"wall {wall:.1f} s; frames {len(frames)} ({len(frames) / wall:.2f}/s); process "
                    f"{100 * proc_cpu / wall:.2f} % of a core, its UI thread {100 * main_cpu / wall:.2f} %\n")
            for k, v in sorted(spent.items(), key=lambda kv: -kv[1]):
                f.write(f"{k}: {v:.3f} s CPU = {100 * v / wall:.2f} % of a core\n")
            for k, v in sorted(counts.items()):
                f.write(f"{k}: {v} ({v / wall:.2f}/s)\n")

    threading.Thread(target=_run_plain, args=(warmed,), daemon=True).start()
    main_prof = cProfile.Profile()
    if TIMED:
        from tui.app import SwiftdeckApp
        from tui.model import RunWatch
        from tui.gpufeed import GpuFeed
        from tui import endnotice

        timed(Screen, "_compositor_refresh", "frame (Screen._compositor_refresh)")
        timed(SwiftdeckApp, "_apply", "apply a poll (UI thread)")
        timed(SwiftdeckApp, "_show_gpu", "show GPU (UI thread)")
        timed(RunWatch, "poll", "poll (worker)")
        timed(App, "_display", "  of a frame: App._display (to the terminal)")
        from textual._compositor import Compositor

        timed(Compositor, "render_update", "  of a frame: Compositor.render_update")
        render_lines = Widget.render_lines

        def widget_lines(self, crop):
            t = time.thread_time()
            try:
                return render_lines(self, crop)
            finally:
                key = f"    render_lines {type(self).__name__}"
                spent[key] = spent.get(key, 0.0) + time.thread_time() - t

        Widget.render_lines = widget_lines
        timed(GpuFeed, "sample", "GPU sample (worker)")
        timed(endnotice.EndWatch, "check", "end notices (worker)")
    else:
        main_prof.enable()
    try:
        args = sys.argv[1:]
        if "tui.cli" in args:  # PYTHON -m tui.cli ARGS (bench_overhead's dashboard command after a prefix)
            args = args[args.index("tui.cli") + 1:]
        return cli.main(args)
    finally:
        main_prof.disable()
        wall = time.time() - start["t"]
        main_cpu = time.thread_time() - start["main"]
        proc_cpu = sum(os.times()[:2]) - start["proc"]
        if TIMED:
            timed_report(wall, main_cpu, proc_cpu)
            return
        st = pstats.Stats(main_prof)
        for _, p in profiles:
            try:
                st.add(p)
            except TypeError:  # a thread that never ran
                pass
        st.dump_stats(OUT)
        with open(OUT + ".txt", "w") as f:
            f.write(f"wall {wall:.1f} s; threads started: {thread_names}\n")
            f.write(f"frames: {len(frames)} ({len(frames) / wall:.2f}/s); at (s after the warm-up): "
                    f"{' '.join(f'{t - start[chr(116)]:.2f}' for t in frames[:40])}\n")
            for k, v in sorted(counts.items()):
                f.write(f"{k}: {v} ({v / wall:.2f}/s)\n")
            for k, v in stacks.items():
                f.write(f"--- {k}\n{v}\n")
            pstats.Stats(OUT, stream=f).sort_stats("tottime").print_stats(40)
            pstats.Stats(OUT, stream=f).sort_stats("cumulative").print_stats(60)


if __name__ == "__main__":
    sys.exit(main())
