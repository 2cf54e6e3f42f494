"""Does a DPO (or ORPO/SimPO/CPO) LoRA checkpoint prefer the chosen answers of its preference pairs?

For each pair, the summed log-probability of the chosen and of the rejected answer (with its end-of-turn token)
after the prompt, rendered with the model's own chat template, under the reference (the base model, plus the
run's --ref_adapters when it had one) and under the checkpoint. A pair is preferred when log p(chosen) >
log p(rejected); the DPO reward margin is beta * ((chosen - chosen_ref) - (rejected - rejected_ref)). Besides the
log-probs, what each one answers (greedy, stateless): the answer is the chosen one, the rejected one, or another.

    python -m engine.preference CKPT [--dataset FILE] [--sample N] [--json]

Heavy imports (torch, transformers, peft) happen in `measure` only: callers in the dashboard's process run this
module as a subprocess (see run_subprocess).
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

from engine.errors import SwiftdeckError


class PreferenceError(SwiftdeckError):
    """The check could not run (one line for the user)."""


@dataclass
class Pair:
    prompt: list[dict]  # messages up to the answer
    chosen: str
    rejected: str


@dataclass
class PairScore:
    question: str
    chosen_ref: float
    rejected_ref: float
    chosen: float
    rejected: float
    answer_ref: str | None = None  # the reference's greedy answer to the prompt
    answer: str | None = None  # the checkpoint's
    said_ref: str | None = None  # which the reference's answer is: "chosen", "rejected" or "other"
    said: str | None = None


def said(answer: str, pair: Pair) -> str:
    """Whether a greedy answer is the pair's chosen or rejected answer (word for word), or another."""
    return next((name for name, text in (("chosen", pair.chosen), ("rejected", pair.rejected))
                 if answer.strip() == text.strip()), "other")


@dataclass
class PreferenceReport:
    checkpoint: str
    reference: str  # "base model" or "base model + <ref adapter>"
    beta: float
    pairs: list[PairScore] = field(default_factory=list)

    @property
    def ref_prefers(self) -> int:
        return sum(p.chosen_ref > p.rejected_ref for p in self.pairs)

    @property
    def prefers(self) -> int:
        return sum(p.chosen > p.rejected for p in self.pairs)

    @property
    def moved(self) -> int:
        """Pairs whose reward margin is positive: the checkpoint moved towards the chosen answer."""
        return sum((p.chosen - p.chosen_ref) > (p.rejected - p.rejected_ref) for p in self.pairs)

    def says_chosen(self, ref: bool = False) -> int:
        """Pairs whose greedy answer (of the reference, or of the checkpoint) is the chosen answer, word for word."""
        return sum((p.said_ref if ref else p.said) == "chosen" for p in self.pairs)

    def says_rejected(self, ref: bool = False) -> int:
        return sum((p.said_ref if ref else p.said) == "rejected" for p in self.pairs)

    def mean_gap(self, ref: bool = False) -> float:
        """Mean log p(chosen) - log p(rejected), under the reference or the checkpoint."""
        gaps = [(p.chosen_ref - p.rejected_ref) if ref else (p.chosen - p.rejected) for p in self.pairs]
        return sum(gaps) / len(gaps) if gaps else 0.0

    @property
    def mean_reward_margin(self) -> float:
        """The mean DPO reward margin over the pairs (the reference's is 0 by definition)."""
        if not self.pairs:
            return 0.0
        return sum(self.beta * ((p.chosen - p.chosen_ref) - (p.rejected - p.rejected_ref))
                   for p in self.pairs) / len(self.pairs)

    def to_json(self) -> dict:
        return {**asdict(self), "ref_prefers": self.ref_prefers, "prefers": self.prefers, "moved": self.moved,
                "mean_gap_ref": self.mean_gap(ref=True), "mean_gap": self.mean_gap(),
                "mean_reward_margin": self.mean_reward_margin, "says_chosen_ref": self.says_chosen(ref=True),
                "says_chosen": self.says_chosen(), "says_rejected_ref": self.says_rejected(ref=True),
                "says_rejected": self.says_rejected()}

    @classmethod
    def from_json(cls, data: dict) -> "PreferenceReport":
        return cls(data["checkpoint"], data["reference"], data["beta"], [PairScore(**p) for p in data["pairs"]])

    def format(self) -> str:
        n, name = len(self.pairs), Path(self.checkpoint).name
        return "\n".join([
            f"{n} preference pairs: log p(chosen) - log p(rejected), mean over the pairs",
            f"  reference ({self.reference}): {self.mean_gap(ref=True):+.2f}; prefers the chosen answer in "
            f"{self.ref_prefers}/{n}",
            f"  {name}: {self.mean_gap():+.2f}; prefers the chosen answer in {self.prefers}/{n}",
            f"  {name} moved towards the chosen answer (DPO reward margin > 0) in {self.moved}/{n}; mean margin "
            f"{self.mean_reward_margin:+.3f} (beta {self.beta:g})",
            f"greedy answers: the reference says the chosen answer in {self.says_chosen(ref=True)}/{n} (the rejected "
            f"in {self.says_rejected(ref=True)}), {name} in {self.says_chosen()}/{n} (the rejected in "
            f"{self.says_rejected()})",
        ])


