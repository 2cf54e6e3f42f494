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
"""
from __future__ import annotations

import json
import re
import statistics
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from engine.kinds import needs_answer, row_problems

LENGTH_RULE = (
    "ms-swift encodes each row with the template (system + conversation, ending at the final end-of-turn token) "
    "and, with the default --truncation_strategy delete, drops the row when max(len(input_ids), len(labels)) > "
    "--max_length (swift/template/base.py _encode_truncated raises MaxLengthError; the dataset map deletes the "
    "row). Counted here by rendering the row with the model's own chat template and tokenizing it; on the demo "
    "Qwen2 model with --template qwen2_5 this gave exactly ms-swift's logged 'Dataset Token Length' (min, mean, "
    "max). ms-swift's system prompt is its template's default unless --system is given (pass system= to match)."
)
MAX_ISSUES_PER_CODE = 50
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


@dataclass
class DatasetReport:
    path: str
    file_format: str | None = None  # "json" (one array) | "jsonl"
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

    def to_json(self) -> dict:
        return {"path": self.path, "ok": self.ok, "format": self.file_format, "schema": self.schema, "rows": self.rows,
                "errors": len(self.errors), "warnings": len(self.warnings), "identity": self.identity,
                "tokens": self.tokens, "issues": [i.to_json() for i in self.issues]}

    def format(self) -> str:
        head = f"{self.path}: {self.rows} rows"
        if self.file_format:
            head += ", " + {"json": "JSON array", "jsonl": "JSON Lines"}[self.file_format]
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
            self.items.append(Issue(level, code, message, row, line))

    def finish(self) -> list[Issue]:
        """Errors, then warnings, then info; each in file order (issues about the whole file first)."""
        rank = {"error": 0, "warning": 1, "info": 2}
        items = sorted(self.items, key=lambda i: (rank[i.level], i.row or 0, i.line or 0))
        for code, n in self.count.items():
            if n > MAX_ISSUES_PER_CODE:
                level = next(i.level for i in self.items if i.code == code)
                items.append(Issue(level, code, f"... and {n - MAX_ISSUES_PER_CODE} more like this ({code})"))
        return items


def _where(row: int | None, line: int | None) -> str:
    if row is not None and line is not None:
        return f"row {row} (line {line})"
    return f"row {row}" if row is not None else f"line {line}"


# ---- reading -----------------------------------------------------------------------------------------

def _decode(data: bytes, issues: _Issues) -> str | None:
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        issues.add("error", "encoding", "line 1: the file is UTF-16; save it as UTF-8", line=1)
        return None
    if b"\x00" in data[:8192]:
        issues.add("error", "binary", "line 1: this is a binary file, not JSON text", line=1)
        return None
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]  # reported by check_dataset once the format is known
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        col = e.start - (data.rfind(b"\n", 0, e.start) + 1) + 1
        hint = ""
        try:
            data.decode("gb18030")
            hint = " (it decodes as GBK/GB18030: re-save it as UTF-8)"
        except UnicodeDecodeError:
            pass
        issues.add("error", "encoding", f"line {line}, column {col} (byte {col}): not valid UTF-8, "
                   f"byte 0x{data[e.start]:02x}{hint}", line=line)
        return None


def _json_error(e: json.JSONDecodeError, line_offset: int = 0) -> str:
    return f"line {e.lineno + line_offset}, column {e.colno}: {e.msg}"


def _parse_array(text: str, issues: _Issues) -> list[tuple[int, object]] | None:
    """Rows of a JSON array with the line each starts on; None after a syntax error."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        issues.add("error", "json_syntax", _json_error(e), line=e.lineno)
        return None
    except RecursionError:
        issues.add("error", "json_syntax", "line 1: nested too deeply to read", line=1)
        return None
    if not isinstance(data, list):
        kind = type(data).__name__.replace("dict", "object").replace("str", "string")
        issues.add("error", "not_a_list", f"line 1: the top level is one {kind}; ms-swift needs a list of rows "
                   "([{...}, {...}]) or one object per line (.jsonl)", line=1)
        return None
    dec, rows, idx, line = json.JSONDecoder(), [], text.index("[") + 1, 1
    line += text.count("\n", 0, idx)
    ws = re.compile(r"[\s,]*")
    for _ in data:  # the text is valid JSON: walk it again to learn where each row starts
        start = ws.match(text, idx).end()
        line += text.count("\n", idx, start)
        obj, idx = dec.raw_decode(text, start)
        rows.append((line, obj))
        line += text.count("\n", start, idx)
    return rows


def _not_one_json_value(text: str) -> bool:
    try:
        json.loads(text)
    except (json.JSONDecodeError, RecursionError):
        return True
    return False


