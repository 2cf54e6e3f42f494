"""A console log as numbered display lines, with bounded memory (no Textual here).

Lines end at `\\n`; inside a line, `\\r` updates (tqdm bars) collapse to the last visible one, as a terminal shows
them. Memory: 8 bytes per line (the end offset of each line) plus a fixed number of lines (the recent tail, decoded
when first shown, and a small LRU of older decoded blocks); indexing decodes no line but a Traceback's. Any line,
back to the first, is read again from the file on demand.

A long log is shown from its end first (`show_tail`): the last few hundred KB, decoded at once, stand in for the
store's lines while the whole file is indexed (by the run's observer, from byte 0); `take_index` then swaps the whole
index in, on the thread that shows the lines.
"""
from __future__ import annotations

import os
import re
import threading
from array import array
from bisect import bisect_right
from collections import OrderedDict, deque
from dataclasses import dataclass
from itertools import accumulate
from pathlib import Path
from typing import Callable

from engine.events import ConsoleAppended
from engine.redact import redact_text
from engine.textsafe import printable

LINE_CAP = 8 * 1024  # only the last 8 KiB of a raw line are decoded (a tqdm line may hold thousands of updates)
RECENT = 4000  # decoded lines kept for the tail
BLOCK = 256  # older lines are decoded in blocks of this many
BLOCKS_CACHED = 16
READ_CHUNK = 4 * 1024 * 1024  # scan(): bytes read per step
TAIL_BYTES = 256 * 1024  # show_tail(): bytes read from the end of a long log (a few thousand lines)
TRACEBACK = "Traceback (most recent call last)"
TRACEBACK_B = TRACEBACK.encode()

_ERROR_RE = re.compile(r"\[(?:ERROR|CRITICAL)|Traceback \(most recent call last\)|^\S*(?:Error|Exception)\b.*:|"
                       r"\| (?:ERROR|CRITICAL) \|")
_WARNING_RE = re.compile(r"\[WARNING|\bWARNING\b|Warning:|\| WARNING \|")

_SPECIAL = rb"[^\x20-\x7e\r\n]"  # a byte that collapse() may show as other text (escapes, tabs, non-ASCII)
_LEVEL_WORDS = {"error": rb"ERROR|CRITICAL|Error|Exception|Traceback \(most",
                "warning": rb"ERROR|CRITICAL|Error|Exception|Traceback \(most|WARNING|Warning:"}

LEVELS = ("all", "warning", "error")  # the level filter cycles through these
# torch prefixes what a rank of a torchrun run prints through its own handlers (a rank's traceback, c10 warnings)
# with `[rankN]:`; ms-swift logs only on local rank 0, so unprefixed lines are the master rank's (or the launcher's)
_RANK_RE = re.compile(r"^\[rank(\d+)\]:")
CHILD_FAILED = "ChildFailedError"  # torchrun's summary of the ranks that failed follows this line
CHILD_FAILED_B, RANK_B = CHILD_FAILED.encode(), b"[rank"


def collapse(raw: bytes) -> str:
    """One raw line (without its `\\n`) as a terminal would show it: the last `\\r` segment that is not blank,
    made printable (engine.textsafe: colours dropped, other escape sequences and control bytes shown as `␛`, `␀`
    ..., never sent to the terminal) and with secrets masked (engine.redact: `--api_key ***`)."""
    text = raw[-LINE_CAP:].decode("utf-8", errors="replace").rstrip("\r")
    if "\r" not in text:
        return redact_text(printable(text, newlines=False)).expandtabs(4)
    for seg in reversed(text.split("\r")):
        shown = redact_text(printable(seg, newlines=False))
        if shown.strip():
            return shown.expandtabs(4)
    return ""


def rank_of(line: str) -> int | None:
    """The rank a line names with torch's `[rankN]:` prefix, or None (ms-swift's own lines: the master rank's)."""
    m = _RANK_RE.match(line)
    return int(m.group(1)) if m else None


def level_of(line: str) -> str:
    """'error' | 'warning' | 'info' for colouring and the level filter."""
    if _ERROR_RE.search(line):
        return "error"
    if _WARNING_RE.search(line):
        return "warning"
    return "info"


