"""engine.textsafe.printable, and that text taken from logs reaches the terminal only through it: a console log with
an OSC 52 clipboard write, cursor/CSI sequences and binary junk through the real `swiftdeck diagnose` and
`swiftdeck attach` (subprocesses), and through engine.diagnose's fields."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import unicodedata
from pathlib import Path

import pytest

from engine import diagnose as dg
from engine import runs
from engine.textsafe import printable

REPO = Path(__file__).resolve().parents[1]
FAILURES = Path(__file__).parent / "data" / "failures"

OSC52 = b"\x1b]52;c;ZWNobyBwd25lZCA+IH4vLmJhc2hyYw==\x07"  # would put "echo pwned > ~/.bashrc" on the clipboard
TITLE = b"\x1b]0;owned\x1b\\"  # window title, ST-terminated
CSI = b"\x1b[2J\x1b[H\x1b[?1049h"  # clear screen, home, alternate screen
BINARY = bytes(range(256)) + b"\x9b31m\xc2\x9b2J"  # every byte, a raw 8-bit CSI and a UTF-8 encoded C1 CSI
JUNK = OSC52 + b" " + TITLE + CSI + BINARY


def _controls(text: str, allowed: str = "\n\t") -> list[str]:
    """Characters that a terminal may act on: C0/C1 controls, DEL, bidi overrides, lone surrogates."""
    return sorted({c for c in text if c not in allowed and (
        unicodedata.category(c) in ("Cc", "Cs") or c in "\u2028\u2029" or "\u202a" <= c <= "\u202e"
        or "\u2066" <= c <= "\u2069")})


# ---- the function --------------------------------------------------------------------------------------------

def test_ordinary_text_is_untouched():
    for text in ("loss 1.25\tgrad_norm 0.5", "我是 Swift-Robot,由 CSDN 迪菲赫尔曼 开发。", "naïve café ✓ 🙂 a\u0301",
                 "[INFO:swift] Saving model checkpoint to /tmp/x/checkpoint-20", "", "two\nlines"):
        assert printable(text) == text
    assert printable("two\nlines", newlines=False) == "two\u240alines"


def test_escape_sequences_become_visible_markers():
    assert printable("\x1b[31mred\x1b[0m plain") == "red plain"  # colours only colour: dropped
    osc = printable(OSC52.decode())
    assert osc.startswith("\u241b]52;c;ZWNob") and osc.endswith("…") and "\x1b" not in osc
    assert printable("a\x1b[2Jb") == "a\u241b[2Jb"
    assert printable(TITLE.decode()) == "\u241b]0;owned\u241b\\"
    assert printable("\x1bPq#0;2;0;0;0\x1b\\x") == "\u241bPq#0;2;0;0;0\u241b\\x"  # DCS (sixel)
    assert printable("\x1b(B ok") == "\u241b(B ok"
    assert printable("end\x1b") == "end\u241b"
    assert printable("bell\x07 nul\x00 del\x7f cr\r") == "bell\u2407 nul\u2400 del\u2421 cr\u240d"
    assert printable("a\r\nb") == "a\nb" and printable("a\r\nb", newlines=False) == "a\u240d\u240ab"


def test_c1_bidi_and_undecodable_bytes_are_escaped():
    assert printable("x\x9b2Jy\x85z") == "x\\x9b2Jy\\x85z"  # an 8-bit CSI and NEL: escaped
    assert printable("user\u202egnp.exe") == "user\\u202egnp.exe"  # right-to-left override
    assert printable("a\u2028b") == "a\\u2028b"
    assert printable("bad\udcffbyte\ud800") == "bad\\xffbyte\ufffd"  # surrogateescape'd byte, lone surrogate
    assert printable(b"ok \xff\xfe \xe4\xbd\xa0\xe5\xa5\xbd") == "ok \ufffd\ufffd 你好"


@pytest.mark.parametrize("newlines", [True, False])
def test_nothing_a_terminal_acts_on_survives(newlines):
    everything = "".join(map(chr, range(0x3000))) + "\ud800\udc80\udfff" + JUNK.decode("latin-1") + JUNK.decode(
        "utf-8", errors="surrogateescape")
    out = printable(everything, newlines=newlines)
    assert _controls(out, "\n\t" if newlines else "\t") == []
    assert printable(out, newlines=newlines) == out  # idempotent
    assert "中" in printable("中文 survives") and "\t" in out


# ---- diagnose: every field, and the real CLI ----------------------------------------------------------------

def _junk_logs(tmp_path: Path) -> dict[str, Path]:
    """A real failed ms-swift log with junk in its exception line, and one that ends in junk without a traceback."""
    real = (FAILURES / "unknown.log").read_bytes().rstrip(b"\n").split(b"\n")
    real[-1] = real[-1] + b" " + OSC52 + CSI  # the exception message: summary and evidence quote it
    traceback = tmp_path / "traceback.log"
    traceback.write_bytes(b"\n".join(real) + b"\n")
    tail = tmp_path / "junk-tail.log"
    tail.write_bytes(b"[INFO:swift] Start time of running main\n" + JUNK + b"\n" + TITLE + b"\n" + BINARY * 3)
    return {"traceback": traceback, "tail": tail}


def test_diagnosis_fields_are_printable(tmp_path):
    for path in _junk_logs(tmp_path).values():
        d = dg.diagnose_file(path, exit_code=1)
        assert d.kind == "unknown"
        texts = [d.summary, *d.remedies, d.evidence, json.dumps(d.details, ensure_ascii=False), d.format()]
        assert all(_controls(t) == [] for t in texts), d.format()
        assert "\u241b]52" in d.evidence and "\n" not in d.summary


def _swiftdeck(*args: str, home: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "SWIFTDECK_HOME": str(home)}
    return subprocess.run([sys.executable, "-m", "tui.cli", *args], capture_output=True, env=env, timeout=120,
                          cwd=str(REPO))


def test_cli_diagnose_prints_no_escape_sequence(tmp_path, home):
    for name, path in _junk_logs(tmp_path).items():
        for extra in ([], ["--json"]):
            proc = _swiftdeck("diagnose", str(path), "--exit-code", "1", *extra, home=home)
            assert proc.returncode == 0, proc.stderr
            assert b"\x1b" not in proc.stdout and b"\x07" not in proc.stdout and b"\xc2\x9b" not in proc.stdout, name
            out = proc.stdout.decode("utf-8")
            assert _controls(out) == [], (name, _controls(out))
            assert "52;c;ZWNob" in out  # shown, not silently dropped
    # a run of the registry: its console log goes the same way
    rec = runs.create("sft", ["swift", "sft", "--model", "m"], str(tmp_path))
    rec.console_log.write_bytes(_junk_logs(tmp_path)["traceback"].read_bytes())
    runs.update(rec.id, lambda r: (setattr(r, "status", "failed"), setattr(r, "exit_code", 1)))
    proc = _swiftdeck("diagnose", rec.id, home=home)
    assert proc.returncode == 0 and b"\x1b" not in proc.stdout and "\u241b]52" in proc.stdout.decode()


def test_cli_attach_prints_paths_from_the_log_safely(tmp_path, home):
    """`swiftdeck attach` (follow) prints the run folder and checkpoint paths that ms-swift logged."""
    rec = runs.create("sft", ["swift", "sft", "--model", "m"], str(tmp_path))
    evil = b"/tmp/out/v0-20261127-000000" + OSC52
    rec.console_log.write_bytes(b"[INFO:swift] output_dir: " + evil + b"\n"
                                b"[INFO:swift] Saving model checkpoint to " + evil + CSI + b"/checkpoint-5\n")
    runs.update(rec.id, lambda r: (setattr(r, "status", "finished"), setattr(r, "exit_code", 0)))
    proc = _swiftdeck("attach", rec.id, home=home)
    out = proc.stdout.decode("utf-8")
    shown = "/tmp/out/v0-20261127-000000\u241b]52;c;"
    assert f"run folder: {shown}" in out and f"saved {shown}" in out, out
    assert b"\x1b" not in proc.stdout and b"\x07" not in proc.stdout and _controls(out) == []
