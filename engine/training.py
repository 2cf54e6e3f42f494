"""Launch policy for `swift sft`: what swiftdeck adds to a checked argv before handing it to the supervisor."""
from __future__ import annotations

from pathlib import Path

from engine import supervisor
from engine.runs import RunRecord

GRACEFUL = "graceful_exit"  # ms-swift 4 callback: on SIGUSR1/SIGTERM/SIGINT save at the next step end, then stop


def with_graceful_exit(argv: list[str]) -> list[str]:
    """Add ms-swift's `graceful_exit` callback so that Stop saves a checkpoint at the next step."""
    argv = list(argv)
    if "--callbacks" not in argv:
        return [*argv, "--callbacks", GRACEFUL]
    i = argv.index("--callbacks") + 1
    values = []
    while i + len(values) < len(argv) and not argv[i + len(values)].startswith("--"):
        values.append(argv[i + len(values)])
    if GRACEFUL not in values:
        argv.insert(i + len(values), GRACEFUL)
    return argv


def output_dir_of(argv: list[str], cwd: Path) -> str:
    if "--output_dir" in argv:
        i = argv.index("--output_dir") + 1
        if i < len(argv):
            return str((cwd / argv[i]).resolve())
    return str((cwd / "output").resolve())  # ms-swift's default


def start(argv: list[str], *, cwd: Path, label: str = "", notes: list[str] | None = None,
          env: dict[str, str] | None = None) -> RunRecord:
    """Start `swift sft` with an argv that already passed engine.swift_args.check_args. `env` adds variables such
    as CUDA_VISIBLE_DEVICES or NPROC_PER_NODE (recorded with the run)."""
    argv = with_graceful_exit(argv)
    return supervisor.launch("sft", argv, cwd=cwd, env=env, label=label, output_dir=output_dir_of(argv, cwd),
                             notes=notes)
