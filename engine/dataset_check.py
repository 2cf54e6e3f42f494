"""`swiftdeck check-dataset FILE [--model M] [--max-length N]`: find what would break or spoil an ms-swift run.

Checks, each reported with its line (file) and/or row (1-based record number):
- the file: empty, binary, not UTF-8 (with the byte's line and column), UTF-16, a UTF-8 BOM;
- JSON / JSON Lines syntax (`line 3, column 18: Expecting ',' delimiter`);
- the row format ms-swift auto-detects (swift/dataset/preprocessor/core.py AutoPreprocessor): alpaca
  (instruction/input/output), query/response (and its aliases) or messages, with every missing or empty field;
- exact duplicate rows, and the same question with different answers;
- identity consistency: the maker/name the dataset teaches, and rows that claim another one as the model's own;
- with a model: token length of each row under the model's tokenizer and chat template, and the rows ms-swift
  drops at this max_length (see LENGTH_RULE).

Files: .json (one array, or JSON Lines in a .json file), .jsonl and .csv, read row by row (engine.dataset_stream):
memory holds one chunk and one row, plus per row about 60 bytes of hashes for the duplicate checks; the report
keeps counts and the first MAX_ISSUES_PER_CODE examples of each problem. A folder, a device (/dev/zero), a fifo
or a socket is refused with one line (`report.refusal`) without reading it.

For a worker thread: check_dataset(path, cancel=event_or_callable, progress=fn) checks `cancel` every few rows
and raises CheckCancelled when it is set; progress(bytes_read, file_size) is called about every MiB.
Every message that quotes the file is made printable (engine.textsafe).
"""
from __future__ import annotations

import json
import re
from array import array
from collections import Counter
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Callable

from engine import dataset_stream as ds
from engine.kinds import needs_answer, row_problems
from engine.textsafe import printable

LENGTH_RULE = (
    "ms-swift encodes each row with the template (system + conversation, ending at the final end-of-turn token) "
    "and, with the default --truncation_strategy delete, drops the row when max(len(input_ids), len(labels)) > "
    "--max_length (swift/template/base.py _encode_truncated raises MaxLengthError; the dataset map deletes the "
    "row). Counted here by rendering the row with the model's own chat template and tokenizing it; on the demo "
    "Qwen2 model with --template qwen2_5 this gave exactly ms-swift's logged 'Dataset Token Length' (min, mean, "
    "max). ms-swift's system prompt is its template's default unless --system is given (pass system= to match)."
)
MAX_ISSUES_PER_CODE = 50
CANCEL_EVERY = 64  # rows (or lines, or chunks) between two looks at the cancel hook
PROGRESS_BYTES = 1 << 20
MAX_IDENTITY_GROUPS = 10_000  # distinct identity claims itemised (beyond: counted only)
_MESSAGE_KEYS = ("messages", "conversation", "conversations")
_QUERY_KEYS = ("query", "prompt", "question", "problem")  # ms-swift ResponsePreprocessor aliases
_RESPONSE_KEYS = ("response", "answer", "completion", "target", "targets", "solution", "text", "content")
_USER_ROLES = {"user", "human"}
_ASSISTANT_ROLES = {"assistant", "gpt", "bot"}
_KNOWN_ROLES = _USER_ROLES | _ASSISTANT_ROLES | {"system", "tool", "tool_call", "tool_response", "function_call",
                                                  "function_response", "observation", "observations"}


@dataclass
class Issue:
    level: str  # "error" (ms-swift fails or loses rows) | "warning" (trains, but badly) | "info"
    code: str  # stable name: json_syntax, encoding, missing_field, duplicate_row, identity_conflict, ...
    message: str  # one line, starting with the line/row it is about
    row: int | None = None  # 1-based record number
    line: int | None = None  # 1-based line in the file

    def to_json(self) -> dict:
        return {"level": self.level, "code": self.code, "message": self.message, "row": self.row,
                "line": self.line}


class CheckCancelled(Exception):
    """check_dataset stopped because its cancel hook was set (the user typed another path)."""


