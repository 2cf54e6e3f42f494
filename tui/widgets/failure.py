"""The failure card: why the run shown failed (kind, summary, evidence, numbered remedies) and, after a CUDA OOM,
what swiftdeck's runner cleaned up (the process tree it stopped, GPU memory before/after, seconds).

The card only displays: the verdict is the engine's engine.events.Failed, made by the run's observer (the runner's
recorded diagnosis, or the console diagnosed once) and handed down with each poll's Update; the clean-up record is
read off the run record. Any input, garbage included, gives a card or none, never a traceback in the UI.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from rich.text import Text
from textual.geometry import Size

from engine.command import TRAINING_KINDS, swift_args_of
from engine.events import Failed
from engine.relaunch import remedy_flags
from tui.model import FailureInfo, RunSource
from tui.widgets import header
from tui.widgets.style import BOLD, INK, ink, redraw_on_theme_change

FAILED = ("failed", "lost")
CARD_REMEDIES = {True: 3, False: 6}  # remedies listed on a short (< 36 rows) / tall screen; `r` shows them all
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
_FRAME = re.compile(r'^\s*File "[^"]*", line \d+')
_CARETS = re.compile(r"^\s*[\^~]+\s*$")


# ---------------------------------------------------------------- without Textual


def clean(text: str) -> str:
    """One line of console text made safe to draw (no control characters, tabs and newlines as spaces)."""
    return _CONTROL.sub("�", str(text).replace("\t", "    ").replace("\n", " "))


def _items(value) -> list:
    return list(value) if isinstance(value, (list, tuple)) else []


def clean_up_of(source: RunSource | None) -> dict | None:
    """What the runner recorded about its clean-up after a fatal line (`meta["clean_up"]`), when it did."""
    rec = source.record if source else None
    meta = rec.meta if rec is not None and isinstance(rec.meta, dict) else {}
    clean_up = meta.get("clean_up")
    return clean_up if isinstance(clean_up, dict) else None


def evidence_lines(evidence: str, n: int = 2) -> list[str]:
    """The last `n` telling lines of the evidence: no traceback frame lines, their source lines, or ^^^ marks."""
    lines, skip_next = [], False
    for raw in str(evidence).splitlines():
        if _FRAME.match(raw):
            skip_next = True
            continue
        if skip_next or not raw.strip() or _CARETS.match(raw):
            skip_next = False
            continue
        lines.append(clean(raw.strip()))
    return lines[-n:]


def applicable(remedy: str) -> bool:
    """A remedy that `relaunch with these changes` can apply: it names a flag and a value (engine.relaunch)."""
    return bool(remedy_flags(remedy))


def fmt_mem(n) -> str:
    """GPU memory as nvidia-smi and CUDA's own messages count it (MiB / GiB)."""
    if not isinstance(n, (int, float)) or n < 0:
        return "?"
    return f"{n / 2**30:.2f} GiB" if n >= 2**30 else f"{n / 2**20:.0f} MiB"


def clean_up_lines(c: dict) -> list[str]:
    """What the runner did after the fatal line (engine.runner.clean_up_after's record), in two lines."""
    kind = str(c.get("kind") or "fatal").replace("cuda_oom", "CUDA OOM")
    if "seconds_to_clean" not in c:
        return [f"clean-up: the {kind} line was seen; stopping the whole process tree …"]
    pids = [str(p) for p in _items(c.get("tree_pids"))]
    secs = c.get("seconds_to_clean")
    took = f" in {secs:.1f} s" if isinstance(secs, (int, float)) else ""
    left = [str(p) for p in _items(c.get("left"))]
    out = [f"clean-up: {len(pids)} process{'es' if len(pids) != 1 else ''} stopped{took}, "
           + (f"STILL ALIVE: {' '.join(left)}" if left else "none left") + f" (pids {' '.join(pids) or '-'})"]
    if c.get("gpu_available"):
        free = _items(c.get("gpu_free_after"))
        out.append(f"GPU memory of the run: {fmt_mem(c.get('gpu_mem_before'))} before, "
                   f"{fmt_mem(c.get('gpu_mem_after'))} after"
                   + (" (" + ", ".join(f"GPU{i} {fmt_mem(f)} free" for i, f in enumerate(free)) + ")" if free else ""))
    else:
        out.append("GPU memory of the run: not measured (no NVML on this machine)")
    return out


@dataclass
class CardState:
    """Everything the card shows, for the run shown now."""

    key: str
    status: str  # failed | lost | running (clean-up under way) | unknown (a bare log)
    exit_code: int | None
    line: str  # the console's last traceback line (model.FailureInfo), shown while diagnosing
    diagnosis: dict | None = None  # Failed.to_json() of the engine's verdict
    clean_up: dict | None = None
    pending: bool = False  # a diagnosis is still to come
    relaunchable: bool = False  # a `swift sft` run that ended: `r` relaunches it


