"""Evidence from a console log: clean lines (tqdm redraws split, ANSI colours and torchrun's `[rankN]:` prefixes
removed), the Python tracebacks in it grouped into chains, the error lines that stand without a traceback (what a
user pastes, or what is left when the traceback scrolled off), and the run's arguments as the log shows them."""
from __future__ import annotations

import ast
import re
from dataclasses import dataclass

_EVIDENCE_CHARS = 2500

# ---- text normalisation and traceback parsing ------------------------------------------------------------

_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
_RANK = re.compile(r"^\[(?:rank|default)\d+\]:\s?")
# a tqdm bar (known or unknown total) that a later line was glued to: "Train:  0%|   | 0/2 [00:00<?, ?it/s]"
_TQDM = re.compile(r"^.*?(?:\|\s*\S+/\S+ |\d+ [A-Za-z]+ )\[[0-9:?]+(?:<[0-9:?]*)?, [^\]]*\]")
_EXC_HEAD = re.compile(r"^(?P<type>(?:[A-Za-z_]\w*\.)*(?:_*[A-Z]\w*(?:Error|Exception|Interrupt|Exit|Failure|Invalid)"
                       r"|Exception|KeyboardInterrupt|StopIteration))(?::\s?(?P<msg>.*))?$")
_LOG_PREFIX = re.compile(r"^\[(?:INFO|WARNING|ERROR|DEBUG|CRITICAL):swift\]|^\d{4}-\d\d-\d\d[ T]\d\d:\d\d"
                         r"|^\[?[WEIF]\d{4} \d\d:\d\d:\d\d")  # swift logger, logging, glog/torchrun
_LOGGED_TB = re.compile(r"\[(?:INFO|WARNING|ERROR|DEBUG):swift\]\s*$")  # logger.info(traceback.format_exc())
_CHAIN = ("The above exception was the direct cause", "During handling of the above exception")
_FRAME = re.compile(r'^\s+File "(?P<file>[^"]+)", line \d+, in (?P<func>\S+)')
_WRAPPERS = ("ChildFailedError", "CalledProcessError")


def _clean_lines(text: str) -> list[str]:
    text = _ANSI.sub("", text)
    out = []
    for raw in text.split("\n"):
        for part in raw.split("\r"):
            part = _RANK.sub("", part)
            for _ in range(4):
                if "/s]" not in part and "/it]" not in part:
                    break
                stripped = _RANK.sub("", _TQDM.sub("", part, count=1))
                if stripped == part:
                    break
                part = stripped
            part = part.rstrip()
            if part:
                out.append(part)
            elif out and out[-1] != "":
                out.append("")  # keep one blank line: it ends multi-line exception messages
    return out


@dataclass
class _Exc:
    type: str
    message: str
    index: int  # line index of the exception line
    start: int  # line index of its "Traceback" line
    frames: list[str]  # "file:function" of each frame, and its source line
    logged: bool  # ms-swift logged this traceback and went on

    @property
    def short_type(self) -> str:
        return self.type.rsplit(".", 1)[-1]

    def text(self) -> str:
        return f"{self.type}: {self.message}" if self.message else self.type


def _parse_tracebacks(lines: list[str]) -> list[list[_Exc]]:
    """Exceptions grouped into chains ("The above exception was the direct cause ...")."""
    groups: list[list[_Exc]] = []
    chained = False
    i, n = 0, len(lines)
    while i < n:
        line = lines[i]
        if any(c in line for c in _CHAIN):
            chained = True
            i += 1
            continue
        pos = line.find("Traceback (most recent call last):")
        if pos < 0:
            i += 1
            continue
        start, logged, frames = i, bool(_LOGGED_TB.search(line[:pos])), []
        i += 1
        while i < n and (lines[i].startswith((" ", "\t")) or lines[i] == ""):
            m = _FRAME.match(lines[i])
            if m:
                frames.append(f"{m['file']}:{m['func']}")
            elif lines[i].strip() and not set(lines[i].strip()) <= set("^~ "):
                frames.append(lines[i].strip())  # the source line: names the argument involved
            i += 1
        if i >= n:
            break
        m = _EXC_HEAD.match(lines[i])
        if not m:  # not a Python traceback end we understand; keep scanning from here
            chained = False
            continue
        msg, j = [m["msg"] or ""], i + 1
        while j < n and len(msg) < 20 and lines[j] and not lines[j].startswith("Traceback") \
                and not _LOG_PREFIX.match(lines[j]) and not any(c in lines[j] for c in _CHAIN) \
                and not _FRAME.match(lines[j]) and not set(lines[j].strip()) <= set("^~ "):
            msg.append(lines[j])
            j += 1
        exc = _Exc(m["type"], "\n".join(msg).strip(), i, start, frames,
                   logged or bool(chained and groups and groups[-1][0].logged))  # a logged chain is logged
        if chained and groups:
            groups[-1].append(exc)
        else:
            groups.append([exc])
        chained = False
        i = j
    return groups