@dataclass
class DatasetReport:
    path: str
    file_format: str | None = None  # "json" (one array) | "jsonl" | "csv"
    schema: str | None = None  # "alpaca" | "query-response" | "messages" | "mixed"
    rows: int = 0
    issues: list[Issue] = field(default_factory=list)
    identity: dict | None = None  # {"maker", "maker_rows", "name", "name_rows"}
    tokens: dict | None = None  # lengths under a model's tokenizer (see LENGTH_RULE)

    @property
    def errors(self) -> list[Issue]:
        return [i for i in self.issues if i.level == "error"]

    @property
    def warnings(self) -> list[Issue]:
        return [i for i in self.issues if i.level == "warning"]

    @property
    def ok(self) -> bool:
        return not self.errors

    @property
    def refusal(self) -> str | None:
        """The one line that says why the path was not read at all (a folder, a device, a fifo, missing)."""
        return next((i.message for i in self.issues if i.code == "not_a_file"), None)

    def to_json(self) -> dict:
        return {"path": self.path, "ok": self.ok, "format": self.file_format, "schema": self.schema, "rows": self.rows,
                "errors": len(self.errors), "warnings": len(self.warnings), "identity": self.identity,
                "tokens": self.tokens, "issues": [i.to_json() for i in self.issues]}

    def format(self) -> str:
        if self.refusal:
            return self.refusal
        head = f"{printable(self.path, newlines=False)}: {self.rows} rows"
        if self.file_format:
            head += ", " + {"json": "JSON array", "jsonl": "JSON Lines", "csv": "CSV"}[self.file_format]
        if self.schema:
            head += f", {self.schema} format"
        out = [head]
        if self.identity:
            idt = self.identity
            parts = [f"made by {idt['maker']} ({idt['maker_rows']} rows)" if idt.get("maker") else "",
                     f"named {idt['name']} ({idt['name_rows']} rows)" if idt.get("name") else ""]
            out.append("identity taught: " + ", ".join(p for p in parts if p))
        if self.tokens:
            t = self.tokens
            system = "the chat template's default system prompt" if t.get("system") is None else "the given system"
            line = (f"tokens ({Path(str(t['model'])).name}, {system}): min {t['min']}, mean {t['mean']}, "
                    f"max {t['max']}")
            if t.get("max_length"):
                line += (f"; max_length {t['max_length']}{' (model default)' if t.get('max_length_default') else ''}"
                         f": {t['over']} row(s) dropped")
            out.append(line)
        for i in self.issues:
            out.append(f"{i.level:<7} {i.message}")
        e, w = len(self.errors), len(self.warnings)
        out.append(("OK" if self.ok else "NOT OK") + f": {e} error(s), {w} warning(s)")
        return "\n".join(out)


class _Issues:
    """Collects issues, keeping at most MAX_ISSUES_PER_CODE of each code (then one summary line)."""

    def __init__(self) -> None:
        self.items: list[Issue] = []
        self.count: Counter = Counter()

    def add(self, level: str, code: str, message: str, *, row: int | None = None, line: int | None = None) -> None:
        self.count[code] += 1
        if self.count[code] <= MAX_ISSUES_PER_CODE:
            self.items.append(Issue(level, code, printable(message, newlines=False), row, line))

    def more(self, code: str, n: int) -> None:
        """n more issues of `code` that are counted but not itemised (call it after adding the itemised ones)."""
        if n:
            self.count[code] += n

    def finish(self) -> list[Issue]:
        """Errors, then warnings, then info; each in file order (issues about the whole file first)."""
        rank = {"error": 0, "warning": 1, "info": 2}
        items = sorted(self.items, key=lambda i: (rank[i.level], i.row or 0, i.line or 0))
        for code, n in self.count.items():
            if n > MAX_ISSUES_PER_CODE:
                level = next((i.level for i in self.items if i.code == code), "warning")
                items.append(Issue(level, code, f"... and {n - MAX_ISSUES_PER_CODE} more like this ({code})"))
        return items


def _where(row: int | None, line: int | None) -> str:
    if row is not None and line is not None:
        return f"row {row} (line {line})"
    return f"row {row}" if row is not None else f"line {line}"


# ---- rows --------------------------------------------------------------------------------------------

def _text(v) -> str | None:
    return v if isinstance(v, str) else None


def _first_key(row: dict, keys) -> str | None:
    lower = {k.lower(): k for k in row}
    return next((lower[k] for k in keys if k in lower), None)


def _schema(row: dict) -> str | None:
    if _first_key(row, _MESSAGE_KEYS):
        return "messages"
    if any(k in row for k in ("instruction", "input", "output")):
        return "alpaca"
    if _first_key(row, _QUERY_KEYS) or _first_key(row, _RESPONSE_KEYS):
        return "query-response"
    return None


