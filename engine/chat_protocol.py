"""JSON-lines protocol between a chat client and `python -m engine.chat_worker` (docs/CHAT_PROTOCOL.md).

One JSON object per line, UTF-8. Requests go to the worker's stdin and carry an `op`; replies come back on its
stdout and carry an `event` plus the request's `id` (when it had one). This module is pure Python (no torch), so
the client side and the TUI can import it.
"""
from __future__ import annotations

import json
from typing import Any

PROTOCOL_VERSION = 1

NUM = (int, float)
OPT_STR = (str, type(None))
OPT_NUM = (int, float, type(None))
OPT_INT = (int, type(None))
ID = (str, int)

# op -> {field: (allowed types, required)}. Unknown fields are rejected so that a typo is not silently ignored.
REQUESTS: dict[str, dict[str, tuple[tuple[type, ...], bool]]] = {
    "load": {
        "id": (ID, False),
        "model": ((str,), True),
        "model_type": (OPT_STR, False),
        "template": (OPT_STR, False),
        "system": (OPT_STR, False),
        "torch_dtype": (OPT_STR, False),
    },
    "adapter": {"id": (ID, False), "name": ((str,), True), "path": ((str,), True)},
    "chat": {
        "id": (ID, True),
        "target": ((str,), False),
        "conv": ((str,), False),
        "prompt": ((str,), False),
        "messages": ((list,), False),
        "system": (OPT_STR, False),
        "temperature": (OPT_NUM, False),
        "top_p": (OPT_NUM, False),
        "top_k": (OPT_INT, False),
        "max_new_tokens": (OPT_INT, False),
        "repetition_penalty": (OPT_NUM, False),
    },
    "cancel": {"id": (ID, True)},
    "clear": {"id": (ID, False), "conv": ((str,), False)},
    "stats": {"id": (ID, False)},
    "shutdown": {"id": (ID, False)},
}

EVENTS = ("ready", "loaded", "adapter", "token", "done", "cleared", "stats", "error", "bye")

BASE = "base"  # the chat target that means "no adapter"
DEFAULT_CONV = "default"
ROLES = ("system", "user", "assistant")


class ProtocolError(ValueError):
    """A line that is not a valid request or event; the message is one clear line for the user."""


def encode(msg: dict[str, Any]) -> bytes:
    """One message as one line (no embedded newlines: JSON escapes them)."""
    return (json.dumps(msg, ensure_ascii=False, separators=(",", ":")) + "\n").encode("utf-8")


def _load_line(line: bytes | str) -> dict[str, Any]:
    if isinstance(line, bytes):
        line = line.decode("utf-8", errors="replace")
    try:
        msg = json.loads(line)
    except json.JSONDecodeError as e:
        raise ProtocolError(f"not JSON ({e.msg} at column {e.colno}): {line.strip()[:80]!r}") from None
    if not isinstance(msg, dict):
        raise ProtocolError(f"expected a JSON object, got {type(msg).__name__}")
    return msg


def _type_names(types: tuple[type, ...]) -> str:
    return " or ".join("null" if t is type(None) else t.__name__ for t in types)


def decode_request(line: bytes | str) -> dict[str, Any]:
    """Parse and validate one request line; raise ProtocolError with a one-line reason."""
    msg = _load_line(line)
    op = msg.get("op")
    spec = REQUESTS.get(op) if isinstance(op, str) else None
    if spec is None:
        raise ProtocolError(f"unknown op {op!r}; expected one of {', '.join(REQUESTS)}")
    for key, value in msg.items():
        if key == "op":
            continue
        if key not in spec:
            raise ProtocolError(f"{op}: unknown field {key!r}; allowed: {', '.join(spec)}")
        types = spec[key][0]
        if isinstance(value, bool) or not isinstance(value, types):  # bool is an int subclass: never a number here
            raise ProtocolError(f"{op}: field {key!r} must be {_type_names(types)}, got {json.dumps(value)[:40]}")
    missing = [k for k, (_, required) in spec.items() if required and k not in msg]
    if missing:
        raise ProtocolError(f"{op}: missing field {', '.join(repr(k) for k in missing)}")
    if op == "chat":
        _check_chat(msg)
    return msg


def _check_chat(msg: dict[str, Any]) -> None:
    if ("prompt" in msg) == ("messages" in msg):
        raise ProtocolError("chat: give exactly one of 'prompt' (uses the conversation history) or 'messages'")
    for i, m in enumerate(msg.get("messages") or []):
        if not (isinstance(m, dict) and m.get("role") in ROLES and isinstance(m.get("content"), str)):
            raise ProtocolError(f"chat: messages[{i}] must be {{'role': system|user|assistant, 'content': str}}")
    if "messages" in msg and (not msg["messages"] or msg["messages"][-1]["role"] != "user"):
        raise ProtocolError("chat: 'messages' must end with a user message")
    for key, lo, hi in (("temperature", 0, 100), ("top_p", 0, 1), ("max_new_tokens", 1, 1 << 20), ("top_k", 0, 1 << 20)):
        value = msg.get(key)
        if value is not None and not lo <= value <= hi:
            raise ProtocolError(f"chat: {key} must be between {lo} and {hi}, got {value}")


def decode_event(line: bytes | str) -> dict[str, Any]:
    """Parse one worker output line (client side)."""
    msg = _load_line(line)
    if msg.get("event") not in EVENTS:
        raise ProtocolError(f"unknown event {msg.get('event')!r}")
    return msg


def event(kind: str, req_id: Any = None, /, **fields: Any) -> dict[str, Any]:
    """Build an event; `id` is included only when the request had one."""
    msg: dict[str, Any] = {"event": kind}
    if req_id is not None:
        msg["id"] = req_id
    msg.update(fields)
    return msg


def error(req_id: Any, message: str, op: str | None = None) -> dict[str, Any]:
    return event("error", req_id, op=op, message=message)
