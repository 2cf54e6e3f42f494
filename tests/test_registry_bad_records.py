"""Issue 14.9: one bad record does not break the registry: it is skipped, the rest works, and it is named once."""
from __future__ import annotations

import json

import pytest

from engine import cli, leftovers, runs
from engine.errors import SwiftdeckError


def _bad_records() -> tuple[runs.RunRecord, runs.RunRecord, runs.RunRecord]:
    good = runs.create("sft", ["swift", "sft"], "/tmp", label="good")
    runs.update(good.id, lambda r: (setattr(r, "status", "finished"), setattr(r, "exit_code", 0)))
    dated = runs.create("sft", ["swift", "sft"], "/tmp")
    path = dated.folder / "record.json"
    data = json.loads(path.read_text())
    data.update(status="finished", exit_code=0, started_at="yesterday")
    path.write_text(json.dumps(data))
    cut = runs.create("deploy", ["swift", "deploy"], "/tmp")
    path = cut.folder / "record.json"
    path.write_bytes(path.read_bytes()[:40])
    return good, dated, cut


def test_bad_records_are_skipped_and_named(home, capsys):
    good, dated, cut = _bad_records()
    records, bad = runs.scan()
    assert [r.id for r in records] == [good.id]
    assert {(b.path.parent.name, b.reason) for b in bad} == {
        (dated.id, 'started_at is not a number ("yesterday")'), (cut.id, "not valid JSON (truncated?)")}

    assert cli.main(["runs"]) == 0
    out, err = capsys.readouterr()
    assert good.id in out and dated.id not in out and "no runs yet" not in out
    assert err.count("\n") == 1 and err.startswith("swiftdeck: 2 unreadable run records: ")
    assert 'started_at is not a number ("yesterday")' in err and str(cut.folder / "record.json") in err

    assert runs.resolve("sft-").id == good.id  # prefix lookup
    assert leftovers.find() == []
    assert cli.main(["leftovers"]) == 0
    assert "2 unreadable run records" in capsys.readouterr().err

    for ref in (dated.id, cut.id):
        with pytest.raises(runs.BadRecord) as exc:
            runs.load(ref)
        assert isinstance(exc.value, SwiftdeckError) and str(exc.value).startswith("unreadable run record ")
        assert cli.main(["stop", ref]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"swiftdeck: unreadable run record {runs.runs_dir() / ref / 'record.json'}: ")
        assert err.count("\n") == 1


def test_the_dashboard_lists_the_good_runs(home):
    from tui import model

    good, _, _ = _bad_records()
    assert [s.record.id for s in model.discover()] == [good.id]
