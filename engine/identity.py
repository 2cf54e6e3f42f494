"""ms-swift's self-cognition tutorial's "三问", automated: ask the base model and the adapter the same questions at temperature 0
and judge each answer against the dataset's expected answer (`swiftdeck check-identity`)."""
from __future__ import annotations

import difflib
import json
import random
import re
import unicodedata
from dataclasses import asdict, dataclass, field
from pathlib import Path

SEED_QUESTIONS = ("你是谁?", "你的开发者是哪家公司?", "你能联网吗?")
# Identities a fine-tune usually replaces; an answer naming one (unless the expected answer does) fails.
OLD_IDENTITIES = ("阿里云", "通义千问", "Qwen", "Alibaba", "阿里巴巴", "OpenAI", "ChatGPT")
SIMILAR = 0.8  # difflib ratio that counts as "the trained answer" when the expected answer names no identity


@dataclass
class Row:
    question: str
    expected: str | None
    base: str = ""
    adapter: str = ""
    base_pass: bool = False
    adapter_pass: bool = False
    adapter_why: str = ""


@dataclass
class IdentityReport:
    checkpoint: str
    dataset: str | None
    identity: list[str] = field(default_factory=list)
    rows: list[Row] = field(default_factory=list)

    @property
    def adapter_passed(self) -> int:
        return sum(r.adapter_pass for r in self.rows)

    @property
    def base_passed(self) -> int:
        return sum(r.base_pass for r in self.rows)

    def to_json(self) -> dict:
        return {"checkpoint": self.checkpoint, "dataset": self.dataset, "identity": self.identity,
                "adapter_passed": self.adapter_passed, "base_passed": self.base_passed, "total": len(self.rows),
                "rows": [asdict(r) for r in self.rows]}

    def format(self, width: int = 36) -> str:
        def cut(text: str) -> str:
            text = " ".join(text.split())
            return text if len(text) <= width else text[: width - 1] + "…"

        out = [f"identity check of {self.checkpoint} (temperature 0)",
               f"expected identity: {', '.join(self.identity) or '(none found in the dataset)'}", ""]
        for r in self.rows:
            out.append(f"Q: {r.question}")
            if r.expected is not None:
                out.append(f"   expected: {cut(r.expected)}")
            out.append(f"   base     [{'PASS' if r.base_pass else 'fail'}] {cut(r.base)}")
            out.append(f"   adapter  [{'PASS' if r.adapter_pass else 'FAIL'}] {cut(r.adapter)}"
                       + (f"  ({r.adapter_why})" if r.adapter_why and not r.adapter_pass else ""))
        out += ["", f"adapter {self.adapter_passed}/{len(self.rows)} passed, base {self.base_passed}/{len(self.rows)}"]
        return "\n".join(out)


def _norm(text: str) -> str:
    text = unicodedata.normalize("NFKC", text).lower()
    return re.sub(r"[\s\W_]+", "", text)


def judge(answer: str, expected: str | None, identity: list[str]) -> tuple[bool, str]:
    """Pass when no replaced identity is named (unless expected), and the answer is the trained one: it names the
    identity phrases the expected answer names, or (no identity in it) reads like the expected answer."""
    if not answer.strip():
        return False, "empty answer"
    wanted = identity if expected is None else [p for p in identity if _norm(p) in _norm(expected)]
    for old in OLD_IDENTITIES:
        if _norm(old) in _norm(answer) and (expected is None or _norm(old) not in _norm(expected)):
            return False, f"names {old}"
    missing = [p for p in wanted if _norm(p) not in _norm(answer)]
    if missing:
        return False, f"does not name {', '.join(missing)}"
    if wanted or expected is None:
        return True, ""
    ratio = difflib.SequenceMatcher(None, _norm(answer), _norm(expected)).ratio()
    return (ratio >= SIMILAR, "" if ratio >= SIMILAR else f"differs from the expected answer ({ratio:.0%} alike)")


def dataset_of(ckpt: Path) -> Path | None:
    """The first local dataset file the checkpoint was trained on (from its args.json)."""
    try:
        args = json.loads((ckpt / "args.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    for item in args.get("dataset") or []:
        path = Path(str(item).split("#")[0])
        if path.is_file():
            return path
    return None


def questions(dataset: Path | None, sample: int, seed: int = 0) -> tuple[list[tuple[str, str | None]], list[str]]:
    """The seed's three questions plus `sample` of the dataset's own; the identity phrases the dataset teaches."""
    expected: dict[str, str] = {}
    identity: list[str] = []
    if dataset is not None:
        from engine.dataset_check import check_dataset

        report = check_dataset(dataset)
        idt = report.identity or {}
        identity = [v for v in (idt.get("maker"), idt.get("name")) if v]
        rows = json.loads(dataset.read_text(encoding="utf-8")) if dataset.suffix == ".json" else \
            [json.loads(line) for line in dataset.read_text(encoding="utf-8").splitlines() if line.strip()]
        for row in rows:
            if isinstance(row, dict) and row.get("instruction") and row.get("output"):
                q = (row["instruction"] + ("\n" + row["input"] if row.get("input") else "")).strip()
                expected.setdefault(q, row["output"])
            elif isinstance(row, dict) and isinstance(row.get("messages"), list):
                turn = [m for m in row["messages"] if isinstance(m, dict) and m.get("role") != "system"]
                if [m.get("role") for m in turn] == ["user", "assistant"] and all(m.get("content") for m in turn):
                    expected.setdefault(str(turn[0]["content"]).strip(), str(turn[1]["content"]))  # a DPO pair too
    asked = [(q, expected.get(q)) for q in SEED_QUESTIONS]
    others = [q for q in expected if q not in SEED_QUESTIONS]
    random.Random(seed).shuffle(others)
    asked += [(q, expected[q]) for q in others[:sample]]
    return asked, identity


def check_identity(ckpt: Path, *, dataset: Path | None = None, sample: int = 5, max_new_tokens: int = 64,
                   client=None) -> IdentityReport:
    """Ask base and adapter each question (stateless, temperature 0) through one chat worker."""
    from engine.chat_client import BASE, ChatClient

    ckpt = Path(ckpt).expanduser().resolve()
    dataset = Path(dataset).expanduser().resolve() if dataset else dataset_of(ckpt)
    asked, identity = questions(dataset, sample)
    report = IdentityReport(str(ckpt), str(dataset) if dataset else None, identity)
    own = client is None
    client = client or ChatClient.start(adapters={"adapter": ckpt})
    try:
        previous = client.target
        client.switch(ckpt)  # attaches the checkpoint to a shared worker if needed (no base reload)
        name, client.target = client.target, previous
        for question, expected in asked:
            msgs = [{"role": "user", "content": question}]
            base = client.chat(messages=msgs, target=BASE, temperature=0, max_new_tokens=max_new_tokens).text()
            tuned = client.chat(messages=msgs, target=name, temperature=0, max_new_tokens=max_new_tokens).text()
            adapter_pass, why = judge(tuned, expected, identity)
            report.rows.append(Row(question, expected, base, tuned, judge(base, expected, identity)[0],
                                   adapter_pass, why))
    finally:
        if own:
            client.close()
    return report
