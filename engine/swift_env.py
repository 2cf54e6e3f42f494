"""Which ms-swift environment swiftdeck drives: its own (the `swift` beside the Python that runs swiftdeck), or the
user's own venv or conda env, chosen with `swiftdeck --swift PATH` or `SWIFTDECK_SWIFT=PATH`.

Everything that needs ms-swift runs in that environment as a subprocess: `swift sft|deploy|export` (the command
itself), argument introspection and the model_type/template registry (`python -m engine.swift_introspect` with that
environment's interpreter, cached per its ms-swift version) and the chat worker. The dashboard process never
imports that environment's torch: the facts here come from a short `python -c` that reads package metadata.

A run's record keeps the `swift` it ran (argv[0]), so a resume, relaunch or stop uses the same environment.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from engine.errors import SwiftdeckError

ENV_VAR = "SWIFTDECK_SWIFT"
PROBE_TIMEOUT_S = 60
# What the probe prints: package versions from metadata (no import of swift or torch).
_PROBE = ("import importlib.metadata as m, json, sys\n"
          "def v(n):\n"
          "    try:\n"
          "        return m.version(n)\n"
          "    except m.PackageNotFoundError:\n"
          "        return None\n"
          "print(json.dumps({'ms-swift': v('ms-swift'), 'torch': v('torch'), 'transformers': v('transformers'),\n"
          "                  'python': '%d.%d.%d' % sys.version_info[:3]}))\n")


class SwiftEnvError(SwiftdeckError):
    """The chosen ms-swift environment cannot be used (one line for the user)."""


@dataclass(frozen=True)
class SwiftEnv:
    swift: str  # absolute path of the `swift` command
    python: str  # the interpreter of that environment: the one in the same bin/ folder
    own: bool = False  # swiftdeck's own environment (python is sys.executable)

    @property
    def versions(self) -> dict:
        """{'ms-swift', 'torch', 'transformers', 'python'} of this environment (None for a missing package)."""
        return _versions(self)

    @property
    def version(self) -> str:
        """The installed ms-swift version; SwiftEnvError when this environment has none."""
        found = self.versions.get("ms-swift")
        if not found:
            raise SwiftEnvError(f"ms-swift is not installed for {self.python}" + (
                "" if self.own else f" (the Python of {self.swift})"))
        return found

    @property
    def major(self) -> int:
        try:
            return int(self.version.split(".", 1)[0])
        except ValueError:
            return 0

    def describe(self) -> str:
        """`ms-swift 3.12.6 (/home/me/venv/bin/swift)`: for notes and errors."""
        try:
            version = self.version
        except SwiftEnvError:
            version = "?"
        return f"ms-swift {version} ({self.swift})"


_VERSIONS: dict[tuple, dict] = {}


def _versions(env: SwiftEnv) -> dict:
    if env.own:
        import importlib.metadata as md

        def v(name: str) -> str | None:
            try:
                return md.version(name)
            except md.PackageNotFoundError:
                return None

        return {"ms-swift": v("ms-swift"), "torch": v("torch"), "transformers": v("transformers"),
                "python": "%d.%d.%d" % sys.version_info[:3]}
    try:  # a reinstall rewrites the console script: its mtime keys the memo
        stamp = os.stat(env.swift).st_mtime_ns
    except OSError:
        stamp = None
    key = (env.python, env.swift, stamp)
    if key not in _VERSIONS:
        try:
            proc = subprocess.run([env.python, "-c", _PROBE], capture_output=True, text=True,
                                  timeout=PROBE_TIMEOUT_S, stdin=subprocess.DEVNULL)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise SwiftEnvError(f"cannot run {env.python} (the Python of {env.swift}): {exc}") from None
        lines = proc.stdout.strip().splitlines()
        try:
            _VERSIONS[key] = json.loads(lines[-1])
        except (IndexError, ValueError):
            err = proc.stderr.strip().splitlines()
            raise SwiftEnvError(f"{env.python} (the Python of {env.swift}) did not answer: "
                                f"{err[-1] if err else f'exit code {proc.returncode}'}") from None
    return _VERSIONS[key]


# ---------------------------------------------------------------- finding environments


def own() -> SwiftEnv:
    """swiftdeck's own environment: the `swift` console script beside sys.executable, else the one on PATH."""
    beside = Path(sys.executable).with_name("swift")
    if beside.exists():
        return SwiftEnv(str(beside), sys.executable, own=True)
    found = shutil.which("swift")
    if not found:
        raise SwiftEnvError("the `swift` command was not found: install ms-swift (`pip install 'ms-swift==4.6.*'`) "
                            f"or point swiftdeck at an environment that has it (--swift PATH or {ENV_VAR})")
    return _at(Path(found))


