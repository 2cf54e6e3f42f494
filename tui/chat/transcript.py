"""Chat transcripts: one JSONL file per checkpoint, appended per message, exportable as Markdown.

Where: `runs_dir()/<run id>/chat/<checkpoint>.jsonl` when the checkpoint's run folder belongs to a registry run,
else `data_dir()/chat/<run folder>-<checkpoint>.jsonl` (the base model: `base-<model folder>.jsonl`).
Records: {"ts", "role": "user"|"assistant"|"clear", "target", "content", ...stats of an answer}.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

from engine import paths, runs


def run_id_for(folder: str | Path | None, current=None) -> str | None:
    """The registry run that wrote the checkpoint `folder` (its run_dir is the folder's parent); `current` (the
    record the dashboard shows) is tried first. None for a folder no record claims."""
    if folder is None:
        return current.id if current is not None else None
    run_dir = Path(folder).resolve().parent
    candidates = ([current] if current is not None else []) + runs.all_runs()
    for rec in candidates:
        if rec.run_dir and Path(rec.run_dir).resolve() == run_dir:
            return rec.id
    return None


def transcript_path(name: str, folder: str | Path | None, run_id: str | None) -> Path:
    """`name`: the target's file name (checkpoint name or base-<model>); `folder`: its checkpoint folder."""
    if run_id is not None and (paths.runs_dir() / run_id).is_dir():
        return paths.runs_dir() / run_id / "chat" / f"{name}.jsonl"
    prefix = f"{Path(folder).resolve().parent.name}-" if folder else ""
    return paths.data_dir() / "chat" / f"{prefix}{name}.jsonl"


def path_for(target, current=None) -> Path:
    """The transcript file of a chat target (tui.chat.target.ChatTarget); `current`: the record of the run shown.
    Reads the registry: call it off the UI thread."""
    return transcript_path(target.name, target.folder, run_id_for(target.folder, current))


def append(path: Path, record: dict) -> None:
    """One line, one write (O_APPEND): a crash loses at most the message being written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    line = json.dumps({"ts": round(time.time(), 3), **record}, ensure_ascii=False) + "\n"
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode("utf-8"))
    finally:
        os.close(fd)


def read(path: Path) -> list[dict]:
    """The records of a transcript; a torn or foreign line is skipped."""
    out = []
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except FileNotFoundError:
        return []
    for line in lines:
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if isinstance(rec, dict) and "role" in rec:
            out.append(rec)
    return out


def answer_stats(rec: dict) -> str:
    """`6 tokens · first token 0.94 s · 5.1 tok/s`, `cancelled`, ... of an assistant record."""
    parts = ["via deploy"] if rec.get("backend") == "deploy" else []
    usage = rec.get("usage") or {}
    if usage.get("completion_tokens") is not None:
        parts.append(f"{usage['completion_tokens']} tokens")
    if rec.get("ttft_s") is not None:
        parts.append(f"first token {rec['ttft_s']:.2f} s")
    elif rec.get("elapsed_s") is not None:
        parts.append(f"{rec['elapsed_s']:.2f} s")
    if rec.get("tokens_per_s"):
        parts.append(f"{rec['tokens_per_s']:.1f} tok/s")
    reason = rec.get("finish_reason")
    if reason and reason != "stop":
        parts.append({"length": "cut at max tokens", "cancelled": "cancelled"}.get(reason, reason))
    return " · ".join(parts)


def _clock(ts: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts)) if ts else "?"


def to_markdown(records: list[dict], title: str) -> str:
    out = [f"# Chat transcript: {title}", ""]
    n = 0
    fresh = True
    for rec in records:
        role = rec.get("role")
        if role == "clear":
            fresh = True
            continue
        if fresh:
            n += 1
            out += ["---", "", f"## Conversation {n} ({_clock(rec.get('ts'))})", ""]
            fresh = False
        side = f" [{rec['side']}, vs {rec['vs']}]" if rec.get("side") else ""
        if role == "user":
            out += [f"**You**{side}:", "", rec.get("content", ""), ""]
        else:
            stats = answer_stats(rec)
            settings = rec.get("settings") or {}
            temp = settings.get("temperature")
            meta = " · ".join(x for x in (f"temperature {temp:g}" if temp is not None else "", stats) if x)
            out += [f"**{rec.get('target', 'assistant')}**{side}" + (f" ({meta})" if meta else "") + ":", "",
                    rec.get("content", "") or "*(no text)*", ""]
    if n == 0:
        out += ["*(no messages)*", ""]
    return "\n".join(out)


def export_markdown(path: Path, title: str) -> Path:
    """Write `<transcript>.md` next to the JSONL (atomically) and return its path."""
    records = read(path)
    if not records:
        raise FileNotFoundError(f"nothing to export: no messages in {path}")
    md = path.with_suffix(".md")
    tmp = md.with_suffix(f".md.tmp{os.getpid()}")
    tmp.write_text(to_markdown(records, title), encoding="utf-8")
    os.replace(tmp, md)
    return md
