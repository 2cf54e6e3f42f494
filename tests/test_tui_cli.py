"""`swiftdeck` entry point: which commands open the dashboard, bad input, import weight, `swiftdeck serve`."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import psutil
import pytest

from tui.cli import main, route

REPO = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "transformers", "swift", "peft", "datasets", "modelscope", "accelerate")


@pytest.mark.parametrize("argv,kind", [
    ([], "dashboard"), (["--output-dir", "out"], "dashboard"), (["--theme=swiftdeck-light"], "dashboard"),
    (["attach", "sft-1"], "attach"), (["demo"], "demo"), (["demo", "--epochs", "2"], "demo"),
    (["serve", "--port", "9001"], "serve"),
    (["demo", "--build-only"], "engine"), (["runs"], "engine"), (["stop", "x"], "engine"), (["-h"], "engine"),
    (["train", "--", "--model", "m"], "engine"), (["checkpoints", "output"], "engine"),
])
def test_route(argv, kind):
    assert route(argv)[0] == kind


def test_route_keeps_options():
    _, ns = route(["attach", "abc", "--theme", "swiftdeck-contrast", "--output-dir", "o"])
    assert (ns.run, ns.theme, ns.output_dir) == ("abc", "swiftdeck-contrast", Path("o"))
    _, ns = route(["serve"])
    assert (ns.host, ns.port) == ("127.0.0.1", 8000)


@pytest.mark.parametrize("argv,message", [
    (["--theme", "neon"], "unknown theme 'neon'"),
    (["--output-dir", "/no/such/folder"], "no such folder: /no/such/folder"),
    (["--theme", "swiftdeck-dark", "--bogus"], "unexpected argument(s): --bogus"),
    (["attach", "nope-nope", "--theme", "swiftdeck-dark"], "no swiftdeck run 'nope-nope'"),
])
def test_bad_input_is_one_line(argv, message, capsys, home):
    assert main(argv) == 2  # (stdout is not a terminal here: attach goes to the engine's follow)
    err = capsys.readouterr().err.strip()
    assert err.startswith("swiftdeck: ") and message in err and "\n" not in err


def test_the_dashboard_process_imports_no_ml_stack():
    """`python -X importtime`: everything the dashboard imports, checked for torch/transformers/swift."""
    code = ("import tui.cli, tui.app, tui.screens.launch, tui.screens.runs, engine.swift_args, engine.ops.launch, engine.ops.jobs, engine.ops.checkpoints, "
            "engine.dataset_check, engine.gpu, engine.supervisor, engine.checkpoints, engine.ingest; "
            "tui.cli.route([])")
    proc = subprocess.run([sys.executable, "-X", "importtime", "-c", code], cwd=REPO, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    imported = {line.split("|")[-1].strip().split(".")[0] for line in proc.stderr.splitlines()
                if line.startswith("import time:") and "|" in line}
    assert "textual" in imported and "tui" in imported  # the probe really saw the imports
    assert not imported & set(HEAVY), imported & set(HEAVY)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_serve_binds_loopback_and_serves_the_app(home):
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "tui.cli", "serve", "--port", str(port)], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        status = None
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2).close()
                break
            except urllib.error.HTTPError as exc:
                status = exc.code
                break
            except OSError:
                time.sleep(0.3)
        assert status == 403  # no token, no page (tests/test_tui_serve.py: the token, Origin and Host checks)
        listening = [c.laddr for c in psutil.Process(proc.pid).net_connections() if c.status == "LISTEN"]
        assert listening and all(addr.ip == "127.0.0.1" for addr in listening)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=20)
