"""Text taken from logs and data files, made safe to show on a terminal: `printable(text) -> str`.

A console log or a dataset may hold anything: terminal escape sequences (an OSC 52 clipboard write, a title change,
cursor moves), C0/C1 control characters, NUL and other bytes of a binary file, lone surrogates, bidi overrides.
Shown raw, these act on the user's terminal. `printable` keeps every ordinary character (any script, tabs, and
newlines unless asked for one line) and makes the rest visible and inert:

- colour sequences (CSI ... m) are dropped: they only colour, and logs are full of them;
- any other escape sequence (CSI, OSC, DCS, SOS, PM, APC, two-byte ESC) becomes `␛` followed by the rest of the
  sequence, itself made printable and shortened (`␛]52;c;aGVsbG8…`; with an 8-bit introducer: `\\x9b2J`);
- C0 controls become their Unicode control pictures (`␀`, `␇`, `␍`, ...), DEL becomes `␡`;
- C1 controls (U+0080..U+009F), bidi embeddings/overrides/isolates and the line/paragraph separators U+2028/9 are
  written as escapes (`\\x9b`, `\\u202e`);
- undecodable bytes: bytes are decoded as UTF-8 with U+FFFD for invalid sequences; a lone surrogate in a str
  becomes `\\xNN` when it carries an undecodable byte (surrogateescape), else U+FFFD.

The result never contains a control character other than tab (and newline when `newlines=True`). It is idempotent
and costs one regex search for a clean line.
"""
from __future__ import annotations

import re

__all__ = ["printable"]

MARK = "\u241b"  # ␛ SYMBOL FOR ESCAPE
SEQUENCE_SHOWN = 24  # characters of a sequence shown after its ␛

# Anything that needs work; a clean line only pays for this search. (\t is always fine, \n only in multi-line text.)
_NEEDS_WORK_LINE = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff]")
_NEEDS_WORK_MULTI = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff]")

_SGR = r"(?:\x1b\[|\x9b)[0-9;:]*m"
_CSI = r"(?:\x1b\[|\x9b)[0-?]*[ -/]*[@-~]"
# OSC, DCS, SOS, PM, APC: a string up to BEL or ST (ESC \ or U+009C), else to the end of the line
_STRING = r"(?:\x1b[\]PX^_]|[\x90\x98\x9d\x9e\x9f])[^\x07\x9c\x1b\n]*(?:\x07|\x1b\\|\x9c)?"
_TWO_BYTE = r"\x1b[ -/]*[0-~]"
_SEQUENCE = re.compile(f"(?P<sgr>{_SGR})|{_CSI}|{_STRING}|{_TWO_BYTE}")

_TABLE: dict[int, str] = {c: chr(0x2400 + c) for c in range(0x20) if c not in (0x09, 0x0A)}
_TABLE[0x0A] = "\u240a"  # ␊ (kept as a newline when newlines=True: see printable)
_TABLE[0x7F] = "\u2421"  # ␡
_TABLE.update({c: f"\\x{c:02x}" for c in range(0x80, 0xA0)})
_TABLE.update({c: f"\\u{c:04x}" for c in (0x2028, 0x2029, *range(0x202A, 0x202F), *range(0x2066, 0x206A))})
_TABLE_MULTI = {k: v for k, v in _TABLE.items() if k != 0x0A}
_SURROGATE = re.compile("[\ud800-\udfff]")


def _surrogate(m: re.Match) -> str:
    code = ord(m[0])
    return f"\\x{code - 0xDC00:02x}" if 0xDC80 <= code <= 0xDCFF else "\ufffd"


def _sequence(m: re.Match) -> str:
    if m["sgr"]:
        return ""
    seq = m[0]
    rest = seq[1:].translate(_TABLE)
    rest = rest if len(rest) <= SEQUENCE_SHOWN else rest[:SEQUENCE_SHOWN - 1] + "…"
    return (MARK if seq[0] == "\x1b" else _TABLE[ord(seq[0])]) + rest  # (8-bit introducers read \x9b ...)


def printable(text: str | bytes | None, *, newlines: bool = True) -> str:
    """`text` with every character that could act on a terminal made visible and inert (see the module doc).
    newlines=False: one line (newlines become `␊`), for a summary, a log line or a message."""
    if text is None:
        return ""
    if isinstance(text, (bytes, bytearray)):
        text = bytes(text).decode("utf-8", errors="replace")
    elif not isinstance(text, str):
        text = str(text)
    if not (_NEEDS_WORK_MULTI if newlines else _NEEDS_WORK_LINE).search(text):
        return text
    if newlines and "\r\n" in text:
        text = text.replace("\r\n", "\n")
    if "\x1b" in text or any(c in text for c in "\x90\x98\x9b\x9d\x9e\x9f"):
        text = _SEQUENCE.sub(_sequence, text)
    text = text.translate(_TABLE_MULTI if newlines else _TABLE)
    if _SURROGATE.search(text):
        text = _SURROGATE.sub(_surrogate, text)
    return text
