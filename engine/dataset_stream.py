"""Reading a dataset file row by row in bounded memory, for engine.dataset_check.

    src = open_source(path)          a regular file, or NotADatasetFile (a folder, /dev/zero, a fifo, missing)
    head = sniff(src)                BOM / UTF-16 / binary / empty, and the first character that is not blank
    jsonl_rows(src, issues, tick)    (line, value) per JSON Lines line; a bad line is an issue, reading goes on
    array_rows(src, issues, tick)    (line, value) per element of one top-level JSON array, read in chunks
    one_value(src, issues, tick)     the file's single top-level JSON value, or None (for `not_a_list`)
    csv_rows(src, issues, tick)      (line, {column: text}) per CSV record

Memory: one read chunk plus the row being parsed. A row (a line, an array element, a CSV record) larger than
MAX_ROW_BYTES is reported and skipped (JSON Lines, CSV) or ends the reading (an array cannot be resynchronised).
Problems are reported through `issues.add(level, code, message, line=...)`; an encoding error or a syntax error in
an array ends the reading (StopReading). `tick()` is called for every line or chunk consumed (the caller checks
for cancellation there and may raise).
"""
from __future__ import annotations

import codecs
import csv
import json
import os
import re
import stat
from dataclasses import dataclass
from typing import BinaryIO, Callable, Iterator

CHUNK = 1 << 20
MAX_ROW_BYTES = 32 << 20
HEAD = 8192
BOM = b"\xef\xbb\xbf"
_BLANK = b" \t\r\n"
_WS = re.compile(r"[ \t\r\n]*")

Tick = Callable[[], None]


class NotADatasetFile(Exception):
    """The path cannot be read as a dataset file at all: missing, a folder, a device, a fifo, unreadable."""


class StopReading(Exception):
    """A problem already reported that ends the reading (encoding, an array's syntax)."""


@dataclass
class Source:
    path: str
    fh: BinaryIO
    size: int
    bom: bool = False
    start: int = 0  # byte offset of the text (after a BOM)

    def tell(self) -> int:
        return self.fh.tell()

    def rewind(self) -> None:
        self.fh.seek(self.start)

    def close(self) -> None:
        self.fh.close()