def read_pairs(path: Path) -> list[Pair]:
    """Preference pairs of an ms-swift dataset file: messages (or query/response, instruction/output) with
    rejected_response or rejected_messages."""
    text = Path(path).read_text(encoding="utf-8")
    rows = json.loads(text) if text.lstrip().startswith("[") else [json.loads(x) for x in text.splitlines()
                                                                     if x.strip()]
    pairs = []
    for row in rows:
        if not isinstance(row, dict):
            continue
        if isinstance(row.get("messages"), list) and row["messages"]:
            msgs = [{"role": m.get("role"), "content": m.get("content")} for m in row["messages"]]
        else:
            query = row.get("query") or row.get("instruction") or row.get("prompt")
            answer = row.get("response") or row.get("output") or row.get("chosen")
            msgs = [{"role": "user", "content": query}, {"role": "assistant", "content": answer}]
        rejected = row.get("rejected_response")
        if rejected is None and isinstance(row.get("rejected_messages"), list) and row["rejected_messages"]:
            rejected = row["rejected_messages"][-1].get("content")
        if msgs[-1]["role"] == "assistant" and isinstance(msgs[-1]["content"], str) and isinstance(rejected, str):
            if row.get("system") and msgs[0]["role"] != "system":
                msgs.insert(0, {"role": "system", "content": row["system"]})
            pairs.append(Pair(msgs[:-1], msgs[-1]["content"], rejected))
    return pairs


def _run_args(ckpt: Path) -> dict:
    for path in (ckpt / "args.json", ckpt.parent / "args.json"):
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
    return {}


