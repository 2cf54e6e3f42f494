"""The dataset check that runs before every launch (CLI and launch form alike): engine.dataset_check on each local
file of a --dataset list, without a model (no tokenizer import in the dashboard's process)."""
from __future__ import annotations

from pathlib import Path

MAX_ISSUES_SHOWN = 6
_FORMATS = {"json": "JSON array", "jsonl": "JSON Lines", "csv": "CSV"}


def local_dataset(value: str, cwd: Path) -> tuple[Path | None, bool]:
    """(the local file of one --dataset value or None, whether it looks like a file that does not exist).
    ms-swift's syntax is `[hf::|ms::]path_or_id[:subsets][#N]`; a value that is no existing path is a hub id."""
    if "::" in value:
        return None, False
    base, sep, sample = value.rpartition("#")
    candidates = [value, base] if sep and sample.isdigit() else [value]
    for c in candidates:
        path = (cwd / Path(c).expanduser()).resolve()
        if path.exists():
            return path, False
    name = candidates[-1]
    if name.startswith(("/", ".", "~")) or name.lower().endswith((".json", ".jsonl", ".csv")):
        return (cwd / Path(name).expanduser()).resolve(), True
    return None, False


def check_datasets(values: list[str], cwd: Path, **check_kwargs) -> tuple[bool, list[tuple[str, str]]]:
    """(launch allowed, [(level, line)]), level one of ok | fail (a file's head line) | error | warning | info; the
    first `error` line says why a launch is blocked. `check_kwargs` go to engine.dataset_check.check_dataset (e.g.
    `cancel=`: a check the user made stale by typing again raises CheckCancelled)."""
    from engine.dataset_check import CheckCancelled, check_dataset

    allowed, out = True, []
    for value in values:
        path, missing = local_dataset(value, Path(cwd))
        if missing:
            allowed = False
            out.append(("error", f"✖ {path} does not exist"))
            continue
        if path is None:
            out.append(("info", f"{value}: not a local file — ms-swift will look it up as a hub dataset id"))
            continue
        try:
            report = check_dataset(path, **check_kwargs)
        except CheckCancelled:
            raise
        except Exception as exc:  # the checker itself failed: say so, and let ms-swift have its say
            out.append(("warning", f"{path.name}: the dataset check failed ({type(exc).__name__}: {exc})"))
            continue
        head = (f"{'✔' if report.ok else '✖'} {path.name}: {report.rows} rows, "
                f"{_FORMATS.get(report.file_format or '', '?')}, {report.schema or '?'} format")
        if report.errors:
            head += f" — {len(report.errors)} error(s) block the launch"
        elif report.warnings:
            head += f" — {len(report.warnings)} warning(s)"
        out.append(("ok" if report.ok else "fail", head))
        shown = report.errors + report.warnings
        for issue in shown[:MAX_ISSUES_SHOWN]:
            out.append((issue.level, f"  {issue.level}: {path.name} {issue.message}"))
        if len(shown) > MAX_ISSUES_SHOWN:
            out.append(("info", f"  … {len(shown) - MAX_ISSUES_SHOWN} more: swiftdeck check-dataset {path}"))
        allowed = allowed and report.ok
    return allowed, out
