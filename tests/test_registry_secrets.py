"""Issue 14.5: secrets given on the command line or in the environment are masked in the stored record and in
the log text swiftdeck shows; the process still gets the real values; the registry is private (0700 / 0600)."""
from __future__ import annotations

import secrets
import stat
import sys

import pytest
from registry_support import wait_for

from engine import cli, runs, supervisor
from engine.redact import MASK, redact_argv, redact_env, redact_text

# Logs its arguments the way ms-swift does, checks that it got the real values, then fails naming the key.
FAKE_DEPLOY = """
import os, sys
argv = sys.argv[1:]
key, token = argv[argv.index('--api_key') + 1], argv[argv.index('--hub_token') + 1]
print(f"[INFO:swift] args: DeployArguments(model='m', api_key={key!r}, hub_token={token!r}, port=8000)", flush=True)
assert os.environ['HF_TOKEN'] == token and os.environ['SWIFTDECK_RUN_ID']
raise ValueError(f'The model server refused api_key={key}')
"""


def _mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_secrets_are_masked_in_the_record_and_the_shown_log(home, tmp_path, capsys):
    key, token = f"sk-{secrets.token_hex(16)}", f"hf_{secrets.token_hex(17)}"
    argv = [sys.executable, "-c", FAKE_DEPLOY, "--api_key", key, "--hub_token", token, "--port", "8000"]
    rec = supervisor.launch_argv("deploy", argv, cwd=tmp_path, env={"HF_TOKEN": token})
    assert wait_for(lambda: not runs.load(rec.id).active)
    rec = runs.load(rec.id)

    record = (rec.folder / "record.json").read_text()
    assert key not in record and token not in record
    assert rec.argv[3:] == ["--api_key", MASK, "--hub_token", MASK, "--port", "8000"] and rec.env["HF_TOKEN"] == MASK
    console = rec.console_log.read_text()
    assert f"api_key='{key}'" in console  # the process got the real values (and passed its checks) ...
    assert "AssertionError" not in console and "refused api_key=" in console
    assert all(key not in redact_text(line) and token not in redact_text(line) for line in console.splitlines())

    assert cli.main(["diagnose", rec.id]) == 0  # ... and what swiftdeck shows of the log has them masked
    shown = capsys.readouterr().out
    assert "refused api_key=***" in shown and key not in shown
    assert cli.main(["diagnose", "--json", rec.id]) == 0
    shown = capsys.readouterr().out
    assert "api_key=***" in shown and key not in shown
    assert cli.main(["runs", "--json"]) == 0
    shown = capsys.readouterr().out
    assert key not in shown and token not in shown


def test_the_registry_is_private(home, tmp_path):
    home.chmod(0o755)  # as an older swiftdeck left it
    rec = supervisor.launch_argv("deploy", [sys.executable, "-c", "print('hi')", "--api_key", "sk-x"], cwd=tmp_path)
    assert wait_for(lambda: not runs.load(rec.id).active)
    for folder in (home, runs.runs_dir(), rec.folder):
        assert _mode(folder) == 0o700, folder
    files = sorted(p.name for p in rec.folder.iterdir())
    assert {"record.json", "console.log", "runner.log", ".lock", "secrets.json"} <= set(files)
    for path in rec.folder.iterdir():
        assert _mode(path) == 0o600, path


def test_secret_names():
    argv = ["swift", "sft", "--hub-token=hf_1", "--swanlab_token", "t", "--swanlab_secret", "s", "--api_key", "k",
            "--max_new_tokens", "64", "--vera_projection_prng_key", "3", "--ssl_keyfile", "/k.pem", "--lr", "1"]
    assert redact_argv(argv) == ["swift", "sft", "--hub-token=***", "--swanlab_token", MASK, "--swanlab_secret", MASK,
                                 "--api_key", MASK, "--max_new_tokens", "64", "--vera_projection_prng_key", "3",
                                 "--ssl_keyfile", "/k.pem", "--lr", "1"]
    assert redact_argv(["--api_key", "--port", "1"]) == ["--api_key", "--port", "1"]  # no value given
    assert redact_env({"HF_TOKEN": "x", "CUDA_VISIBLE_DEVICES": "0", "WANDB_API_KEY": "y"}) == \
        {"HF_TOKEN": MASK, "CUDA_VISIBLE_DEVICES": "0", "WANDB_API_KEY": MASK}
    line = ("{'loss': 1.2, 'token_acc': 0.5} TrainArguments(hub_token=None, pad_token='<p>', "
            "swanlab_token=\"s1\") run sh: `python sft.py --model m --api_key sk-1 --port 1` "
            "{\"api_key\": \"k2\"} Authorization: Bearer abcdefgh12345")
    assert redact_text(line) == (
        "{'loss': 1.2, 'token_acc': 0.5} TrainArguments(hub_token=None, pad_token='<p>', "
        "swanlab_token=\"***\") run sh: `python sft.py --model m --api_key *** --port 1` "
        "{\"api_key\": \"***\"} Authorization: Bearer ***")


def test_a_command_copied_from_a_record_keeps_no_masked_secret(home, tmp_path):
    """Relaunching a recorded command as stored would start it with *** as the key: refused in one line."""
    rec = runs.create("deploy", ["swift", "deploy", "--api_key", "sk-real"], "/tmp")
    with pytest.raises(runs.MaskedSecret, match=r"^--api_key is \*\*\*, a secret masked in a stored record"):
        supervisor.launch_argv("deploy", runs.load(rec.id).argv, cwd=tmp_path)
    assert [p.name for p in runs.runs_dir().iterdir()] == [rec.id]