@dataclass
class _Row:
    number: int
    line: int
    messages: list[dict]  # normalised [{"role", "content"}], the last one is the answer


def _check_field(row: dict, key: str | None, name: str, where: str, issues: _Issues, n: int, line: int,
                 level: str = "error") -> str | None:
    if key is None or row.get(key) is None:
        issues.add(level, "missing_field", f"{where}: missing field '{name}'", row=n, line=line)
        return None
    value = row[key]
    if not isinstance(value, str):
        if isinstance(value, (int, float)):
            issues.add("warning", "not_a_string", f"{where}: field '{key}' is a number, not a string",
                       row=n, line=line)
            return str(value)
        issues.add("error", "not_a_string", f"{where}: field '{key}' must be a string, got "
                   f"{type(value).__name__}", row=n, line=line)
        return None
    if not value.strip():
        issues.add(level, "empty_field", f"{where}: field '{key}' is empty", row=n, line=line)
        return None
    return value


def _messages_row(row: dict, key: str, where: str, issues: _Issues, n: int, line: int,
                  answer_required: bool = True) -> list[dict] | None:
    msgs = row[key]
    if isinstance(msgs, str):
        try:
            msgs = json.loads(msgs)
        except json.JSONDecodeError:
            pass
    if not isinstance(msgs, list) or not msgs:
        issues.add("error", "bad_messages", f"{where}: '{key}' must be a non-empty list of "
                   "{role, content} objects", row=n, line=line)
        return None
    out, ok = [], True
    for j, m in enumerate(msgs, 1):
        if not isinstance(m, dict):
            issues.add("error", "bad_messages", f"{where}: message {j} is not an object", row=n, line=line)
            return None
        role = m.get("role", m.get("from"))
        content = m.get("content", m.get("value"))
        if not isinstance(role, str) or role.lower() not in _KNOWN_ROLES:
            issues.add("error", "bad_messages", f"{where}: message {j} has role {role!r}; use system, user or "
                       "assistant", row=n, line=line)
            ok = False
            continue
        role = "user" if role.lower() in _USER_ROLES else "assistant" if role.lower() in _ASSISTANT_ROLES \
            else role.lower()
        if not isinstance(content, str) or not content.strip():
            if not (role == "assistant" and m.get("tool_calls")):
                issues.add("error", "empty_field", f"{where}: message {j} ({role}) has empty content",
                           row=n, line=line)
                ok = False
                continue
        out.append({"role": role, "content": content if isinstance(content, str) else ""})
    if ok and out and out[-1]["role"] == "user" and not answer_required:  # a prompt for GRPO: no answer to check
        return None
    if ok and (not out or out[-1]["role"] != "assistant"):
        issues.add("error", "bad_messages", f"{where}: the last message must be the assistant's answer",
                   row=n, line=line)
        ok = False
    if ok and not any(m["role"] == "user" for m in out):
        issues.add("error", "bad_messages", f"{where}: no user message", row=n, line=line)
        ok = False
    system = _text(row.get("system"))
    if ok and system and out[0]["role"] != "system":
        out.insert(0, {"role": "system", "content": system})
    return out if ok else None