def _parse_lines(text: str, issues: _Issues) -> list[tuple[int, object]]:
    rows = []
    for n, raw in enumerate(text.split("\n"), 1):
        if not raw.strip():
            continue
        try:
            rows.append((n, json.loads(raw)))
        except json.JSONDecodeError as e:
            issues.add("error", "json_syntax", f"line {n}, column {e.colno}: {e.msg}", line=n)
        except RecursionError:
            issues.add("error", "json_syntax", f"line {n}: nested too deeply to read", line=n)
    return rows


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


def _duplicates(objs: list[tuple[int, int, object]], rows: list[_Row], issues: _Issues) -> None:
    seen: dict[str, list[tuple[int, int]]] = defaultdict(list)
    for n, line, obj in objs:
        seen[json.dumps(obj, sort_keys=True, ensure_ascii=False)].append((n, line))
    for same in seen.values():
        if len(same) > 1:
            n0 = same[0][0]
            for n, line in same[1:]:
                issues.add("warning", "duplicate_row", f"{_where(n, line)}: exact duplicate of row {n0}",
                           row=n, line=line)
    answers: dict[str, dict[str, list[_Row]]] = defaultdict(lambda: defaultdict(list))
    for r in rows:
        question = json.dumps([(m["role"], " ".join(m["content"].split())) for m in r.messages[:-1]],
                              ensure_ascii=False)
        answers[question][" ".join(r.messages[-1]["content"].split())].append(r)
    for question, by_answer in answers.items():
        if len(by_answer) > 1:
            group = sorted((rs[0] for rs in by_answer.values()), key=lambda r: r.number)
            q = _short(group[0].messages[-2]["content"])
            first = group[0]
            for r in group[1:]:
                issues.add("warning", "conflicting_answers",
                           f"{_where(r.number, r.line)}: same question as row {first.number} ({q}) but a different "
                           "answer; the model learns one answer per question", row=r.number, line=r.line)


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


def _identity(rows: list[_Row], issues: _Issues) -> dict | None:
    per_row = []
    maker_count, name_count = Counter(), Counter()
    shown: dict[str, str] = {}
    for r in rows:
        makers, names = _claims(r.messages[-1]["content"])
        per_row.append((r, makers, names))
        for m in {_norm(x): x for x in makers}.items():
            maker_count[m[0]] += 1
            shown.setdefault(m[0], m[1])
        for nm in {_norm(x): x for x in names}.items():
            name_count[nm[0]] += 1
            shown.setdefault(nm[0], nm[1])
    maker = maker_count.most_common(1)[0] if maker_count else None
    name = name_count.most_common(1)[0] if name_count else None
    maker = maker if maker and maker[1] >= 2 else None
    name = name if name and name[1] >= 2 else None
    if not maker and not name:
        return None
    for r, makers, names in per_row:
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
            taught = " / ".join(x for x in (shown[maker[0]] if maker else "", shown[name[0]] if name else "") if x)
            issues.add("warning", "identity_conflict",
                       f"{_where(r.number, r.line)}: the answer says {' and '.join(dict.fromkeys(bad))} "
                       f"({_short(r.messages[-1]['content'], 60)}), but the dataset teaches {taught}",
                       row=r.number, line=r.line)
    return {"maker": shown[maker[0]] if maker else None, "maker_rows": maker[1] if maker else 0,
            "name": shown[name[0]] if name else None, "name_rows": name[1] if name else 0}


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


def _token_lengths(rows: list[_Row], model: str, max_length: int | None, system: str | None,
                   issues: _Issues) -> dict | None:
    if model.startswith(("/", ".", "~")) and not Path(model).expanduser().is_dir():
        issues.add("error", "tokenizer_failed", f"the model folder {model} does not exist")
        return None
    try:
        tok = _load_tokenizer(model)
    except Exception as e:  # noqa: BLE001 - any loader failure becomes one line for the user
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        issues.add("error", "tokenizer_failed", f"the tokenizer of {model} could not be loaded: {msg[:300]}")
        return None
    has_template = bool(getattr(tok, "chat_template", None))
    lengths: list[tuple[_Row, int]] = []
    for r in rows:
        msgs = r.messages
        if system is not None and msgs[0]["role"] != "system":
            msgs = [{"role": "system", "content": system}, *msgs]
        if has_template:
            text = tok.apply_chat_template(msgs, tokenize=False)
        else:
            text = "\n".join(m["content"] for m in msgs) + (tok.eos_token or "")
        lengths.append((r, len(tok(text, add_special_tokens=False)["input_ids"])))
    if not lengths:
        return None
    default = max_length is None
    if default:
        max_length = _default_max_length(model)
    values = [n for _, n in lengths]
    over = [(r, n) for r, n in lengths if max_length is not None and n > max_length]
    for r, n in over:
        issues.add("warning", "too_long", f"{_where(r.number, r.line)}: {n} tokens > max_length {max_length}: "
                   "ms-swift drops this row", row=r.number, line=r.line)
    if over and len(over) == len(lengths):
        issues.add("error", "all_too_long", f"every row is longer than max_length {max_length} (the shortest has "
                   f"{min(values)} tokens): ms-swift drops them all and fails; use --max_length {max(values)}")
    if not has_template:
        issues.add("info", "no_chat_template", f"{model} has no chat template: lengths count the plain texts")
    return {"model": model, "max_length": max_length, "max_length_default": default and max_length is not None,
            "min": min(values), "max": max(values), "mean": round(statistics.fmean(values), 2),
            "over": len(over), "over_rows": [r.number for r, _ in over][:MAX_ISSUES_PER_CODE],
            "chat_template": has_template, "system": system, "rule": LENGTH_RULE}