def _shebang_python(script: Path) -> str | None:
    try:
        with open(script, "rb") as fh:
            first = fh.readline(4096).decode("utf-8", "replace").strip()
    except OSError:
        return None
    if not first.startswith("#!"):
        return None
    parts = first[2:].split()
    if not parts or Path(parts[0]).name == "env":
        return None
    return parts[0] if os.access(parts[0], os.X_OK) else None


def _python_beside(swift: Path) -> str | None:
    for name in ("python", "python3"):
        candidate = swift.with_name(name)
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return _shebang_python(swift)


def _same_file(a: str | Path, b: str | Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def is_own_swift(swift: str | Path) -> bool:
    """Whether `swift` is the `swift` of swiftdeck's own environment (cheap: no subprocess, never raises)."""
    beside = Path(sys.executable).with_name("swift")
    return _same_file(swift, beside) or (not beside.exists() and _same_file(swift, shutil.which("swift") or ""))


def _at(swift: Path) -> SwiftEnv:
    python = _python_beside(swift)
    if python is None:
        raise SwiftEnvError(f"no Python beside {swift} (expected {swift.with_name('python')}): give the `swift` "
                            "of a venv or conda env")
    # a venv's python is a link to the base interpreter, shared by every venv made from it: compare the paths as
    # they are (which venv), not the files they lead to
    is_own = os.path.abspath(python) == os.path.abspath(sys.executable) or \
        _same_file(swift, Path(sys.executable).with_name("swift"))
    return SwiftEnv(str(swift), sys.executable if is_own else python, own=is_own)


def at(path: str | Path) -> SwiftEnv:
    """The environment of the `swift` at `path`; a venv/conda folder or its bin/ folder is accepted too."""
    raw = str(path).strip()
    if not raw:
        raise SwiftEnvError("--swift needs the path of a `swift` command, e.g. ~/venv-swift3/bin/swift")
    given = Path(raw).expanduser()
    candidates = [given] if not given.is_dir() else [given / "swift", given / "bin" / "swift"]
    for candidate in candidates:
        if candidate.is_file():
            swift = Path(os.path.abspath(candidate))
            if not os.access(swift, os.X_OK):
                raise SwiftEnvError(f"{swift} is not executable")
            return _at(swift)
    if given.is_dir():
        raise SwiftEnvError(f"no `swift` command in {given} (looked for {given / 'swift'} and "
                            f"{given / 'bin' / 'swift'})")
    raise SwiftEnvError(f"no such file: {given} (give the path of the `swift` command of an environment)")


def selected() -> SwiftEnv:
    """The environment swiftdeck drives now: $SWIFTDECK_SWIFT (set by --swift) else its own."""
    chosen = os.environ.get(ENV_VAR, "").strip()
    if not chosen:
        return own()
    try:
        return at(chosen)
    except SwiftEnvError as exc:
        raise SwiftEnvError(f"{ENV_VAR}={chosen}: {exc}") from None


def select(path: str | Path) -> SwiftEnv:
    """Drive the environment of `path` from now on, in this process and every process it starts (the runner, the
    browser dashboard's app); the path is checked first and stored absolute."""
    env = at(path)
    env.version  # noqa: B018 - refuse an environment without ms-swift now, in one line
    os.environ[ENV_VAR] = env.swift
    return env


def of_swift(swift: str | None) -> SwiftEnv:
    """The environment of a recorded `swift` (argv[0] of a run); the selected one when none is recorded, or only
    a bare `swift` (found on PATH)."""
    return at(swift) if swift and os.sep in swift else selected()