def _check_row(obj, n: int, line: int, issues: _Issues, rlhf_type: str | None = None) -> tuple[str | None,
                                                                                                _Row | None]:
    where = _where(n, line)
    if not isinstance(obj, dict):
        issues.add("error", "not_an_object", f"{where}: a row must be a JSON object, got {type(obj).__name__}",
                   row=n, line=line)
        return None, None
    schema = _schema(obj)
    if schema is None:
        found = ", ".join(sorted(map(str, obj))) or "none"
        issues.add("error", "unknown_format", f"{where}: no fields ms-swift recognises (found: {found}); use "
                   "instruction/input/output, query/response or messages", row=n, line=line)
        return None, None
    msgs: list[dict] | None
    if schema == "messages":
        msgs = _messages_row(obj, _first_key(obj, _MESSAGE_KEYS), where, issues, n, line, needs_answer(rlhf_type))
    else:
        if schema == "alpaca":
            if "input" not in obj:
                issues.add("warning", "missing_field", f"{where}: missing field 'input' (ms-swift reads it as "
                           "empty)", row=n, line=line)
            inp = _text(obj.get("input")) or ""
            level = "warning" if inp.strip() else "error"  # ms-swift uses `input` alone when instruction is empty
            inst = _check_field(obj, "instruction" if "instruction" in obj else None, "instruction", where,
                                issues, n, line, level)
            query = "\n".join(x for x in (inst, inp) if x and x.strip()) or None
            answer = _check_field(obj, "output" if "output" in obj else None, "output", where, issues, n, line) \
                if needs_answer(rlhf_type) or "output" in obj else None
        else:
            qk, rk = _first_key(obj, _QUERY_KEYS), _first_key(obj, _RESPONSE_KEYS)
            query = _check_field(obj, qk, qk or "query", where, issues, n, line)
            answer = _check_field(obj, rk, rk or "response", where, issues, n, line) \
                if needs_answer(rlhf_type) or rk else None
        msgs = None
        if query and answer:
            msgs = [{"role": "user", "content": query}, {"role": "assistant", "content": answer}]
            system = _text(obj.get("system"))
            if system:
                msgs.insert(0, {"role": "system", "content": system})
    for level, code, message in row_problems(obj, rlhf_type, msgs[-1]["content"] if msgs else None):
        issues.add(level, code, f"{where}: {message}", row=n, line=line)
    return schema, (_Row(n, line, msgs) if msgs else None)


class _HashIndex:
    """64-bit hash -> first row number, in two flat arrays kept at most half full (about 24 bytes a row): the
    duplicate checks keep this instead of the rows. Python's own str hash (random per process) is plenty for one
    check: with a million rows a false "duplicate" has a chance of about 1 in 30 million."""

    def __init__(self) -> None:
        self._keys = array("Q", bytes(8 << 12))
        self._rows = array("I", bytes(4 << 12))
        self._used = 0

    def first(self, text: str, row: int) -> int | None:
        """The row that first had `text` (None when this is the first: then `row` is recorded)."""
        key = (hash(text) & 0xFFFF_FFFF_FFFF_FFFF) or 1
        keys = self._keys
        mask = len(keys) - 1
        i = key & mask
        while (k := keys[i]) != 0:
            if k == key:
                return self._rows[i]
            i = (i + 1) & mask
        keys[i], self._rows[i] = key, row
        self._used += 1
        if self._used * 2 > len(keys):
            self._grow()
        return None

    def _grow(self) -> None:
        old_keys, old_rows = self._keys, self._rows
        self._keys = keys = array("Q", bytes(16 * len(old_keys)))
        self._rows = array("I", bytes(8 * len(old_keys)))
        mask = len(keys) - 1
        for k, r in zip(old_keys, old_rows):
            if k:
                i = k & mask
                while keys[i]:
                    i = (i + 1) & mask
                keys[i], self._rows[i] = k, r

    def nbytes(self) -> int:
        return self._keys.itemsize * len(self._keys) + self._rows.itemsize * len(self._rows)


class _Duplicates:
    """Exact duplicate rows, and the same question with different answers, as the rows stream by."""

    def __init__(self, issues: _Issues) -> None:
        self.issues = issues
        self.rows, self.questions, self.pairs = _HashIndex(), _HashIndex(), _HashIndex()

    def add(self, n: int, line: int, obj, row: _Row | None) -> None:
        first = self.rows.first(json.dumps(obj, sort_keys=True, ensure_ascii=False), n)
        if first is not None:
            self.issues.add("warning", "duplicate_row", f"{_where(n, line)}: exact duplicate of row {first}",
                            row=n, line=line)
        if row is None:
            return
        question = json.dumps([(m["role"], " ".join(m["content"].split())) for m in row.messages[:-1]],
                              ensure_ascii=False)
        answer = " ".join(row.messages[-1]["content"].split())
        asked = self.questions.first(question, n)
        if self.pairs.first(question + "\x00" + answer, n) is None and asked is not None:
            q = _short(row.messages[-2]["content"])  # (the same question, whitespace aside)
            self.issues.add("warning", "conflicting_answers",
                            f"{_where(n, line)}: same question as row {asked} ({q}) but a different answer; the "
                            "model learns one answer per question", row=n, line=line)


def _short(s: str, n: int = 40) -> str:
    s = " ".join(s.split())
    return repr(s if len(s) <= n else s[:n - 1] + "…")


# ---- identity ----------------------------------------------------------------------------------------