def measure(ckpt: Path, *, dataset: Path | None = None, sample: int | None = None) -> PreferenceReport:
    """Score every pair (or the first `sample`) under the reference and the checkpoint (loads the model once)."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    ckpt = Path(ckpt).resolve()
    if not (ckpt / "adapter_config.json").is_file():
        raise PreferenceError(f"{ckpt} is not a LoRA checkpoint (no adapter_config.json)")
    args = _run_args(ckpt)
    data = dataset or next(iter(args.get("dataset") or []), None)
    if not data or not Path(data).is_file():
        raise PreferenceError(f"no local preference dataset for {ckpt.name}: pass --dataset FILE")
    pairs = read_pairs(Path(data))[:sample or None]
    if not pairs:
        raise PreferenceError(f"{data}: no preference pairs (rows with rejected_response)")
    base = args.get("model") or json.loads((ckpt / "adapter_config.json").read_text())["base_model_name_or_path"]
    refs = args.get("ref_adapters") or []
    tok = AutoTokenizer.from_pretrained(base)
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    if refs:
        model = PeftModel.from_pretrained(model, refs[0], adapter_name="ref")
        model.load_adapter(str(ckpt), adapter_name="policy")
    else:
        model = PeftModel.from_pretrained(model, str(ckpt), adapter_name="policy")
    model.eval()
    system = args.get("system")
    end = tok.eos_token or ""

    def head_ids(prompt: list[dict]) -> list[int]:
        msgs = prompt if not system or prompt[:1] and prompt[0]["role"] == "system" else \
            [{"role": "system", "content": system}, *prompt]
        head = tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
        return tok(head, add_special_tokens=False)["input_ids"]

    def logp(prompt: list[dict], answer: str) -> float:
        p_ids = head_ids(prompt)
        a_ids = tok(answer + end, add_special_tokens=False)["input_ids"]
        ids = torch.tensor([p_ids + a_ids])
        with torch.no_grad():
            logits = model(ids).logits[0, len(p_ids) - 1:-1].float()
        return float(torch.log_softmax(logits, -1).gather(1, torch.tensor(a_ids)[:, None]).sum())

    def answer(prompt: list[dict], longest: int) -> str:
        ids = torch.tensor([head_ids(prompt)])
        with torch.no_grad():
            out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), do_sample=False,
                                 max_new_tokens=longest + 8, eos_token_id=tok.eos_token_id,
                                 pad_token_id=tok.pad_token_id or tok.eos_token_id)
        return tok.decode(out[0, ids.shape[1]:], skip_special_tokens=True)

    def score(p: Pair) -> tuple[float, float, str]:
        longest = max(len(tok(a, add_special_tokens=False)["input_ids"]) for a in (p.chosen, p.rejected))
        return logp(p.prompt, p.chosen), logp(p.prompt, p.rejected), answer(p.prompt, longest)

    def scores(adapter: str | None) -> list[tuple[float, float, str]]:
        if adapter is None:
            with model.disable_adapter():
                return [score(p) for p in pairs]
        model.set_adapter(adapter)
        return [score(p) for p in pairs]

    ref = scores("ref" if refs else None)
    policy = scores("policy")
    report = PreferenceReport(str(ckpt), f"base model + {refs[0]}" if refs else "base model",
                              float(args.get("beta") or 0.1))
    for p, (cr, rr, ar), (c, r, a) in zip(pairs, ref, policy):
        report.pairs.append(PairScore(p.prompt[-1]["content"], cr, rr, c, r, ar, a, said(ar, p), said(a, p)))
    return report


def run_subprocess(ckpt: Path, *, dataset: Path | None = None, sample: int | None = None) -> PreferenceReport:
    """`measure` in a child process (the caller never imports torch)."""
    argv = [sys.executable, "-m", "engine.preference", str(ckpt), "--json"]
    if dataset:
        argv += ["--dataset", str(dataset)]
    if sample:
        argv += ["--sample", str(sample)]
    root = str(Path(__file__).resolve().parents[1])
    proc = subprocess.run(argv, capture_output=True, text=True, stdin=subprocess.DEVNULL, cwd=root)
    if proc.returncode != 0:
        lines = proc.stderr.strip().splitlines()
        raise PreferenceError(lines[-1].removeprefix("swiftdeck: ") if lines else f"exit code {proc.returncode}")
    return PreferenceReport.from_json(json.loads(proc.stdout.strip().splitlines()[-1]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m engine.preference", description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("--dataset", type=Path)
    parser.add_argument("--sample", type=int)
    parser.add_argument("--json", action="store_true")
    ns = parser.parse_args(argv)
    try:
        report = measure(ns.checkpoint, dataset=ns.dataset, sample=ns.sample)
    except (PreferenceError, OSError, ValueError) as exc:
        print(f"swiftdeck: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(report.to_json(), ensure_ascii=False) if ns.json else report.format())
    return 0


if __name__ == "__main__":
    sys.exit(main())
