"""docs/DIAGNOSIS.md's table of ms-swift's (and its tools') error messages against the rules: every row's message,
pasted alone as one line, is diagnosed as the row's kind; every rule of engine.diagnosis.catalog has a row; every kind
named in the doc is a kind of engine.diagnose."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from engine import diagnose as dg
from engine.diagnosis import catalog

DOC = Path(__file__).resolve().parents[1] / "docs" / "DIAGNOSIS.md"


@pytest.fixture(autouse=True)
def _isolated_home(home):
    """diagnose may read engine.swift_args' cache under the data dir: never the real user's."""


def _cells(line: str) -> list[str]:
    return [c.strip().replace("\\|", "|") for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]]


def _section(title: str) -> list[list[str]]:
    text = DOC.read_text(encoding="utf-8")
    body = text.split(f"## {title}\n", 1)[1].split("\n## ", 1)[0]
    rows = [_cells(ln) for ln in body.splitlines() if ln.startswith("|")]
    return [r for r in rows[2:]]  # header and --- line


def _message(cell: str) -> str:
    assert cell.startswith("`` ") and cell.endswith(" ``"), cell
    return cell[3:-3]


ROWS = [(_message(r[0]), r[1], r[2]) for r in _section("Messages")]


def test_the_table_is_there():
    assert len(ROWS) >= 60
    assert {k for _, k, _ in ROWS} >= {"invalid_argument", "missing_package", "reward_function_not_found",
                                       "vllm_adapter_failed", "deepspeed_error", "dataset_invalid",
                                       "dataset_not_found", "model_not_found", "killed_by_signal"}
    assert any("3.x" in v for _, _, v in ROWS) and any("4.x" in v for _, _, v in ROWS)


@pytest.mark.parametrize("message, kind", [(m, k) for m, k, _ in ROWS], ids=[f"{k}-{i}" for i, (_, k, _) in
                                                                           enumerate(ROWS)])
def test_each_message_alone_is_its_kind(message, kind):
    d = dg.diagnose(message)
    assert d.kind == kind, d.format()
    assert d.summary and "\n" not in d.summary and d.remedies


def test_every_rule_has_a_row():
    used = {catalog.match(m) for m, _, _ in ROWS}
    missing = [r for r in catalog.RULES if r not in used]
    assert not missing, missing
    assert all(catalog.match(m).kind == k for m, k, _ in ROWS if catalog.match(m))  # the rule agrees with the row


def test_the_kinds_table_names_every_kind():
    named = {r[0] for r in _section("Kinds")}
    assert named == set(dg.KINDS)


def test_the_recordings_table_lists_every_recording_under_its_kind():
    """docs/DIAGNOSIS.md's 'Recorded failures' table names each recorded log (tests/data/failures) in its kind's row
    and version's column."""
    failures = Path(__file__).parent / "data" / "failures"
    listed = {}
    for kind, v3, v4 in _section("Recorded failures"):
        for version, cell in (("3.12.6", v3), ("4.6", v4)):
            for name in re.findall(r"`([^`]+)`", cell):
                listed[name] = (kind, version)
    found = {}
    for sidecar in [*failures.glob("*.json"), *failures.glob("*/*.json")]:
        name = str(sidecar.relative_to(failures).with_suffix(""))
        version = sidecar.parent.name if sidecar.parent != failures else "4.6"
        found[name] = (json.loads(sidecar.read_text())["kind"], version)
    assert listed == found