_P = r"[,。,.!!??;;:：\n]"  # clause ends
_CN_VERB = r"(?:开发|研发|训练|创建|创造|打造|构建|推出|设计|维护|发布|制作|提供)"
_MAKER_PATTERNS = [
    re.compile(r"由\s*(?P<m>[^,。,.!!??;;:：\n由]{1,40}?)\s*(?:公司|团队)?\s*(?:独立|自主|共同|负责|进行|精心|联合)?\s*"
               + _CN_VERB),
    re.compile(r"(?:^|" + _P + r"|\s)(?P<m>[^,。,.!!??;;:：\n\s][^,。,.!!??;;:：\n]{0,39}?)\s*"
               r"(?:开发|研发|训练|创建|创造|打造)了我"),
    re.compile(r"(?i:developed|created|trained|built|made|designed|maintained|provided)"
               r"(?i: and (?:maintained|developed|trained|built))? (?i:by) "
               r"(?P<m>[A-Z0-9\u4e00-\u9fff][^,.;!?\n]{0,40}?)(?=[,.;!?\n]|$| and | to | for | in | from )"),
]
_NAME_PATTERNS = [
    re.compile(r"我(?:是|叫|的名字是|的名字叫|名叫)\s*(?P<n>[^,。,.!!??;;:：\s\"“][^,。,.!!??;;:：\"”]{0,30}?)"
               r"\s*(?=" + _P + r"|$|,|,|一个|一款|是)"),
    re.compile(r"\b(?:I am|I'm|my name is|call me)\s+(?P<n>[A-Z][\w\-.]*(?: [A-Z0-9][\w\-.]*)*)"),
]
# Every pattern above needs one of these: most answers skip the patterns (they cost ~80 us on a 600-char answer).
_CLAIM_HINT = re.compile(r"由|了我|(?i: by )|我是|我叫|我的名字|我名叫|I am|I'm|my name is|call me")
_NOT_A_NAME = re.compile(r"^(?:一|由|个|你的|您的|本|这|那|AI|人工智能|大语言模型|语言模型|助手)|^(?:I|A|An|The|Not)\b")
_NEGATION = re.compile(r"(?:不是|并非|而非|不|没有|并不|not|never|isn't|wasn't)\s*$", re.I)
# Makers and model names a fine-tuned assistant must not claim as its own (the tutorial's 答案唯一性).
OTHER_IDENTITIES = (
    "阿里云", "阿里巴巴", "Alibaba", "通义千问", "通义", "千问", "Qwen", "OpenAI", "ChatGPT", "GPT-4", "GPT-3.5",
    "GPT", "Anthropic", "Claude", "Google", "谷歌", "Gemini", "Bard", "Meta", "Llama", "百度", "文心一言", "文心",
    "ERNIE", "DeepSeek", "深度求索", "智谱", "ChatGLM", "GLM", "Mistral", "Microsoft", "微软", "Copilot", "讯飞",
    "星火", "月之暗面", "Kimi", "字节跳动", "豆包", "腾讯", "混元",
)


_WS = re.compile(r"\s+")


@lru_cache(maxsize=4096)
def _norm(s: str) -> str:
    return _WS.sub("", s).casefold()


def _claims(text: str) -> tuple[list[str], list[str]]:
    makers, names = [], []
    if not _CLAIM_HINT.search(text):
        return makers, names
    for pats, out, grp in ((_MAKER_PATTERNS, makers, "m"), (_NAME_PATTERNS, names, "n")):
        for rx in pats:
            for m in rx.finditer(text):
                value = m[grp].strip(" \"'“”「」《》.")
                if not value or _NEGATION.search(text[max(0, m.start() - 8):m.start()]):
                    continue  # "不是由 OpenAI 开发", "not developed by ..."
                if grp == "n" and _NOT_A_NAME.search(value):
                    continue
                out.append(value)
    return makers, names


def _is_other(value: str) -> str | None:
    v = _norm(value)
    return next((o for o in OTHER_IDENTITIES if _norm(o) in v), None)  # (_norm is cached)


def _same(a: str, b: str) -> bool:
    a, b = _norm(a), _norm(b)
    return a == b or a in b or b in a