# ---- entry point ---------------------------------------------------------------------------------------

def check_dataset(path: str | Path, *, model: str | None = None, max_length: int | None = None,
                  system: str | None = None, rlhf_type: str | None = None) -> DatasetReport:
    """Check one .json/.jsonl dataset file. `model` (a local folder or a cached hub id) adds token lengths under
    its tokenizer and chat template; `system` is the --system prompt of the run, if any; `rlhf_type` adds the
    columns that `swift rlhf --rlhf_type` needs (engine.kinds)."""
    path = Path(path).expanduser()
    report = DatasetReport(str(path))
    issues = _Issues()
    try:
        data = path.read_bytes()
    except IsADirectoryError:
        issues.add("error", "not_a_file", f"{path} is a folder, not a dataset file")
        data = None
    except OSError as e:
        issues.add("error", "not_a_file", f"{path}: {e.strerror or e}")
        data = None
    text = None
    if data is not None:
        if not data.strip(b" \t\r\n\xef\xbb\xbf"):
            issues.add("error", "empty_file", "line 1: the file is empty", line=1)
        else:
            text = _decode(data, issues)
    parsed: list[tuple[int, object]] = []
    if text is not None:
        if "\r" in text:
            text = text.replace("\r\n", "\n")
        first = text.lstrip()[:1]
        if path.suffix.lower() in (".csv", ".tsv", ".parquet", ".arrow"):
            issues.add("warning", "not_checked", f"{path.name}: only .json and .jsonl files are checked")
        elif path.suffix.lower() == ".jsonl" or (first == "{" and _not_one_json_value(text)):
            report.file_format = "jsonl"  # (datasets also reads JSON Lines from a .json file)
            parsed = _parse_lines(text, issues)
        elif first in ("[", "{", '"') or first.isdigit():
            report.file_format = "json"
            parsed = _parse_array(text, issues) or []
        else:
            line = text[:len(text) - len(text.lstrip())].count("\n") + 1
            issues.add("error", "json_syntax", f"line {line}, column 1: not JSON (expected '[' or one object "
                       "per line)", line=line)
    if text is not None and data.startswith(b"\xef\xbb\xbf"):
        # the datasets library (ms-swift's loader) reads JSON Lines with a BOM but fails on a JSON array with one
        # ("ValueError: Expected object or value"), checked with datasets 4.8
        fatal = report.file_format == "json"
        issues.add("error" if fatal else "warning", "bom", "line 1: the file starts with a UTF-8 byte order mark "
                   "(BOM)" + ("; ms-swift cannot read it" if fatal else "") + ": save it as UTF-8 without BOM",
                   line=1)
    objs, rows, schemas = [], [], Counter()
    for n, (line, obj) in enumerate(parsed, 1):
        schema, row = _check_row(obj, n, line, issues, rlhf_type)
        objs.append((n, line, obj))
        if schema:
            schemas[schema] += 1
        if row:
            rows.append(row)
    report.rows = len(parsed)
    if schemas:
        report.schema = schemas.most_common(1)[0][0] if len(schemas) == 1 else "mixed"
        if len(schemas) > 1 and "messages" in schemas:
            issues.add("error", "mixed_format", "rows mix formats (" + ", ".join(f"{k}: {v}" for k, v in
                       schemas.most_common()) + "); ms-swift picks one format per file and drops the other rows")
        elif len(schemas) > 1:
            issues.add("warning", "mixed_format", "rows mix formats (" + ", ".join(f"{k}: {v}" for k, v in
                       schemas.most_common()) + "); use one format for every row")
    if text is not None and report.file_format and not parsed and not issues.count:
        issues.add("error", "empty_file", "line 1: no rows", line=1)
    _duplicates(objs, rows, issues)
    report.identity = _identity(rows, issues) if rows else None
    if model and rows:
        report.tokens = _token_lengths(rows, model, max_length, system, issues)
    elif max_length and not model:
        issues.add("info", "no_model", "pass --model to count tokens and the rows ms-swift drops at max_length")
    report.issues = issues.finish()
    return report
