"""Where swiftdeck keeps its state: the user data dir, or $SWIFTDECK_HOME (tests use a temporary one).

The data dir, the runs dir and every run folder are private to the user (0700); files swiftdeck writes there are
0600 (`open_private`). A failed write becomes a `StorageError`: one line that names the volume and the path.
"""
from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

from engine.errors import SwiftdeckError

PRIVATE_DIR = 0o700
PRIVATE_FILE = 0o600


class StorageError(SwiftdeckError, OSError):
    """swiftdeck could not write its own state (full disk, read-only volume, no permission). One line."""


def mount_point(path: str | Path) -> Path:
    """The mount point of the volume that holds `path` (or would hold it)."""
    p = Path(os.path.abspath(path))
    while not p.exists() and p != p.parent:
        p = p.parent
    while not os.path.ismount(p) and p != p.parent:
        p = p.parent
    return p


def storage_error(exc: OSError, path: str | Path, what: str = "the run registry") -> StorageError:
    """The one-line error for a failed write of `what` at `path`."""
    if isinstance(exc, StorageError):
        return exc
    code = exc.errno
    if code in (errno.ENOSPC, errno.EDQUOT):
        msg = f"no space left on {mount_point(path)} for {what} ({path}); free some space and try again"
    elif code == errno.EROFS:
        msg = f"{what} is on a read-only file system ({mount_point(path)}): cannot write {path}"
    elif code in (errno.EACCES, errno.EPERM):
        msg = f"no permission to write {what} ({path})"
    else:
        msg = f"cannot write {what} ({path}): {exc.strerror or exc}"
    err = StorageError(msg)
    err.errno = code
    return err


def private_dir(path: Path, what: str = "swiftdeck's data folder") -> Path:
    """Create `path` (0700) if missing; tighten it to 0700 if it is ours and looser (not a sticky dir like /tmp)."""
    try:
        path.mkdir(mode=PRIVATE_DIR, parents=True, exist_ok=True)
    except OSError as exc:
        raise storage_error(exc, path, what) from None
    try:
        st = path.stat()
        if st.st_mode & 0o077 and st.st_uid == os.getuid() and not st.st_mode & stat.S_ISVTX:
            os.chmod(path, PRIVATE_DIR)
    except OSError:
        pass  # read-only volume, or not ours: nothing we may change
    return path


def open_private(path: str | Path, mode: str = "ab"):
    """open() for a file only the user may read: created 0600 (mode 'ab', 'wb', 'w', 'a')."""
    flags = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if mode.startswith("a") else os.O_TRUNC)
    fd = os.open(path, flags | getattr(os, "O_CLOEXEC", 0), PRIVATE_FILE)
    return os.fdopen(fd, mode)


def home_of(environ: dict[str, str] | os._Environ) -> Path:
    """The data dir a process with this environment uses."""
    home = environ.get("SWIFTDECK_HOME")
    if home:
        return Path(home)
    import platformdirs

    return Path(platformdirs.user_data_dir("swiftdeck", appauthor=False))


def data_dir() -> Path:
    return private_dir(home_of(os.environ))


def runs_dir() -> Path:
    """One folder per run: record.json (the registry entry), console.log, runner.log."""
    return private_dir(data_dir() / "runs", "the run registry")


def demo_dir() -> Path:
    """The cached offline demo: tiny model folder and self_cognition.json."""
    return data_dir() / "demo"