@dataclass(frozen=True)
class LogFilter:
    text: str = ""
    level: str = "all"  # all | warning (warnings and errors) | error
    rank: int | None = None  # a distributed run's rank: 0 (the master) keeps the unprefixed lines; None: every line

    @property
    def active(self) -> bool:
        return bool(self.text) or self.level != "all" or self.rank is not None

    def matches(self, line: str) -> bool:
        if self.rank is not None:
            r = rank_of(line)
            if r != self.rank and not (r is None and self.rank == 0):
                return False
        if self.text and self.text.lower() not in line.lower():
            return False
        if self.level == "all":
            return True
        lvl = level_of(line)
        return lvl == "error" if self.level == "error" else lvl in ("error", "warning")

    def describe(self) -> str:
        parts = []
        if self.text:
            parts.append(f"text “{self.text}”")
        if self.level != "all":
            parts.append("errors" if self.level == "error" else "warnings+errors")
        if self.rank is not None:
            parts.append("rank 0 (master)" if self.rank == 0 else f"rank {self.rank}")
        return ", ".join(parts) or "none"


def _candidates(flt: LogFilter) -> tuple[re.Pattern | None, bool]:
    """(a bytes regex that every raw line `flt` can match contains, search the lowercased bytes?); None: decode and
    test every line. A line's shown text is its raw text minus what collapse() removes, except where a special byte
    (an escape sequence, a control byte, a tab, UTF-8) is involved, so lines with one always go to the full test."""
    if flt.text:
        needle = flt.text.lower()
        if not needle.isascii() or "*" in needle:  # *** comes from the secret masking, not from the file
            return None, False
        return re.compile(re.escape(needle.encode()) + b"|" + _SPECIAL), True
    if flt.level in _LEVEL_WORDS:
        return re.compile(_LEVEL_WORDS[flt.level] + b"|" + _SPECIAL), False
    return None, False


