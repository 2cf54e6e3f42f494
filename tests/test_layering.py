"""engine/ never imports the UI, and the dashboard's widgets start no process (import-linter contracts in
pyproject.toml), checked for real."""
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_import_linter_contract_holds():
    lint = Path(sys.executable).with_name("lint-imports")
    proc = subprocess.run([str(lint)], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "engine never imports the UI KEPT" in proc.stdout
    assert "panes and screens start and stop processes only through engine.ops KEPT" in proc.stdout
    assert "widgets start and stop no process KEPT" in proc.stdout  # the chat worker, deploy, merge, stop: the app's