class _Identity:
    """The maker/name the answers claim: counts per claim, and rows grouped by what they claim (the first
    MAX_ISSUES_PER_CODE rows of each group), so that the rows contradicting the majority can be named at the end."""

    def __init__(self) -> None:
        self.maker_count: Counter = Counter()
        self.name_count: Counter = Counter()
        self.shown: dict[str, str] = {}
        self.groups: dict[tuple, list] = {}  # (makers, names) -> [rows, [(n, line, short answer), ...]]
        self.unlisted = 0  # claiming rows beyond MAX_IDENTITY_GROUPS distinct claims

    def add(self, r: _Row) -> None:
        answer = r.messages[-1]["content"]
        makers, names = _claims(answer)
        if not makers and not names:
            return
        for counter, values in ((self.maker_count, makers), (self.name_count, names)):
            for key, value in {_norm(x): x for x in values}.items():
                counter[key] += 1
                self.shown.setdefault(key, value)
        sig = (tuple(makers), tuple(names))
        group = self.groups.get(sig)
        if group is None:
            if len(self.groups) >= MAX_IDENTITY_GROUPS:
                self.unlisted += 1
                return
            group = self.groups[sig] = [0, []]
        group[0] += 1
        if len(group[1]) < MAX_ISSUES_PER_CODE:
            group[1].append((r.number, r.line, _short(answer, 60)))

    def finish(self, issues: _Issues) -> dict | None:
        maker = self.maker_count.most_common(1)[0] if self.maker_count else None
        name = self.name_count.most_common(1)[0] if self.name_count else None
        maker = maker if maker and maker[1] >= 2 else None
        name = name if name and name[1] >= 2 else None
        if not maker and not name:
            return None
        shown = self.shown
        taught = " / ".join(x for x in (shown[maker[0]] if maker else "", shown[name[0]] if name else "") if x)
        found, unnamed = [], 0
        for (makers, names), (count, examples) in self.groups.items():
            bad = []
            for m in makers:
                if maker and not _same(m, shown[maker[0]]):
                    bad.append(f"made by {m}")
                elif not maker and _is_other(m):
                    bad.append(f"made by {m}")
            for nm in names:
                other = _is_other(nm)
                if other and not (name and _same(nm, shown[name[0]])) and not (maker and _same(other, shown[maker[0]])):
                    bad.append(f"it is {nm}")
            if bad:
                says = " and ".join(dict.fromkeys(bad))
                found += [(n, line, says, short) for n, line, short in examples]
                unnamed += count - len(examples)
        for n, line, says, short in sorted(found):
            issues.add("warning", "identity_conflict", f"{_where(n, line)}: the answer says {says} ({short}), but the "
                       f"dataset teaches {taught}", row=n, line=line)
        issues.more("identity_conflict", unnamed)  # (after the named ones: they are the first in the file)
        if self.unlisted:
            issues.add("info", "identity_unlisted", f"{self.unlisted} more rows make identity claims of over "
                       f"{MAX_IDENTITY_GROUPS} different kinds: not compared one by one")
        return {"maker": printable(shown[maker[0]], newlines=False) if maker else None,
                "maker_rows": maker[1] if maker else 0,
                "name": printable(shown[name[0]], newlines=False) if name else None, "name_rows": name[1] if name else 0}


# ---- token lengths -------------------------------------------------------------------------------------

def _load_tokenizer(model: str):
    from transformers import AutoTokenizer  # heavy: only here

    folder = Path(model).expanduser()
    if folder.is_dir():
        return AutoTokenizer.from_pretrained(str(folder.resolve()))
    return AutoTokenizer.from_pretrained(model, local_files_only=True)  # the HF cache, never the network