def _fatal_chain(groups: list[list[_Exc]]) -> list[_Exc]:
    """The chain that ended the process: the last one not merely logged, skipping torchrun's wrapper."""
    real = [g for g in groups if not all(e.logged for e in g)]
    for g in reversed(real):
        if not all(e.short_type in _WRAPPERS for e in g):
            return g
    return real[-1] if real else []


# ---- args: explicit > the printed `args: XxxArguments(` block > the `run sh:` argv ----------------------

_RUN_SH = re.compile(r"run sh: `(?P<cmd>[^`]*)`")
_ARGS_BLOCK = re.compile(r"args: (?P<cls>\w+)Arguments\($")
_ARGS_CLASS = {"Sft": "sft", "Pretrain": "pt", "RLHF": "rlhf", "Infer": "infer", "Deploy": "deploy",
               "Export": "export", "Eval": "eval", "Sampling": "sample"}  # for `python -m swift.cli.X` logs
_SETTING = re.compile(r"\[INFO:swift\] Setting args\.(?P<k>\w+): (?P<v>.+)$")
_KV = re.compile(r"^(?P<k>[a-z_][a-z0-9_]*)=(?P<v>.*?),?$")


def _argv_to_dict(argv: list[str]) -> dict:
    out, key = {}, None
    for tok in argv:
        if tok.startswith("--"):
            key = tok[2:].replace("-", "_")
            if "=" in key:
                key, val = key.split("=", 1)
                out[key], key = val, None
            else:
                out[key] = True
        elif key is not None:
            out[key] = tok if out[key] is True else (
                [*out[key], tok] if isinstance(out[key], list) else [out[key], tok])
    return out


def _log_args(lines: list[str]) -> tuple[dict, str | None]:
    """Args from the log, and the swift command named by the `run sh:` line."""
    found, command = {}, None
    for line in lines[:4000]:
        m = _RUN_SH.search(line)
        if m:
            parts = m["cmd"].split()
            for i, p in enumerate(parts):
                cm = re.search(r"swift[/.]cli[/.](\w+)(?:\.py)?$", p)
                if cm:
                    command = cm[1]
                    found.update(_argv_to_dict(parts[i + 1:]))
                    break
            break
    block = {}
    for i, line in enumerate(lines[:8000]):
        if m := _SETTING.search(line):  # "[INFO:swift] Setting args.gradient_accumulation_steps: 16"
            block[m["k"]] = m["v"]
        elif bm := _ARGS_BLOCK.search(line):
            command = command or _ARGS_CLASS.get(bm["cls"])
            for kv in lines[i + 1:i + 1200]:
                if kv == ")":
                    break
                m = _KV.match(kv)
                if m and m["v"] != "None":
                    block[m["k"]] = m["v"]
            break
    found.update(block)
    return found, command


def _int(v) -> int | None:
    try:
        return int(str(v).strip())
    except (TypeError, ValueError):
        return None


def _true(v) -> bool | None:
    if v is None:
        return None
    return str(v).strip().lower() in {"true", "1", "yes", "t", "y"}


def _path_like(v) -> str | None:
    if isinstance(v, list):
        v = v[0] if v else None
    if v is None:
        return None
    v = str(v).strip()
    if v.startswith("[") and v.endswith("]"):  # the args block prints lists: ['/a/b.json']
        try:
            items = ast.literal_eval(v)
            return str(items[0]) if items else None
        except (ValueError, SyntaxError):
            v = v.strip("[]'\"")
    return v or None