class LogStore:
    """The line index of one console log. It reads no file as it grows: `add()` (one thread) takes the bytes the
    run's engine.observer.RunObserver read (ConsoleAppended events); `line(i)` / `count` (any thread). Lines that
    left the decoded caches are read back from `path` on demand."""

    def __init__(self, path: Path | None):
        self.path = Path(path) if path else None
        self._lock = threading.Lock()
        self.generation = 0
        self._tail: list[str] | None = None  # show_tail's lines, shown while the whole log is indexed
        self._tail_start = 0  # the byte offset where the first of them begins
        self._tail_size = 0  # the file's size when they were read
        self._indexed = False  # index_done(): the index reaches the end of the file
        self._reset()

    def _reset(self) -> None:
        self._ends = array("Q")  # byte offset just past each complete line's '\n'
        self._recent: deque[str | bytes] = deque(maxlen=RECENT)  # the last lines, raw until first shown
        self._blocks: OrderedDict[int, list[str]] = OrderedDict()
        self._pending = b""  # the unterminated last line (a live tqdm bar), capped
        self._pending_text = ""
        self._fed_to = 0  # the file offset the index reaches
        self.first_traceback: int | None = None
        self.last_traceback_line: str | None = None  # the exception line that ends the last traceback
        self._in_traceback = False
        self.rank_lines: dict[int, int] = {}  # lines with torch's [rankN]: prefix, per rank
        self.rank_errors: dict[int, int] = {}  # of those, error lines (a rank's traceback)
        self.child_failed_at: int | None = None  # the line of torchrun's last ChildFailedError summary

    # ------------------------------------------------------------ new bytes

    def add(self, chunk: ConsoleAppended) -> int:
        """Index the bytes of one chunk; returns how many complete lines arrived (-1: the file was replaced or
        truncated and the index started over)."""
        if chunk.restarted:
            with self._lock:
                self._reset()
                self.generation += 1
        elif chunk.offset != self._fed_to:  # not the continuation of what was indexed: refuse, loudly
            raise ValueError(f"console bytes from offset {chunk.offset}, the log index is at {self._fed_to}")
        added = self._feed(chunk.data, chunk.offset) if chunk.data else 0
        self._fed_to = chunk.end
        return -1 if chunk.restarted else added

    def _feed(self, data: bytes, start: int) -> int:
        """Index the complete lines of `data`: their end offsets in C-level passes; only the lines of a Traceback
        are decoded here, the tail is kept raw (capped like collapse() reads it) until shown."""
        parts = data.split(b"\n")
        rest = parts.pop()
        n = len(parts)
        if n:
            base = len(self._ends)
            ends = array("Q", accumulate(map((1).__add__, map(len, parts)), initial=start))
            if self._pending:
                parts[0] = self._pending + parts[0]
            if self._in_traceback or TRACEBACK_B in data or TRACEBACK_B in parts[0]:
                self._tracebacks(parts, base)
            if RANK_B in data or CHILD_FAILED_B in data:
                self._ranks(parts, base)
            with self._lock:  # line(i) on another thread pairs the two
                self._recent.extend(raw[-LINE_CAP:] for raw in parts[-RECENT:])  # decoded when first shown
                self._ends.extend(ends[1:])  # ends[0] is `start`, where the first line begins
            self._pending = b""
        self._pending = (self._pending + rest)[-LINE_CAP:] if rest or self._pending else b""
        self._pending_text = collapse(self._pending) if self._pending else ""
        return n

    def _tracebacks(self, parts: list[bytes], base: int) -> None:
        """Follow the Traceback state through the new lines `parts` (parts[0] is line `base`): only lines whose bytes
        hold the Traceback header, and the lines inside a traceback, are decoded."""
        i, n = 0, len(parts)
        while i < n:
            if not self._in_traceback:
                i = next((k for k in range(i, n) if TRACEBACK_B in parts[k]), n)
                if i == n:
                    return
            self._track(collapse(parts[i]), base + i)
            i += 1

    def _ranks(self, parts: list[bytes], base: int) -> None:
        """Count the lines of each rank (torch's `[rankN]:` prefix) and its error lines, and find torchrun's last
        ChildFailedError summary; only lines that carry one of the two are decoded."""
        for k, raw in enumerate(parts):
            if raw.startswith(RANK_B):
                text = collapse(raw)
                r = rank_of(text)
                if r is not None:
                    self.rank_lines[r] = self.rank_lines.get(r, 0) + 1
                    if level_of(text) == "error":
                        self.rank_errors[r] = self.rank_errors.get(r, 0) + 1
            elif CHILD_FAILED_B in raw:
                self.child_failed_at = base + k

    def _track(self, text: str, index: int) -> None:
        if TRACEBACK in text:
            self.first_traceback = index if self.first_traceback is None else self.first_traceback
            self._in_traceback = True
        elif self._in_traceback and text and not text.startswith((" ", "\t", "During ", "The above exception")):
            if ":" in text or text.endswith(("Error", "Exception", "Interrupt")):
                self.last_traceback_line = text
            self._in_traceback = False

    # ------------------------------------------------------------ a long log: its end first

    def show_tail(self, nbytes: int = TAIL_BYTES) -> int:
        """Show the last `nbytes` of the file (from the first line that starts in them) until the whole file is
        indexed: `count` and `line(i)` are these lines, exactly as the index will show them. Returns how many; 0 (and
        nothing changes) when the file cannot be read or the index already reaches its end."""
        if self.path is None:
            return 0
        try:
            with open(self.path, "rb") as fh:
                size = os.fstat(fh.fileno()).st_size
                start = max(0, size - nbytes)
                fh.seek(start)
                data = fh.read(size - start)
        except OSError:
            return 0
        if start:  # the first line began before: shown from the next one
            cut = data.find(b"\n")
            if cut < 0:
                return 0
            start, data = start + cut + 1, data[cut + 1:]
        if self._fed_to >= start + len(data):
            return 0
        parts = data.split(b"\n")
        rest = parts.pop()
        lines = [collapse(raw) for raw in parts]
        last = collapse(rest[-LINE_CAP:]) if rest else ""
        if last.strip():  # an unterminated last line (a live progress bar), as count() shows it
            lines.append(last)
        with self._lock:
            self._tail, self._tail_start, self._tail_size, self._indexed = lines, start, start + len(data), False
        return len(lines)

    @property
    def tail_shown(self) -> bool:
        """The lines shown are show_tail's: the whole log is still being indexed."""
        return self._tail is not None

    def reading(self) -> tuple[int, int]:
        """While the tail is shown: (bytes indexed so far, bytes to index)."""
        done = self._fed_to
        return done, max(done, self._tail_size)

    @property
    def index_ready(self) -> bool:
        """The tail is shown and take_index would swap the whole index in."""
        return self._tail is not None and self._indexed

    def index_done(self) -> None:
        """The index reaches the end of the file (from the thread that feeds it): take_index may swap it in."""
        self._indexed = True

    def take_index(self) -> int | None:
        """Once index_done: show the whole index from now on instead of the tail. Returns the index's line number
        of the tail's first line (a view scrolled in the tail keeps its place), or None when nothing changed."""
        if self._tail is None or not self._indexed:
            return None
        with self._lock:
            self._tail = None
            first = bisect_right(self._ends, self._tail_start)
        return min(first, len(self._ends))

    # ------------------------------------------------------------ lines

    @property
    def complete(self) -> int:
        return len(self._ends)

    @property
    def count(self) -> int:
        """Lines to show: the complete ones plus a live unterminated one (a progress bar) if visible."""
        tail = self._tail
        if tail is not None:
            return len(tail)
        return len(self._ends) + (1 if self._pending_text.strip() else 0)

    def line(self, i: int) -> str:
        """Line `i` as shown: show_tail's while it is shown, else the index's."""
        tail = self._tail
        if tail is not None:
            return tail[i] if 0 <= i < len(tail) else ""
        return self._index_line(i)

    def _index_line(self, i: int) -> str:
        n = len(self._ends)
        if i >= n:
            return self._pending_text if i == n else ""
        with self._lock:
            n = len(self._ends)
            first_recent = n - len(self._recent)
            if i >= first_recent:
                text = self._recent[i - first_recent]
                if isinstance(text, bytes):
                    text = self._recent[i - first_recent] = collapse(text)
                return text
        return self._block(i // BLOCK)[i % BLOCK]

    def child_failed_text(self, lines: int = 120) -> str:
        """torchrun's last ChildFailedError summary (the lines from it on), "" if there is none."""
        at = self.child_failed_at
        if at is None:
            return ""
        return "\n".join(self._index_line(i) for i in range(at, min(self.complete, at + lines)))

    def _block(self, b: int) -> list[str]:
        with self._lock:
            cached = self._blocks.get(b)
            if cached is not None:
                self._blocks.move_to_end(b)
                return cached
        lines = [collapse(raw) for raw in self._raw_lines(b * BLOCK, min((b + 1) * BLOCK, len(self._ends)))]
        lines += [""] * (BLOCK - len(lines))
        with self._lock:
            self._blocks[b] = lines
            while len(self._blocks) > BLOCKS_CACHED:
                self._blocks.popitem(last=False)
        return lines

    def _raw_lines(self, lo: int, hi: int):
        """Raw bytes (capped to LINE_CAP, without '\\n') of lines lo..hi-1, read from the file."""
        if self.path is None or lo >= hi:
            return
        try:
            fh = open(self.path, "rb")
        except OSError:
            return
        with fh:
            for i in range(lo, hi):
                start = self._ends[i - 1] if i else 0
                end = self._ends[i] - 1
                begin = max(start, end - LINE_CAP)
                fh.seek(begin)
                yield fh.read(end - begin)

    def scan(self, flt: LogFilter, upto: int | None = None,
             progress: Callable[[float], bool | None] | None = None) -> array:
        """Indices of the lines that match `flt`, reading the file sequentially (for a worker thread). A regex over
        each whole chunk picks the lines that can match (the filter's text, a level word, or a byte collapse() might
        turn into other text); only those are decoded and tested, so a 1 GB log is not decoded line by line.
        `progress(fraction of the lines done)` is called after each chunk; when it returns False the scan stops
        (what was found so far is returned)."""
        upto = self.complete if upto is None else upto
        found = array("I")
        if self.path is None:
            return found
        maybe, lower = _candidates(flt)
        index, pending = 0, b""
        try:
            fh = open(self.path, "rb")
        except OSError:
            return found
        with fh:
            while index < upto:
                data = fh.read(READ_CHUNK)
                if not data:
                    break
                parts = (pending + data).split(b"\n")
                pending = parts.pop()[-LINE_CAP * 4:]
                parts = parts[: upto - index]
                if maybe is None:
                    found.extend(index + k for k, raw in enumerate(parts) if flt.matches(collapse(raw)))
                else:
                    buf = b"\n".join(parts)
                    starts = array("Q", accumulate(map((1).__add__, map(len, parts)), initial=0))
                    hay = buf.lower() if lower else buf
                    m = maybe.search(hay)
                    while m:
                        k = bisect_right(starts, m.start()) - 1
                        if flt.matches(collapse(parts[k])):
                            found.append(index + k)
                        m = maybe.search(hay, starts[k + 1])
                index += len(parts)
                if progress is not None and progress(min(1.0, index / upto) if upto else 1.0) is False:
                    break
        return found

    def memory_estimate(self) -> int:
        """Bytes held (roughly): the offsets plus the decoded caches; for tests of the bound."""
        decoded = sum(len(s) for s in self._recent) + sum(len(s) for b in self._blocks.values() for s in b)
        return self._ends.itemsize * len(self._ends) + decoded + len(self._pending)