def card_state(failure: FailureInfo | None, source: RunSource | None, failed: Failed | None = None) \
        -> CardState | None:
    """What the card shows for this poll, or None (no card)."""
    if source is None:
        return None
    rec = source.record
    clean_up = clean_up_of(source)
    if failed is not None and failed.live and rec is not None and not rec.active and rec.status not in FAILED:
        failed = None  # a fatal line the run came through after all
    if rec is not None and failure is None and clean_up is None and failed is None:
        return None  # a healthy registry run
    diagnosis = failed.to_json() if failed is not None else None
    if rec is None:  # a bare log: a card only when the engine found a failure in it
        return CardState(source.key, "unknown", None, "", diagnosis) if diagnosis else None
    status = failure.status if failure else rec.status
    return CardState(source.key, status, rec.exit_code, failure.line if failure else "", diagnosis, clean_up,
                     pending=diagnosis is None, relaunchable=status in FAILED and rec.kind in TRAINING_KINDS
                     and swift_args_of(rec) is not None)


# ---------------------------------------------------------------- the widget


class FailureCard(header.FailureCard):
    """Replaces header.FailureCard in the dashboard (same slot, id #failure). The app calls `show(failure, source,
    failed)` on the UI thread with each poll's Update, and `set_screen_size` when the terminal's size changes."""

    COMPONENT_CLASSES = INK

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.state: CardState | None = None
        self.screen_size = Size(80, 24)  # the terminal's (data down): a short one lists fewer remedies
        self._drawn_for: tuple[int, bool] | None = None

    @property
    def diagnosis(self) -> dict | None:
        return self.state.diagnosis if self.state else None

    def show(self, failure: FailureInfo | None, source: RunSource | None = None, failed: Failed | None = None) -> None:
        state = card_state(failure, source, failed)
        self.display = state is not None
        if state != self.state:
            self.state = state
            self._render_state()

    def on_mount(self) -> None:
        redraw_on_theme_change(self, self._render_state)

    def set_screen_size(self, size: Size) -> None:
        self.screen_size = size
        self.on_resize()

    def on_resize(self) -> None:
        if self.state is not None and self._drawn_for != self._layout_key():
            self._render_state()

    # ------------------------------------------------------------ drawing

    def _layout_key(self) -> tuple[int, bool]:
        return self.content_region.width, self.screen_size.height < 36

    def _render_state(self) -> None:
        if self.state is not None:
            self._drawn_for = width, short = self._layout_key()
            width = width or self.screen_size.width - 3  # hidden until now: the card spans the screen (border, padding)
            self.update(self.render_card(self.state, max(20, width), short))

    def render_card(self, s: CardState, width: int, short: bool = False) -> Text:
        err, muted, warn = (ink(self, n) for n in ("error", "muted", "warning"))
        d = s.diagnosis
        if s.status == "unknown":
            head = "✖ This log shows a failure"
        elif s.status in FAILED:
            head = "✖ Run failed" if s.status == "failed" else f"✖ Run {s.status}"
            head += f" (exit code {s.exit_code})" if s.exit_code is not None else ""
        elif s.status in ("starting", "running", "stopping"):  # clean-up under way, the record not ended yet
            head = "✖ Run stopping after a fatal error"
        else:
            head = f"✖ Run {s.status}"
        text = Text(no_wrap=False)
        text.append(head, err + BOLD)
        if d:
            text.append(" · ")
            text.append(d["kind"], warn + BOLD)
            text.append(": " + clean(d["summary"]), BOLD)
        elif s.pending and s.status in FAILED:
            text.append(": ")
            text.append("diagnosing the console log …", muted)
        text.truncate(3 * width - width // 3, overflow="ellipsis")  # at most 3 lines, room left for word wrap
        lines: list[Text] = []
        evidence = evidence_lines(d["evidence"], 1 if short else 2) if d else []
        if not evidence and s.line:
            evidence = [clean(s.line)]
        for i, line in enumerate(evidence):
            lines.append(Text.assemble(("  evidence: " if i == 0 else "            ", muted), line))
        for line in clean_up_lines(s.clean_up) if s.clean_up else []:
            lines.append(Text.assemble(("  ", ""), (line, warn)))
        remedies = d["remedies"] if d else []
        shown = remedies[:CARD_REMEDIES[short]]
        for n, remedy in enumerate(shown, 1):
            style = "" if applicable(remedy) else muted
            lines.append(Text.assemble((f"  {n}. ", "bold"), (clean(remedy), style)))
        hidden = len(remedies) - len(shown)
        more = f" ({hidden} more remed{'ies' if hidden > 1 else 'y'} there)" if hidden else ""
        if s.relaunchable:
            hint = f"  r: relaunch with these changes{more}   t: the Traceback"
        else:
            hint = "  t: the Traceback" + (f"   ({hidden} more: swiftdeck diagnose {s.key})" if hidden else "")
        lines.append(Text(hint, muted))
        for line in lines:
            line.truncate(width, overflow="ellipsis")
            text.append("\n")
            text.append_text(line)
        return text
