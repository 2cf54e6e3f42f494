"""A binary copy of the columns read from a long logging.jsonl, so that opening the run again reads only what was
appended since instead of parsing a million lines: `<data dir>/cache/columns/<hash of the file's path>.bin`.

The copy is of the file's first `offset` bytes (complete lines only) and is used while the file is still the same
one (device and inode) and still begins with those bytes: at least `offset` long, with the same last 4 KiB before
`offset` and, when no longer than that, the same mtime. Anything else (the file replaced, truncated, rewritten, a
copy from another version, a damaged copy) reads as no copy: the file is parsed as usual and the copy rewritten.

The folder is kept under MAX_BYTES in all and MAX_COPIES copies: each save deletes the copies whose logging.jsonl
is gone, then the least recently used ones (a copy's mtime is set when it is written or read) until both hold; the
copy just written is never one of them. Nothing there fails the caller (the copies only save time).
"""
from __future__ import annotations

import dataclasses
import hashlib
import os
from array import array
from dataclasses import dataclass
from pathlib import Path

import orjson

from engine.events import Finished, Progress
from engine.metric_columns import Columns

VERSION = 1
CHECK_BYTES = 4096
MIN_BYTES = 24 * 1024 * 1024  # a shorter logging.jsonl parses in well under a second: no copy
MAX_BYTES = 1 << 30  # the whole folder (~90 MB per million steps: about eleven such runs)
MAX_COPIES = 64


@dataclass
class Cached:
    offset: int  # the file's bytes the copy holds (a line boundary)
    ident: tuple[int, int]  # (st_dev, st_ino) of the file
    train: Columns
    eval: Columns
    progress: Progress | None
    finished: Finished | None
    final_record: dict | None


def cache_file(jsonl: Path) -> Path:
    from engine.paths import data_dir

    key = hashlib.sha1(str(Path(jsonl).resolve()).encode()).hexdigest()
    return data_dir() / "cache" / "columns" / f"{key}.bin"


def _check(fd: int, offset: int) -> str:
    start = max(0, offset - CHECK_BYTES)
    return os.pread(fd, offset - start, start).hex()


def columns_meta(cols: Columns) -> dict:
    """What read_columns needs to know of `cols` (JSON-safe)."""
    return {"n": len(cols), "keys": list(cols.cols), "absent": list(cols.absent)}


def write_columns(out, cols: Columns) -> None:
    """`cols` as raw bytes (read back by read_columns with columns_meta(cols))."""
    for arr in (cols.steps, cols.maxes, *cols.cols.values()):
        arr.tofile(out)
    for flags in cols.absent.values():
        out.write(flags)


def save(jsonl: Path, offset: int, ident: tuple[int, int] | None, train: Columns, eval_: Columns,
         progress: Progress | None, finished: Finished | None, final_record: dict | None) -> bool:
    """Write the copy (a temporary file, then renamed: a reader never sees half of one). False when it could not
    be written (a read-only data dir, a full disk): nothing is lost but the speed-up."""
    tmp = None
    try:
        with open(jsonl, "rb") as fh:
            st = os.fstat(fh.fileno())
            if ident is not None and (st.st_dev, st.st_ino) != tuple(ident) or st.st_size < offset:
                return False
            if offset and os.pread(fh.fileno(), 1, offset - 1) != b"\n":  # a cut last line taken as final
                return False
            meta = {"version": VERSION, "path": str(Path(jsonl).resolve()), "offset": offset,
                    "ident": [st.st_dev, st.st_ino], "mtime_ns": st.st_mtime_ns, "check": _check(fh.fileno(), offset),
                    "progress": dataclasses.asdict(progress) if progress else None,
                    "finished": dataclasses.asdict(finished) if finished else None,
                    "final_record": final_record, "train": columns_meta(train), "eval": columns_meta(eval_)}
        from engine.paths import private_dir

        target = cache_file(jsonl)
        private_dir(target.parent, "the copies of long runs' columns")
        prune(target.parent)
        tmp = target.with_name(f"{target.name}.{os.getpid()}.tmp")
        with open(tmp, "wb") as out:
            out.write(orjson.dumps(meta) + b"\n")
            write_columns(out, train)
            write_columns(out, eval_)
        os.replace(tmp, target)
    except (OSError, TypeError, ValueError):
        if tmp is not None:
            try:
                tmp.unlink(missing_ok=True)
            except OSError:
                pass
        return False
    evict(target.parent, keep=target)
    return True


