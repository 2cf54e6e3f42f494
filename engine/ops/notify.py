"""Being told when a run ends: the notification text per outcome (finished, failed with its diagnosis kind,
out of memory, stopped, lost), and the terminal escape sequences that carry it — a desktop notification through the
terminal (OSC 9, OSC 777;notify; both travel over SSH) and the bell. Any text that goes into a sequence is made safe
first: control characters are removed, so a run label cannot inject escape sequences of its own.

    n = notice(rec)                                      # rec: an ended engine.runs.RunRecord
    app.notify(n.body, title=n.title, severity=n.severity)
    terminal.write(sequences(n, desktop=True, bell=True, tmux="TMUX" in os.environ))
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from engine.runs import RunRecord

OUTCOMES = ("finished", "failed", "oom", "stopped", "lost")
OOM_KINDS = ("cuda_oom", "cpu_oom")
MAX_TITLE = 80
MAX_BODY = 240
ESC, BEL, ST = "\x1b", "\x07", "\x1b\\"
# C0 and C1 controls and DEL (ESC, BEL, CSI 0x9b, OSC 0x9d, ST 0x9c among them), and the bidirectional overrides
# that make text read differently from what it is.
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def clean(text: str, limit: int = MAX_BODY) -> str:
    """`text` without control characters (line breaks and tabs become spaces), at most `limit` characters."""
    text = " ".join(_UNSAFE.sub(lambda m: " " if m.group() in "\t\n\r\v\f" else "", str(text)).split())
    return text if len(text) <= limit else text[:limit - 1] + "…"


# ---------------------------------------------------------------- the text


@dataclass(frozen=True)
class Notice:
    outcome: str  # one of OUTCOMES
    title: str  # "run demo sft-… finished"
    body: str  # the details: step, loss, diagnosis, where the last checkpoint is
    severity: str  # "information" | "warning" | "error" (a toast's severity)

    @property
    def text(self) -> str:
        return f"{self.title}: {self.body}" if self.body else self.title


def outcome(rec: RunRecord) -> str | None:
    """How a run ended (None while it is active)."""
    if rec.active:
        return None
    if rec.status == "finished":
        return "finished"
    if rec.status in ("stopped", "lost"):
        return rec.status
    diagnosis = rec.meta.get("diagnosis") or {}
    kind = diagnosis.get("kind")
    sigkill = kind == "killed_by_signal" and (diagnosis.get("details") or {}).get("signal") == 9
    return "oom" if kind in OOM_KINDS or sigkill else "failed"


def _name(rec: RunRecord) -> str:
    return f"{rec.label} ({rec.id})" if rec.label else rec.id


def _duration(rec: RunRecord) -> str:
    if not rec.ended_at:
        return ""
    s = int(max(0.0, rec.ended_at - rec.started_at))
    h, rest = divmod(s, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h {m:02d}m" if h else f"{m}m {s:02d}s" if m else f"{s}s"


def notice(rec: RunRecord, summary=None) -> Notice:
    """The notification for an ended run. `summary`: its engine.ops.runs.RunSummary (read when not given)."""
    if summary is None:
        from engine.ops.runs import RunSource, quick_summary

        summary = quick_summary(RunSource.of_record(rec))
    what = outcome(rec) or "running"
    facts = []
    if summary.step is not None:
        facts.append(f"step {summary.step}" + (f"/{summary.max_steps}" if summary.max_steps else ""))
    if summary.last_loss is not None:
        facts.append(f"loss {summary.last_loss:.4g}")
    if took := _duration(rec):
        facts.append(f"after {took}")
    diagnosis = rec.meta.get("diagnosis") or {}
    name = _name(rec)
    if what == "finished":
        title, severity, detail = f"run {name} finished", "information", ""
    elif what == "stopped":
        title, severity, detail = f"run {name} stopped", "warning", ""
    elif what == "lost":
        title, severity = f"run {name} lost", "error"
        detail = "its process is gone without an exit code"
    elif what == "oom":
        title, severity = f"run {name} ran out of memory", "error"
        detail = f"{diagnosis.get('kind')}: {diagnosis.get('summary', '')}".rstrip(": ")
    elif what == "failed":
        title, severity = f"run {name} failed", "error"
        kind = diagnosis.get("kind") or f"exit code {rec.exit_code}"
        detail = f"{kind}: {diagnosis['summary']}" if diagnosis.get("summary") else kind
    else:
        title, severity, detail = f"run {name} is {rec.status}", "information", ""
    body = ", ".join(facts)
    if detail:
        body = f"{detail} ({body})" if body else detail
    return Notice(what, clean(title, MAX_TITLE), clean(body), severity)


# ---------------------------------------------------------------- the escape sequences


def osc9(text: str) -> str:
    """A desktop notification (iTerm2, WezTerm, kitty, Ghostty, Windows Terminal, ConEmu): ESC ] 9 ; text ST."""
    text = clean(text)
    if re.match(r"\d", text):  # ConEmu reads `9;<number>;…` as one of its own commands (e.g. 9;4 progress)
        text = " " + text
    return f"{ESC}]9;{text}{ST}"


def osc777(title: str, body: str) -> str:
    """A desktop notification (urxvt, foot, Ghostty, VTE terminals): ESC ] 777 ; notify ; title ; body ST. The title
    cannot hold a `;` (it would end the title)."""
    return f"{ESC}]777;notify;{clean(title, MAX_TITLE).replace(';', ',')};{clean(body)}{ST}"


def tmux_passthrough(seq: str) -> str:
    """`seq` wrapped for tmux to hand it to the outer terminal (tmux's `allow-passthrough on`)."""
    return f"{ESC}Ptmux;{seq.replace(ESC, ESC + ESC)}{ST}"


def sequences(n: Notice, *, desktop: bool = True, bell: bool = True, tmux: bool = False) -> str:
    """What to write to the terminal for a notice: OSC 9 and OSC 777 (wrapped for tmux when inside it) and the
    bell (tmux handles the bell itself: it marks the window and passes it on)."""
    out = ""
    if desktop:
        for seq in (osc9(n.text), osc777(n.title, n.body)):
            out += tmux_passthrough(seq) if tmux else seq
    if bell:
        out += BEL
    return out
