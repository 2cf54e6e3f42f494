"""Console entry point `swiftdeck`: dashboard commands open the Textual app; the rest is engine.cli.

    swiftdeck [--output-dir DIR] [--theme NAME] [--readonly]   the dashboard on the most recent run
    swiftdeck attach RUN [--theme NAME] [--readonly]  the dashboard on one run (plain follow output when not a TTY)
    swiftdeck demo [--epochs N]                    start the offline demo run, then the dashboard on it
    swiftdeck serve [--port N] [--readonly] [...]  the same dashboard in a browser (127.0.0.1, a token in the URL)

--readonly: watch only; nothing that starts, stops, deletes, strips, merges, deploys, launches, resumes or relaunches.

Import-light on purpose: nothing heavy is imported before we know the command, and the dashboard process never
imports torch, transformers or swift.
"""
from __future__ import annotations

from engine.errors import SwiftdeckError
import argparse
import sys
from pathlib import Path

DASHBOARD_FLAGS = ("--output-dir", "--theme", "--readonly")
EXIT_USAGE = 2


class UsageError(SwiftdeckError):
    pass


def _dashboard_parser(prog: str = "swiftdeck") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, add_help=False)
    p.add_argument("--output-dir", type=Path, default=None, help="where to look for ms-swift run folders")
    p.add_argument("--theme", default=None, help="swiftdeck-dark | swiftdeck-light | swiftdeck-contrast | ...")
    p.add_argument("--readonly", action="store_true", help="watch only: no launch, stop, delete, merge, deploy ...")
    return p


def route(argv: list[str]) -> tuple[str, argparse.Namespace | list[str]]:
    """('dashboard' | 'attach' | 'demo' | 'serve', options) or ('engine', argv)."""
    head = argv[0] if argv else None
    if head is None or head.split("=")[0] in DASHBOARD_FLAGS:
        ns, rest = _dashboard_parser().parse_known_args(argv)
        if rest:
            raise UsageError(f"unexpected argument(s): {' '.join(rest)}")
        return "dashboard", ns
    if head == "attach":
        p = _dashboard_parser("swiftdeck attach")
        p.add_argument("run")
        ns, rest = p.parse_known_args(argv[1:])
        if rest:
            raise UsageError(f"unexpected argument(s): {' '.join(rest)}")
        return "attach", ns
    if head == "demo" and not any(a in ("--build-only", "--json", "-h", "--help") for a in argv[1:]):
        p = _dashboard_parser("swiftdeck demo")
        p.add_argument("--epochs", type=int, default=None)
        ns, rest = p.parse_known_args(argv[1:])
        if rest:
            raise UsageError(f"unexpected argument(s): {' '.join(rest)}")
        return "demo", ns
    if head == "serve":
        ns, rest = serve_parser().parse_known_args(argv[1:])
        if rest:
            raise UsageError(f"unexpected argument(s): {' '.join(rest)}")
        return "serve", ns
    return "engine", argv


def _interactive() -> bool:
    """A terminal, or the browser driver of `swiftdeck serve` (its app runs behind a pipe)."""
    import os

    return sys.stdout.isatty() or bool(os.environ.get("TEXTUAL_DRIVER"))


def _check_theme(name: str | None) -> None:
    if name is None:
        return
    import themes
    from textual.theme import BUILTIN_THEMES

    known = [*themes.NAMES, *BUILTIN_THEMES]
    if name not in known:
        raise UsageError(f"unknown theme {name!r}; known: {', '.join(known)}")


def open_dashboard(source, *, output_dir: Path | None, theme: str | None, readonly: bool = False) -> int:
    from tui.app import SwiftdeckApp

    app = SwiftdeckApp(source, output_dir=output_dir, theme=theme, readonly=readonly)
    still_running = app.run()
    if still_running:
        print(f"swiftdeck closed; run {still_running} keeps running. "
              f"Watch it: swiftdeck attach {still_running}   stop it: swiftdeck stop {still_running}")
    return 0


def _most_recent(output_dir: Path):
    from tui.model import discover

    found = discover(output_dir)
    return found[0] if found else None


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        kind, ns = route(argv)
        if kind == "engine":
            from engine import cli

            return cli.main(ns)
        _check_theme(ns.theme)
        output_dir = (ns.output_dir or Path("output")).expanduser().resolve()
        if ns.output_dir is not None and not output_dir.is_dir():
            raise UsageError(f"no such folder: {output_dir}")
        if kind == "dashboard":
            return open_dashboard(_most_recent(output_dir), output_dir=output_dir, theme=ns.theme,
                                  readonly=ns.readonly)
        if kind == "attach":
            if not _interactive():
                from engine import cli

                return cli.main(["attach", ns.run])
            from tui.model import SourceError, resolve

            try:
                source = resolve(ns.run)
            except SourceError as exc:
                raise UsageError(str(exc)) from None
            return open_dashboard(source, output_dir=output_dir, theme=ns.theme, readonly=ns.readonly)
        if kind == "demo":
            from engine import cli

            if not _interactive():  # scripts and CI keep the engine's plain follow output
                return cli.main(["demo", *(["--epochs", str(ns.epochs)] if ns.epochs else [])])
            print("building the offline demo model (cached after the first time) ...")
            rec = cli.start_demo(epochs=ns.epochs)
            from tui.model import RunSource

            return open_dashboard(RunSource.of_record(rec), output_dir=output_dir, theme=ns.theme,
                                  readonly=ns.readonly)
        return serve(ns)
    except SwiftdeckError as exc:
        print(f"swiftdeck: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130


def serve_parser() -> argparse.ArgumentParser:
    p = _dashboard_parser("swiftdeck serve")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1; others warn)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--run", default=None, help="open this run (default: the most recent)")
    return p


def serve(ns) -> int:
    """The same dashboard in a browser through textual-serve: 127.0.0.1 unless told otherwise, a token always."""
    import importlib.util

    if importlib.util.find_spec("textual_serve") is None:
        raise UsageError("`swiftdeck serve` needs textual-serve: pip install textual-serve")
    from tui.serve import LOOPBACK, serve as serve_app

    if ns.host not in LOOPBACK:
        print(f"warning: serving on {ns.host}: whoever can reach it and has the URL with the token controls your "
              "runs (and can run code as you)", file=sys.stderr)
    cmd = [sys.executable, "-m", "tui.cli"]
    if ns.run:
        cmd += ["attach", ns.run]
    if ns.output_dir:
        cmd += ["--output-dir", str(ns.output_dir.expanduser().resolve())]
    if ns.theme:
        cmd += ["--theme", ns.theme]
    if ns.readonly:
        cmd += ["--readonly"]
    serve_app(cmd, host=ns.host, port=ns.port)
    return 0


if __name__ == "__main__":
    sys.exit(main())
