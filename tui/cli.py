"""Console entry point `swiftdeck`. The whole command tree is engine.cli's one parser; the commands that show the
dashboard (none, `attach`, `demo`, `serve`) open it here when there is a terminal, everything else runs in
engine.cli.

Import-light on purpose: nothing heavy is imported before we know the command, and the dashboard process never
imports torch, transformers or swift.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from engine import cli
from engine.errors import SwiftdeckError

EXIT_USAGE = 2


class UsageError(SwiftdeckError):
    pass


def route(argv: list[str]) -> tuple[str, argparse.Namespace | list[str]]:
    """('dashboard' | 'attach' | 'demo' | 'serve', options) or ('engine', argv)."""
    if any(a in ("-h", "--help") for a in argv):
        return "engine", argv
    ns = cli.parse(argv)
    return (ns.face, ns) if ns.face else ("engine", argv)


def _interactive() -> bool:
    """A terminal, or the browser driver of `swiftdeck serve` (its app runs behind a pipe)."""
    return sys.stdout.isatty() or bool(os.environ.get("TEXTUAL_DRIVER"))


def _check_theme(name: str | None) -> None:
    if name is None:
        return
    import themes
    from textual.theme import BUILTIN_THEMES

    known = [*themes.NAMES, *BUILTIN_THEMES]
    if name not in known:
        raise UsageError(f"unknown theme {name!r}; known: {', '.join(known)}")


def open_dashboard(source, ns) -> int:
    from tui.app import SwiftdeckApp

    app = SwiftdeckApp(source, output_dir=ns.output_dir, theme=ns.theme, readonly=ns.readonly)
    still_running = app.run()
    if still_running:
        print(f"swiftdeck closed; run {still_running} keeps running. "
              f"Watch it: swiftdeck attach {still_running}   stop it: swiftdeck stop {still_running}")
    return 0


def _dashboard(kind: str, ns: argparse.Namespace) -> int:
    from engine.ops.runs import RunSource, newest_run, resolve

    _check_theme(ns.theme)
    given = ns.output_dir_given = ns.output_dir is not None
    ns.output_dir = (ns.output_dir or Path("output")).expanduser().resolve()
    if given and not ns.output_dir.is_dir():
        raise UsageError(f"no such folder: {ns.output_dir}")
    if kind == "serve":
        return serve(ns)
    if kind in ("attach", "demo") and not _interactive():  # scripts and CI get the plain follow output
        return cli.run(ns)
    if kind == "dashboard":
        return open_dashboard(newest_run(ns.output_dir, under=given), ns)
    if kind == "attach":
        return open_dashboard(resolve(ns.run), ns)
    print("building the offline demo model (cached after the first time) ...")
    rec = cli.start_demo(epochs=ns.epochs, kind=ns.kind, adapter=ns.adapter)
    return open_dashboard(RunSource.of_record(rec), ns)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        kind, ns = route(argv)
        if kind == "engine":
            return cli.main(ns)
        return _dashboard(kind, ns)
    except SwiftdeckError as exc:
        return cli.report_error(str(exc), as_json=cli.wants_json(argv), code=EXIT_USAGE)
    except KeyboardInterrupt:
        return 130


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
    if ns.output_dir_given:
        cmd += ["--output-dir", str(ns.output_dir)]
    if ns.theme:
        cmd += ["--theme", ns.theme]
    if ns.readonly:
        cmd += ["--readonly"]
    serve_app(cmd, host=ns.host, port=ns.port)
    return 0


if __name__ == "__main__":
    sys.exit(main())