def evict(folder: Path, keep: Path | None = None) -> list[Path]:
    """Delete the least recently used copies (oldest mtime first) until the folder's copies take at most MAX_BYTES
    and number at most MAX_COPIES; never `keep`. The copies deleted (an error on one skips it)."""
    copies = []
    try:
        with os.scandir(folder) as entries:
            for entry in entries:
                if entry.name.endswith(".bin"):
                    try:
                        st = entry.stat(follow_symlinks=False)
                    except OSError:
                        continue
                    copies.append((st.st_mtime_ns, st.st_size, Path(entry.path)))
    except OSError:
        return []
    copies.sort(key=lambda c: (c[0], c[2].name))
    total, count = sum(c[1] for c in copies), len(copies)
    gone = []
    for _, size, path in copies:
        if total <= MAX_BYTES and count <= MAX_COPIES:
            break
        if keep is not None and path.name == Path(keep).name:
            continue
        try:
            path.unlink()
        except OSError:
            continue
        total, count = total - size, count - 1
        gone.append(path)
    return gone


def prune(folder: Path) -> int:
    """Delete the copies whose logging.jsonl is gone (the run folder was deleted or moved); how many."""
    gone = 0
    for copy in folder.glob("*.bin"):
        try:
            with open(copy, "rb") as fh:
                path = orjson.loads(fh.readline()).get("path")
            if not isinstance(path, str) or not os.path.exists(path):
                copy.unlink()
                gone += 1
        except (OSError, ValueError, AttributeError):
            continue
    return gone


def read_columns(fh, kind: dict) -> Columns:
    """Columns written by write_columns, `kind` being their columns_meta."""
    n = kind["n"]
    cols = Columns()

    def take(typecode: str) -> array:
        arr = array(typecode)
        arr.fromfile(fh, n)
        return arr

    cols.steps, cols.maxes = take("q"), take("q")
    for key in kind["keys"]:
        cols.cols[key] = take("d")
    for key in kind["absent"]:
        flags = bytearray(fh.read(n))
        if len(flags) != n:
            raise EOFError
        cols.absent[key] = flags
    cols.appended = n
    return cols


def _fitting_meta(fh, jsonl: Path) -> dict | None:
    """The copy's header when the copy still fits `jsonl` (see the module's doc)."""
    meta = orjson.loads(fh.readline())
    if meta.get("version") != VERSION or meta["path"] != str(Path(jsonl).resolve()):
        return None
    offset = meta["offset"]
    fd = os.open(jsonl, os.O_RDONLY)
    try:
        st = os.fstat(fd)
        if ([st.st_dev, st.st_ino] != meta["ident"] or st.st_size < offset
                or (st.st_size == offset and st.st_mtime_ns != meta["mtime_ns"])
                or _check(fd, offset) != meta["check"]):
            return None
    finally:
        os.close(fd)
    return meta


def fits(jsonl: Path) -> bool:
    """A copy that fits `jsonl` is there (its header is read, not its columns)."""
    try:
        with open(cache_file(jsonl), "rb") as fh:
            return _fitting_meta(fh, jsonl) is not None
    except (OSError, ValueError, KeyError, TypeError):
        return False


def load(jsonl: Path) -> Cached | None:
    """The copy of `jsonl`'s columns, or None when there is none that still fits the file. A copy read is marked
    as just used (its mtime: the last to be evicted)."""
    path = cache_file(jsonl)
    try:
        fh = open(path, "rb")
    except OSError:
        return None
    try:
        with fh:
            meta = _fitting_meta(fh, jsonl)
            if meta is None:
                return None
            offset = meta["offset"]
            train, eval_ = read_columns(fh, meta["train"]), read_columns(fh, meta["eval"])
            if fh.read(1):
                return None
    except (OSError, ValueError, KeyError, TypeError, EOFError):
        return None
    try:
        os.utime(path)
    except OSError:
        pass
    p, f = meta["progress"], meta["finished"]
    return Cached(offset, tuple(meta["ident"]), train, eval_, Progress(**p) if p else None,
                  Finished(**f) if f else None, meta["final_record"])
