"""`swiftdeck` as a user types it (issue 15 item 18): help that works, JSON errors with --json, `diagnose` on a file
that is no console log, hints without placeholders. Real subprocesses of the CLI."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from engine import diagnose as dg
from engine import runs

REPO = Path(__file__).resolve().parents[1]
FAILURES = REPO / "tests" / "data" / "failures"


def swiftdeck(*args: str, home: Path, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "SWIFTDECK_HOME": str(home)}
    return subprocess.run([sys.executable, "-m", "tui.cli", *args], capture_output=True, text=True, env=env,
                          timeout=120, cwd=str(cwd or REPO))


def test_attach_help_works_without_its_run(home):
    proc = swiftdeck("attach", "--help", home=home)
    assert proc.returncode == 0, proc.stderr
    assert "usage: swiftdeck attach" in proc.stdout and "required" not in proc.stdout + proc.stderr


def test_demo_help_shows_epochs_and_theme(home):
    proc = swiftdeck("demo", "--help", home=home)
    assert proc.returncode == 0 and "--epochs" in proc.stdout and "--theme" in proc.stdout


def test_runs_lists_the_label(home):
    rec = runs.create("sft", ["swift", "sft", "--model", "m"], str(home), label="my-label")
    runs.update(rec.id, lambda r: setattr(r, "status", "finished"))
    proc = swiftdeck("runs", home=home)
    header, row = proc.stdout.splitlines()[:2]
    assert "LABEL" in header.split() and "my-label" in row.split()


@pytest.mark.parametrize("argv", [
    ["diagnose", "no-such-run", "--json"],
    ["runs", "--json", "--bogus"],
    ["metrics", "no-such-run", "--format", "jsonl"],
    ["checkpoints", "/no/such/folder", "--json"],
])
def test_json_errors_are_json_on_stderr_with_a_nonzero_exit(argv, home):
    proc = swiftdeck(*argv, home=home)
    assert proc.returncode != 0 and proc.stdout == ""
    err = json.loads(proc.stderr)
    assert isinstance(err["error"], str) and err["error"] and err["exit_code"] == proc.returncode
    plain = swiftdeck(*[a for a in argv if a not in ("--json", "--format", "jsonl")], home=home)
    assert plain.stderr.startswith("swiftdeck: ")  # without --json: one plain line


def test_diagnose_on_a_dataset_says_it_is_not_a_log(home, tmp_path):
    data = tmp_path / "train.jsonl"
    data.write_text('{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}\n' * 3)
    proc = swiftdeck("diagnose", str(data), home=home)
    assert proc.returncode != 0
    assert "not a console log" in proc.stderr and "check-dataset" in proc.stderr and "unknown" not in proc.stdout
    prose = tmp_path / "notes.txt"
    prose.write_text("shopping list\napples\npears\n")
    proc = swiftdeck("diagnose", str(prose), "--json", home=home)
    assert proc.returncode != 0 and "not a console log" in json.loads(proc.stderr)["error"]
    real = swiftdeck("diagnose", str(FAILURES / "dataset_empty_after_filter.log"), "--exit-code", "1", home=home)
    assert real.returncode == 0 and "dataset_empty_after_filter" in real.stdout  # a real log still is one


def test_check_dataset_hint_names_the_runs_model():
    meta = json.loads((FAILURES / "dataset_empty_after_filter.json").read_text())
    d = dg.diagnose_file(FAILURES / "dataset_empty_after_filter.log", exit_code=meta["exit_code"],
                         args=meta["command"][2:])
    hint = next(r for r in d.remedies if "check-dataset" in r)
    assert "--model MODEL" not in hint and "--model /tmp/diagrec/home/demo/tiny-qwen2" in hint
    bare = dg.diagnose_file(FAILURES / "dataset_empty_after_filter.log", exit_code=meta["exit_code"])
    assert all("MODEL" not in r for r in bare.remedies)


def _serving_job(kind: str, home: Path) -> runs.RunRecord:
    """A real detached process recorded as a `kind` job (a stand-in for `swift deploy`: the words are swiftdeck's)."""
    from engine import supervisor

    code = "import time\nprint('INFO:     Uvicorn running on http://127.0.0.1:8000', flush=True)\ntime.sleep(120)\n"
    return supervisor.launch_argv(kind, [sys.executable, "-c", code], cwd=home)


def test_stop_of_a_deploy_speaks_of_serving_not_checkpoints(home):
    rec = _serving_job("deploy", home)
    try:
        proc = swiftdeck("stop", rec.id, "--timeout", "20", home=home)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert "checkpoint" not in proc.stdout and "stops serving" in proc.stdout
        assert f"stopping {rec.id}:" in proc.stdout and f"run {rec.id}" not in proc.stdout
        assert f"deploy {rec.id}" not in proc.stdout  # "deploy deploy-…"
        assert runs.load(rec.id).status == "stopped"
        followed = swiftdeck("attach", rec.id, home=home)  # no terminal: the plain follow output
        assert followed.stdout.strip().splitlines()[-1] == f"run {rec.id} stopped by you (SIGINT)", followed.stdout
        assert "exit code -2" not in followed.stdout and "exit -2" not in followed.stdout
    finally:
        if runs.load(rec.id).active:
            from engine import supervisor

            supervisor.stop(runs.load(rec.id), force=True, timeout_s=10)


def test_serve_banner_and_page_say_swiftdeck_not_the_python_command(home):
    import signal
    import socket
    import urllib.request

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "PYTHONPATH": str(REPO), "SWIFTDECK_HOME": str(home)}
    proc = subprocess.Popen([sys.executable, "-m", "tui.cli", "serve", "--port", str(port)], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        banner = [proc.stdout.readline(), proc.stdout.readline()]  # blocks until printed (or the process ends)
        assert banner[0].startswith("swiftdeck serve: open http://127.0.0.1:"), banner
        url = banner[0].split("open ", 1)[1].strip()
        with urllib.request.urlopen(url, timeout=20) as r:
            page = r.read().decode()
        for text in (*banner, page):
            assert "python" not in text and "tui.cli" not in text and ".venv" not in text, text
        assert "<title>swiftdeck</title>" in page
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=20)


def test_chat_settings_say_where_the_system_prompt_comes_from():
    from tui.chat.settings import ChatSettings

    words = ChatSettings().describe()
    assert "system: from the checkpoint" in words and "checkpoint's" not in words


def test_json_callers_get_warnings_as_json_too(home):
    from test_registry_bad_records import _bad_records

    good, _, _ = _bad_records()
    proc = swiftdeck("runs", "--json", home=home)
    assert proc.returncode == 0 and [r["id"] for r in json.loads(proc.stdout)] == [good.id]
    (warning,) = [json.loads(line) for line in proc.stderr.splitlines()]
    assert "2 unreadable run records" in warning["warning"]
