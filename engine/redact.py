"""Secrets out of what swiftdeck stores and shows: `--api_key sk-...` in a run's command, `hub_token='hf_...'` in
ms-swift's logged arguments, `HF_TOKEN=...` in its environment.

A name is secret when its last word is a secret word (`--api_key`, `--hub_token`, `--swanlab_secret`,
`HF_TOKEN`, `password`, ...), except a few ms-swift options that only look like one (`--vera_projection_prng_key`,
`pad_token`, ...). `token_acc` or `max_new_tokens` are not secret: the last word decides.
"""
from __future__ import annotations

import re

MASK = "***"

SECRET_FLAGS = ("--api_key", "--hub_token", "--swanlab_token", "--swanlab_secret")  # the ones ms-swift 4.6 has
SECRET_WORDS = {"key", "token", "secret", "password", "passwd", "apikey", "credential", "credentials"}
NOT_SECRET = {"vera_projection_prng_key", "reft_layer_key", "sort_key", "group_key"}
# `pad_token`, `eos_token`, ...: tokenizer vocabulary, not credentials
TOKEN_KINDS = {"pad", "eos", "bos", "unk", "sep", "cls", "mask", "special", "start", "end", "image", "video",
               "audio", "vision", "think", "response", "query", "placeholder", "new", "added", "stop"}


def is_secret_name(name: str, *, bare: bool = False) -> bool:
    """`name` is a flag, a keyword or a variable name. `bare`: a lone secret word (`--token`) counts too."""
    norm = name.lstrip("-").lower().replace("-", "_").strip("_")
    words = [w for w in norm.split("_") if w]
    if not words or norm in NOT_SECRET or words[-1] not in SECRET_WORDS:
        return False
    if len(words) == 1:
        return bare or words[0] not in ("key", "token")
    return words[-1] not in ("key", "token") or words[-2] not in TOKEN_KINDS


def redact_argv(argv: list[str]) -> list[str]:
    """argv with the value of every secret flag replaced by ***, in both `--flag VALUE` and `--flag=VALUE`."""
    out = list(argv)
    for i, token in enumerate(out):
        if not token.startswith("-") or token == MASK:
            continue
        name, eq, value = token.partition("=")
        if not is_secret_name(name, bare=True):
            continue
        if eq:
            out[i] = f"{name}={MASK}" if value else token
        elif i + 1 < len(out) and not out[i + 1].startswith("--"):
            out[i + 1] = MASK
    return out


def masked_flags(argv: list[str]) -> list[str]:
    """The secret flags whose value in `argv` is the mask itself (a command copied from a stored record)."""
    out = []
    for i, token in enumerate(argv):
        name, eq, value = token.partition("=")
        if token.startswith("-") and is_secret_name(name, bare=True) and (
                (eq and value == MASK) or (not eq and i + 1 < len(argv) and argv[i + 1] == MASK)):
            out.append(name)
    return out


def redact_env(env: dict[str, str]) -> dict[str, str]:
    return {k: (MASK if v and is_secret_name(k, bare=True) else v) for k, v in env.items()}


_NAME = r"[A-Za-z_][A-Za-z0-9_.-]*"
_VALUE = r"""'[^'\n]*'|"[^"\n]*"|[^\s,;)}\]'"]+"""
# --flag VALUE (a value never starts with --) | --flag=VALUE | name=VALUE | name: VALUE | "name": "VALUE" | 'name': 'VALUE'
_ASSIGN = re.compile(
    rf"""(?<![\w.-])(?P<head>(?P<dash>--?)?(?P<q>["']?)(?P<name>{_NAME})(?P=q))"""
    rf"""(?P<sep>\s*[=:]\s*|(?(dash)\s+|(?!)))(?P<value>(?!--)(?:{_VALUE}))""")
_BEARER = re.compile(r"(?i)\b(bearer\s+)[A-Za-z0-9._~+/=-]{8,}")
# well-known key shapes, wherever they appear (OpenAI-style sk-..., Hugging Face hf_...)
_KEY_SHAPES = re.compile(r"\b(?:sk-[A-Za-z0-9_-]{16,}|hf_[A-Za-z0-9]{30,})\b")
_PLAIN = {"none", "null", "false", "true", "''", '""', MASK}


def _assignment(m: re.Match) -> str:
    name, sep, value = m["name"], m["sep"], m["value"]
    if not is_secret_name(name, bare=bool(m["dash"])) or value.lower() in _PLAIN:
        return m[0]
    quote = value[0] if value[0] in "'\"" and value[-1] == value[0] and len(value) > 1 else ""
    return f"{m['head']}{sep}{quote}{MASK}{quote}"


def redact_text(line: str) -> str:
    """One line of a log with secret values replaced by *** (ms-swift's argument dumps, command lines, JSON)."""
    if not line:
        return line
    line = _ASSIGN.sub(_assignment, line)
    line = _BEARER.sub(lambda m: m[1] + MASK, line)
    return _KEY_SHAPES.sub(MASK, line)


def redact_data(obj):
    """A JSON-like value with redact_text applied to every string in it (a log excerpt in a report)."""
    if isinstance(obj, str):
        return "\n".join(redact_text(line) for line in obj.split("\n"))
    if isinstance(obj, dict):
        return {k: redact_data(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [redact_data(v) for v in obj]
    return obj
