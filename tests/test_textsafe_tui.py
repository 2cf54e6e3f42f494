"""The dashboard's log pane and failure card (real Textual, Pilot) on a console log that holds an OSC 52 clipboard
write, cursor/CSI sequences and binary junk: what is drawn holds no escape or control character, and the junk is
shown as markers (␛ ...), not silently dropped."""
from __future__ import annotations

import asyncio
import unicodedata
from pathlib import Path

from engine import runs
from test_textsafe import BINARY, CSI, OSC52, TITLE
from test_tui_support import fixed_clock
from tui.app import SwiftdeckApp
from tui.model import RunSource
from tui.widgets.failure import FailureCard
from tui.widgets.log import LogPane, LogView

FAILURES = Path(__file__).parent / "data" / "failures"


def _bad(text: str, allowed: str = "\t") -> list[str]:
    return sorted({c for c in text if c not in allowed and (unicodedata.category(c) in ("Cc", "Cs")
                                                            or "\u202a" <= c <= "\u202e")})


def test_log_pane_and_failure_card_draw_no_escape_sequence(home, tmp_path):
    real = (FAILURES / "unknown.log").read_bytes().rstrip(b"\n").split(b"\n")
    real[-1] += b" " + OSC52  # the exception line: the failure card quotes it
    junk = [b"[INFO:swift] progress " + CSI + b"done", OSC52 + b" clipboard", TITLE + b" title",
            b"binary " + BINARY, b"\x1b[31m[ERROR:swift] coloured\x1b[0m"]
    console = b"\n".join(junk + real) + b"\n"
    rec = runs.create("sft", ["swift", "sft", "--model", "m"], str(tmp_path), label="junk")
    rec.console_log.write_bytes(console)
    runs.update(rec.id, lambda r: (setattr(r, "status", "failed"), setattr(r, "exit_code", 1)))
    rec = runs.load(rec.id)

    async def go():
        app = SwiftdeckApp(RunSource.of_record(rec), clock=fixed_clock, remember_theme=False)
        async with app.run_test(size=(140, 60)) as pilot:
            pane, view, card = app.query_one(LogPane), app.query_one(LogView), app.query_one(FailureCard)
            for _ in range(400):  # until the console is read and the diagnosis is on the card
                if pane.store is not None and pane.store.complete == console.count(b"\n") and card.diagnosis:
                    break
                await pilot.pause(0.05)
            assert pane.store.complete == console.count(b"\n") and card.diagnosis
            view.action_top()
            await pilot.pause()
            drawn = ["".join(seg.text for seg in view.render_line(y)) for y in range(view.size.height)]
            assert [_bad(line) for line in drawn] == [[]] * len(drawn)
            assert "progress \u241b[2J\u241b[H\u241b[?1049hdone" in drawn[0]  # markers, not silence
            assert drawn[1].startswith("\u241b]52;c;ZWNob") and "clipboard" in drawn[1]
            assert drawn[2].startswith("\u241b]0;owned\u241b\\ title")
            assert drawn[3].startswith("binary \u2400\u2401\u2402")  # (the \n byte ends the line)
            assert drawn[4].startswith("\u240e\u240f")  # after the \r byte, as a terminal shows it
            assert "\u241b\u241c" in drawn[4] and "\ufffd\ufffd" in pane.store.line(4)
            assert all(_bad(pane.store.line(i)) == [] for i in range(pane.store.count))  # beyond the screen too
            assert drawn[5].startswith("[ERROR:swift] coloured")  # colours are only colours: dropped
            shown = str(card.render())
            assert _bad(shown, "\t\n") == [] and "\u241b]52" in shown
            card_text = " ".join(str(v) for v in card.diagnosis.values())
            assert "\x1b" not in card_text and "\x07" not in card_text

    asyncio.run(go())