_KINDS = ((stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
          (stat.S_ISFIFO, "a fifo (named pipe)"), (stat.S_ISSOCK, "a socket"))


def open_source(path) -> Source:
    """Open a regular file for reading; anything else raises NotADatasetFile with one line that says why.
    O_NONBLOCK: opening a fifo must not wait for a writer (it is refused right after, by fstat)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except IsADirectoryError:
        raise NotADatasetFile(f"{path} is a folder, not a dataset file") from None
    except OSError as e:
        raise NotADatasetFile(f"{path}: {e.strerror or e}") from None
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise NotADatasetFile(f"{path} is a folder, not a dataset file")
        if not stat.S_ISREG(st.st_mode):
            kind = next((name for test, name in _KINDS if test(st.st_mode)), "not a regular file")
            raise NotADatasetFile(f"{path} is {kind}, not a dataset file: give a .json, .jsonl or .csv file")
    except BaseException:
        os.close(fd)
        raise
    return Source(str(path), os.fdopen(fd, "rb", buffering=max(CHUNK, 1 << 16)), st.st_size)


@dataclass
class Head:
    empty: bool = False
    first: str = ""  # the first character that is not blank
    first_line: int = 1  # the line it is on


def sniff(src: Source, issues, tick: Tick) -> Head | None:
    """Encoding and emptiness from the head of the file; None after a problem that ends the check."""
    head = src.fh.read(HEAD)
    src.fh.seek(0)
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        issues.add("error", "encoding", "line 1: the file is UTF-16; save it as UTF-8", line=1)
        return None
    if b"\x00" in head:
        issues.add("error", "binary", "line 1: this is a binary file, not JSON text", line=1)
        return None
    if head.startswith(BOM):
        src.bom, src.start = True, len(BOM)
    src.rewind()
    line = 1
    while True:  # the first character that is not blank (a file may start with any amount of blank lines)
        tick()
        chunk = src.fh.read(CHUNK)
        if not chunk:
            src.rewind()
            return Head(empty=True)
        stripped = chunk.lstrip(_BLANK)
        line += chunk.count(b"\n", 0, len(chunk) - len(stripped))
        if stripped:
            src.rewind()
            first = stripped[:4].decode("utf-8", errors="replace")[:1]
            return Head(first=first, first_line=line)


def _bad_utf8(line: int, raw: bytes, e: UnicodeDecodeError, issues) -> None:
    col = e.start + 1
    hint = ""
    try:
        raw.decode("gb18030")
        hint = " (it decodes as GBK/GB18030: re-save it as UTF-8)"
    except UnicodeDecodeError:
        pass
    issues.add("error", "encoding", f"line {line}, column {col} (byte {col}): not valid UTF-8, "
               f"byte 0x{raw[e.start]:02x}{hint}", line=line)


def _lines(src: Source, issues, tick: Tick) -> Iterator[tuple[int, bytes | None]]:
    """(line number, raw line without its end) from the text start; None for a line over MAX_ROW_BYTES (reported
    and skipped without holding it)."""
    src.rewind()
    fh, n = src.fh, 0
    while True:
        raw = fh.readline(MAX_ROW_BYTES + 1)
        if not raw:
            return
        n += 1
        tick()
        if len(raw) > MAX_ROW_BYTES and not raw.endswith(b"\n"):
            while True:  # skip the rest of this line in chunks
                tick()
                rest = fh.readline(CHUNK)
                if not rest or rest.endswith(b"\n"):
                    break
            issues.add("error", "row_too_large", f"line {n}: longer than {MAX_ROW_BYTES >> 20} MiB; not checked "
                       "(ms-swift would have to hold it in memory too)", line=n)
            yield n, None
            continue
        yield n, raw[:-1] if raw.endswith(b"\n") else raw


def jsonl_rows(src: Source, issues, tick: Tick) -> Iterator[tuple[int, object]]:
    for n, raw in _lines(src, issues, tick):
        if raw is None or not raw.strip(_BLANK):
            continue
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            _bad_utf8(n, raw, e, issues)
            raise StopReading from None
        try:
            yield n, json.loads(text)
        except json.JSONDecodeError as e:
            issues.add("error", "json_syntax", f"line {n}, column {e.colno}: {e.msg}", line=n)
        except RecursionError:
            issues.add("error", "json_syntax", f"line {n}: nested too deeply to read", line=n)


class _Text:
    """The file's text from its start, decoded chunk by chunk; `buf[pos:]` is what is not consumed yet.
    Knows the line and column of any position still in the buffer."""

    def __init__(self, src: Source, issues, tick: Tick):
        src.rewind()
        self.src, self.issues, self.tick = src, issues, tick
        self.dec = codecs.getincrementaldecoder("utf-8")("strict")
        self.buf, self.pos, self.eof = "", 0, False
        self.line, self.col0 = 1, 0  # line of buf[0]; characters of that line before buf[0]
        self._seen = (0, 1)  # (index, its line): rows come in order, so newlines are counted once
        self.read_at = src.start  # byte offset of the next read

    def _drop(self) -> None:
        """Forget the consumed part of the buffer (keeping track of the line and column of buf[0])."""
        if not self.pos:
            return
        nl = self.buf.rfind("\n", 0, self.pos)
        self.line += self.buf.count("\n", 0, self.pos)
        self.col0 = self.pos - nl - 1 if nl >= 0 else self.col0 + self.pos
        self.buf, self.pos = self.buf[self.pos:], 0
        self._seen = (0, self.line)

    def fill(self, want: int = 0) -> bool:
        """Append at least one more chunk; False at the end of the file."""
        if self.eof:
            return False
        self.tick()
        self._drop()
        data = self.src.fh.read(max(want, CHUNK))
        pending = len(self.dec.getstate()[0])
        try:
            text = self.dec.decode(data, final=not data)
        except UnicodeDecodeError as e:
            self._bad_byte(self.read_at - pending + e.start)
            raise StopReading from None
        self.read_at += len(data)
        self.eof = not data
        self.buf += text
        return bool(data)

    def _bad_byte(self, offset: int) -> None:
        """Report the line and column of the invalid byte at `offset` (reads the file again up to there)."""
        fh = self.src.fh
        fh.seek(self.src.start)
        line, line_start, done = 1, self.src.start, self.src.start
        while done < offset:
            self.tick()
            chunk = fh.read(min(CHUNK, offset - done))
            if not chunk:
                break
            nl = chunk.rfind(b"\n")
            if nl >= 0:
                line += chunk.count(b"\n")
                line_start = done + nl + 1
            done += len(chunk)
        fh.seek(line_start)
        raw = fh.readline(min(MAX_ROW_BYTES, max(offset - line_start + 64, 64)))
        e = UnicodeDecodeError("utf-8", raw, offset - line_start, offset - line_start + 1, "invalid")
        _bad_utf8(line, raw, e, self.issues)

    def line_at(self, index: int) -> int:
        """The line (1-based) of buf[index]."""
        seen, line = self._seen
        if index < seen:
            seen, line = 0, self.line
        line += self.buf.count("\n", seen, index)
        self._seen = (index, line)
        return line

    def where(self, index: int) -> tuple[int, int]:
        """(line, column), 1-based, of buf[index]."""
        nl = self.buf.rfind("\n", 0, index)
        return self.line_at(index), index - nl if nl >= 0 else self.col0 + index + 1

    def skip_ws(self) -> str:
        """Skip blanks; the next character, or '' at the end of the file."""
        while True:
            self.pos = _WS.match(self.buf, self.pos).end()
            if self.pos < len(self.buf):
                return self.buf[self.pos]
            if not self.fill():
                return ""

    def syntax(self, msg: str, index: int) -> None:
        line, col = self.where(index)
        self.issues.add("error", "json_syntax", f"line {line}, column {col}: {msg}", line=line)
        raise StopReading

    def value(self) -> tuple[int, object]:
        """The JSON value at pos (its line, the value); reads more while the value may be cut by the buffer end."""
        dec = _DECODER
        while True:
            try:
                obj, end = dec.raw_decode(self.buf, self.pos)
            except json.JSONDecodeError as e:
                if not self.eof and len(self.buf) - self.pos < MAX_ROW_BYTES:
                    self.fill(len(self.buf) - self.pos)  # double what is held: a long row costs O(its size)
                    continue
                if not self.eof:
                    line = self.line_at(self.pos)
                    self.issues.add("error", "row_too_large", f"line {line}: a row longer than "
                                    f"{MAX_ROW_BYTES >> 20} MiB (or broken: {e.msg}); the rest is not checked",
                                    line=line)
                    raise StopReading from None
                self.syntax(e.msg, e.pos)
            except RecursionError:
                line = self.line_at(self.pos)
                self.issues.add("error", "json_syntax", f"line {line}: nested too deeply to read", line=line)
                raise StopReading from None
            if end == len(self.buf) and not self.eof and self.fill():
                continue  # a number or literal may go on in the next chunk
            line = self.line_at(self.pos)
            self.pos = end
            return line, obj


_DECODER = json.JSONDecoder()


def array_rows(src: Source, issues, tick: Tick) -> Iterator[tuple[int, object]]:
    """Elements of the top-level array (the file starts with '['), with the line each starts on."""
    text = _Text(src, issues, tick)
    text.skip_ws()
    text.pos += 1  # '['
    if text.skip_ws() == "]":
        text.pos += 1
    else:
        while True:
            tick()
            yield text.value()
            c = text.skip_ws()
            if c == ",":
                text.pos += 1
                text.skip_ws()
                continue
            if c == "]":
                text.pos += 1
                break
            text.syntax("Expecting ',' delimiter", text.pos)
    if text.skip_ws():
        text.syntax("Extra data", text.pos)


def one_value(src: Source, issues, tick: Tick, *, extra_ok: bool = False) -> tuple[bool, object]:
    """(True, value) when the file holds exactly one JSON value; (False, None) when the first value is not valid
    JSON or more follows it and extra_ok (the caller then reads the file as JSON Lines); else the syntax error is
    reported and StopReading raised. Reads only the first value and what follows it up to the next non-blank."""
    quiet = _Quiet()
    text = _Text(src, quiet if extra_ok else issues, tick)
    text.skip_ws()
    try:
        _, obj = text.value()
        more = text.skip_ws()
    except StopReading:
        if extra_ok and quiet.codes <= {"json_syntax", "row_too_large"}:
            return False, None
        for args, kw in quiet.calls:
            issues.add(*args, **kw)
        raise
    if more:
        if extra_ok:
            return False, None
        text.syntax("Extra data", text.pos)
    return True, obj


class _Quiet:
    """Holds reported issues back (one_value decides afterwards whether they count)."""

    def __init__(self) -> None:
        self.calls: list = []
        self.codes: set[str] = set()

    def add(self, *args, **kw) -> None:
        self.calls.append((args, kw))
        self.codes.add(args[1])


def csv_rows(src: Source, issues, tick: Tick) -> Iterator[tuple[int, dict]]:
    """Records of a CSV file as {column: text}, with the line each starts on (ms-swift reads CSV through the
    datasets library with na_filter=False: empty cells are empty strings)."""
    state = {"line": 0}

    def text_lines() -> Iterator[str]:
        for n, raw in _lines(src, issues, tick):
            state["line"] = n
            if raw is None:
                continue
            try:
                yield raw.decode("utf-8") + "\n"
            except UnicodeDecodeError as e:
                _bad_utf8(n, raw, e, issues)
                raise StopReading from None

    if csv.field_size_limit() < MAX_ROW_BYTES:
        csv.field_size_limit(MAX_ROW_BYTES)
    reader = csv.reader(text_lines())
    header: list[str] | None = None
    start = 1
    while True:
        try:
            record = next(reader)
        except StopIteration:
            return
        except csv.Error as e:
            issues.add("error", "csv_syntax", f"line {state['line']}: {e}", line=state["line"])
            raise StopReading from None
        line, start = start, state["line"] + 1
        if not record or not any(cell.strip() for cell in record):
            continue
        if header is None:
            header = record
            continue
        if len(record) != len(header):
            issues.add("error", "csv_syntax", f"line {line}: {len(record)} fields, the header has {len(header)}",
                       line=line)
            continue
        yield line, dict(zip(header, record))