def _default_max_length(model: str) -> int | None:
    """ms-swift's default --max_length: the model's max_model_len (config.json)."""
    try:
        cfg = json.loads((Path(model).expanduser() / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    cfg = cfg.get("text_config", cfg) if isinstance(cfg, dict) else {}
    for key in ("max_position_embeddings", "seq_length", "max_sequence_length", "n_positions"):
        if isinstance(cfg.get(key), int):
            return cfg[key]
    return None


class _Tokens:
    """Token length of each row under a model's tokenizer and chat template, as the rows stream by: min, max,
    sum and the rows over max_length (the first MAX_ISSUES_PER_CODE named). The tokenizer loads at the first row."""

    def __init__(self, model: str, max_length: int | None, system: str | None, issues: _Issues) -> None:
        self.model, self.system, self.issues = model, system, issues
        self.default = max_length is None
        self.max_length = _default_max_length(model) if self.default else max_length
        self.tok, self.failed, self.has_template = None, False, False
        self.count = self.total = self.over = 0
        self.min = self.max = 0
        self.over_rows: list[int] = []

    def _load(self) -> bool:
        model, issues = self.model, self.issues
        if model.startswith(("/", ".", "~")) and not Path(model).expanduser().is_dir():
            issues.add("error", "tokenizer_failed", f"the model folder {model} does not exist")
            return False
        try:
            self.tok = _load_tokenizer(model)
        except Exception as e:  # noqa: BLE001 - any loader failure becomes one line for the user
            msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            issues.add("error", "tokenizer_failed", f"the tokenizer of {model} could not be loaded: {msg[:300]}")
            return False
        self.has_template = bool(getattr(self.tok, "chat_template", None))
        return True

    def add(self, r: _Row) -> None:
        if self.failed or (self.tok is None and not self._load()):
            self.failed = True
            return
        tok, msgs = self.tok, r.messages
        if self.system is not None and msgs[0]["role"] != "system":
            msgs = [{"role": "system", "content": self.system}, *msgs]
        if self.has_template:
            text = tok.apply_chat_template(msgs, tokenize=False)
        else:
            text = "\n".join(m["content"] for m in msgs) + (tok.eos_token or "")
        n = len(tok(text, add_special_tokens=False)["input_ids"])
        self.min = n if not self.count else min(self.min, n)
        self.max = max(self.max, n)
        self.count += 1
        self.total += n
        if self.max_length is not None and n > self.max_length:
            self.over += 1
            if len(self.over_rows) < MAX_ISSUES_PER_CODE:
                self.over_rows.append(r.number)
            self.issues.add("warning", "too_long", f"{_where(r.number, r.line)}: {n} tokens > max_length "
                            f"{self.max_length}: ms-swift drops this row", row=r.number, line=r.line)

    def finish(self) -> dict | None:
        if not self.count:
            return None
        if self.over and self.over == self.count:
            self.issues.add("error", "all_too_long", f"every row is longer than max_length {self.max_length} (the "
                            f"shortest has {self.min} tokens): ms-swift drops them all and fails; use --max_length "
                            f"{self.max}")
        if not self.has_template:
            self.issues.add("info", "no_chat_template", f"{self.model} has no chat template: lengths count the "
                            "plain texts")
        return {"model": self.model, "max_length": self.max_length,
                "max_length_default": self.default and self.max_length is not None, "min": self.min,
                "max": self.max, "mean": round(self.total / self.count, 2), "over": self.over,
                "over_rows": self.over_rows, "chat_template": self.has_template, "system": self.system,
                "rule": LENGTH_RULE}


# ---- entry point ---------------------------------------------------------------------------------------

class _Pace:
    """Looks at the cancel hook and reports progress every CANCEL_EVERY ticks (a row, a line or a chunk)."""

    def __init__(self, src: ds.Source | None, cancel, progress) -> None:
        self.src = src
        self.cancelled = cancel.is_set if hasattr(cancel, "is_set") else cancel
        self.progress = progress
        self.n = 0
        self.reported = 0

    def __call__(self) -> None:
        self.n += 1
        if self.n % CANCEL_EVERY:
            return
        if self.cancelled is not None and self.cancelled():
            raise CheckCancelled("the dataset check was cancelled")
        if self.progress is not None and self.src is not None:
            done = self.src.tell()
            if done - self.reported >= PROGRESS_BYTES:
                self.reported = done
                self.progress(done, self.src.size)


def check_dataset(path: str | Path, *, model: str | None = None, max_length: int | None = None,
                  system: str | None = None, cancel: Callable[[], bool] | None = None,
                  progress: Callable[[int, int], None] | None = None, rlhf_type: str | None = None) -> DatasetReport:
    """Check one .json/.jsonl/.csv dataset file, row by row in bounded memory. `model` (a local folder or a cached
    hub id) adds token lengths under its tokenizer and chat template; `system` is the --system prompt of the run,
    if any. `cancel`: a threading.Event or a callable, looked at every CANCEL_EVERY rows: once set, CheckCancelled
    is raised. `progress(bytes_read, file_size)`: called about every PROGRESS_BYTES. `rlhf_type` adds the columns
    that `swift rlhf --rlhf_type` needs (engine.kinds)."""
    path = Path(path).expanduser()
    report = DatasetReport(str(path))
    issues = _Issues()
    pace = _Pace(None, cancel, progress)
    try:
        src = ds.open_source(path)
    except ds.NotADatasetFile as e:
        issues.add("error", "not_a_file", str(e))
        report.issues = issues.finish()
        return report
    try:
        pace.src = src
        _read(src, path, report, issues, pace, model, max_length, system, rlhf_type)
    finally:
        src.close()
    report.issues = issues.finish()
    return report


def _read(src: ds.Source, path: Path, report: DatasetReport, issues: _Issues, pace: _Pace, model: str | None,
          max_length: int | None, system: str | None, rlhf_type: str | None = None) -> None:
    suffix = path.suffix.lower()
    if suffix in (".tsv", ".parquet", ".arrow"):
        issues.add("warning", "not_checked", f"{path.name}: only .json, .jsonl and .csv files are checked")
        return
    head = ds.sniff(src, issues, pace)
    if head is None:
        return
    if head.empty:
        issues.add("error", "empty_file", "line 1: the file is empty", line=1)
        return
    first = head.first
    if suffix == ".csv":
        report.file_format, rows = "csv", ds.csv_rows
    elif suffix == ".jsonl":
        report.file_format, rows = "jsonl", ds.jsonl_rows
    elif first == "[":
        report.file_format, rows = "json", ds.array_rows
    elif first in ("{", '"') or first.isdigit():
        try:  # one value (not a list: refused below), or JSON Lines in a .json file (datasets reads those too)
            single, value = ds.one_value(src, issues, pace, extra_ok=first == "{")
        except ds.StopReading:  # a syntax error (reported), or an encoding error (then the format is unknown)
            report.file_format = None if issues.count["encoding"] else "json"
            _bom(src, report, issues)
            return
        if single:
            report.file_format = "json"
            kind = type(value).__name__.replace("dict", "object").replace("str", "string")
            issues.add("error", "not_a_list", f"line 1: the top level is one {kind}; ms-swift needs a list of rows "
                       "([{...}, {...}]) or one object per line (.jsonl)", line=1)
            _bom(src, report, issues)
            return
        report.file_format, rows = "jsonl", ds.jsonl_rows
    else:
        issues.add("error", "json_syntax", f"line {head.first_line}, column 1: not JSON (expected '[' or one "
                   "object per line)", line=head.first_line)
        return
    _bom(src, report, issues)
    schemas: Counter = Counter()
    dups = _Duplicates(issues)
    identity = _Identity()
    tokens = _Tokens(model, max_length, system, issues) if model else None
    n = 0
    try:
        for line, obj in rows(src, issues, pace):
            n += 1
            pace()
            schema, row = _check_row(obj, n, line, issues, rlhf_type)
            if schema:
                schemas[schema] += 1
            dups.add(n, line, obj, row)
            if row:
                identity.add(row)
                if tokens:
                    tokens.add(row)
    except ds.StopReading:
        if report.file_format == "json" and issues.count["json_syntax"]:
            n = 0  # an array that does not parse gives ms-swift no rows at all (the rows read so far are still shown)
    report.rows = n
    if schemas:
        report.schema = schemas.most_common(1)[0][0] if len(schemas) == 1 else "mixed"
        if len(schemas) > 1 and "messages" in schemas:
            issues.add("error", "mixed_format", "rows mix formats (" + ", ".join(f"{k}: {v}" for k, v in
                       schemas.most_common()) + "); ms-swift picks one format per file and drops the other rows")
        elif len(schemas) > 1:
            issues.add("warning", "mixed_format", "rows mix formats (" + ", ".join(f"{k}: {v}" for k, v in
                       schemas.most_common()) + "); use one format for every row")
    if not n and not issues.count:
        issues.add("error", "empty_file", "line 1: no rows", line=1)
    report.identity = identity.finish(issues)
    if tokens:
        report.tokens = tokens.finish()
    elif max_length:
        issues.add("info", "no_model", "pass --model to count tokens and the rows ms-swift drops at max_length")


def _bom(src: ds.Source, report: DatasetReport, issues: _Issues) -> None:
    if src.bom:
        # the datasets library (ms-swift's loader) reads JSON Lines with a BOM but fails on a JSON array with one
        # ("ValueError: Expected object or value"), checked with datasets 4.8
        fatal = report.file_format == "json"
        issues.add("error" if fatal else "warning", "bom", "line 1: the file starts with a UTF-8 byte order mark "
                   "(BOM)" + ("; ms-swift cannot read it" if fatal else "") + ": save it as UTF-8 without BOM",
                   line=1)