# ---- what the classifier works on ----

@dataclass
class _Ctx:
    lines: list[str]
    chain: list[_Exc]
    groups: list[list[_Exc]]
    args: dict
    command: str
    exit_code: int | None
    cut: int | None = None  # the line of a `Traceback` header whose exception line was cut off

    @property
    def chain_text(self) -> str:
        return "\n".join(e.text() for e in self.chain)

    @property
    def frames(self) -> str:
        return "\n".join(f for e in self.chain for f in e.frames)

    def find(self, pattern: str) -> re.Match | None:
        """The last log line matching pattern (searched from the end)."""
        rx = re.compile(pattern)
        for line in reversed(self.lines):
            m = rx.search(line)
            if m:
                return m
        return None

    def evidence(self, *extra: str) -> str:
        """extra lines, then the innermost frame of the fatal traceback and its exception(s)."""
        parts = [x for x in extra if x]
        if self.chain:
            last = self.chain[-1]
            frame = [ln.strip() for ln in self.lines[last.start:last.index]
                     if ln.strip() and not set(ln.strip()) <= set("^~ ")]
            parts += frame[-2:]
            parts += [e.text() for e in self.chain]
        text = "\n".join(dict.fromkeys(ln for p in parts for ln in p.splitlines()  # no repeats, keep order
                                       if not set(ln.strip()) <= set("^~ ")))
        return text if len(text) <= _EVIDENCE_CHARS else text[:_EVIDENCE_CHARS - 3] + "..."

    def arg(self, key: str):
        return self.args.get(key)


# ---- error lines without a traceback ----

_ERROR_LOG = re.compile(r"^\[(?:ERROR|CRITICAL):swift\]\s*")
_BARE_WINDOW = 300  # how far from the end of the log a bare error line still counts as the failure


def _covered(groups: list[list[_Exc]]) -> set[int]:
    """Line indices that belong to a parsed traceback (its frames, exception line and message)."""
    out: set[int] = set()
    for g in groups:
        for e in g:
            out.update(range(e.start, e.index + 1 + e.message.count("\n")))
    return out


def bare_errors(lines: list[str], groups: list[list[_Exc]], window: int = _BARE_WINDOW) -> list[_Exc]:
    """Exception lines ("ValueError: ...", also after `[ERROR:swift]`) in the tail that no parsed traceback holds:
    what a user pastes, or what is left when the traceback scrolled off. Newest last."""
    covered = _covered(groups)
    found = []
    for i in range(max(0, len(lines) - window), len(lines)):
        if i in covered:
            continue
        text = _ERROR_LOG.sub("", lines[i])
        m = _EXC_HEAD.match(text)
        if m and (m["msg"] or "").strip():
            found.append(_Exc(m["type"], m["msg"].strip(), i, i, [], False))
    return found


def error_lines(lines: list[str], groups: list[list[_Exc]], window: int = _BARE_WINDOW) -> list[_Exc]:
    """Logged error lines (`[ERROR:swift] ...`, `[CRITICAL:swift] ...`) in the tail that no parsed traceback holds,
    as exceptions of type "ERROR": the evidence when neither a traceback nor an exception line is left (a pasted
    line, a hub download that kept failing). Newest last."""
    covered = _covered(groups)
    return [_Exc("ERROR", _ERROR_LOG.sub("", lines[i]).strip(), i, i, [], False)
            for i in range(max(0, len(lines) - window), len(lines))
            if i not in covered and _ERROR_LOG.match(lines[i]) and _ERROR_LOG.sub("", lines[i]).strip()]


def cut_off(lines: list[str], groups: list[list[_Exc]]) -> int | None:
    """The index of a `Traceback` header after the last parsed traceback whose exception line never came (the log
    was cut mid-traceback), else None."""
    last = max((e.index for g in groups for e in g), default=-1)
    for i in range(len(lines) - 1, last, -1):
        if "Traceback (most recent call last):" in lines[i]:
            return i
    return None
