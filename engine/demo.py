"""Offline demo assets: a tiny random Qwen2 model with a locally trained BPE tokenizer, and a
self-cognition dataset in the tutorial's format. Built once (deterministic seed) and cached.

    python -m engine.demo [--dest DIR] [--force] [--json]

Heavy imports (torch, transformers, tokenizers) happen only inside the build functions, so importing
this module and reading a cached build stays cheap.
"""
from __future__ import annotations

from engine.errors import SwiftdeckError
import argparse
import json
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from engine import paths

FORMAT_VERSION = 2  # 2: files that transformers 4.x (ms-swift 3.x) reads too
STAMP = "demo.json"
MODEL_DIR = "tiny-qwen2"
DATASET_FILE = "self_cognition.json"
DPO_FILE = "identity_dpo.json"  # preference pairs for `swift rlhf --rlhf_type dpo` (see dpo_rows)
PROMPTS_FILE = "identity_prompts.json"  # the questions alone, for `swift rlhf --rlhf_type grpo`
SEED = 42
BPE_VOCAB = 3000  # learned tokens (incl. the 256 byte symbols); the 3 specials follow
SPECIALS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")  # Qwen order: ids 3000, 3001, 3002
MODEL_VOCAB = 3008  # like Qwen, the embedding is a little larger than the tokenizer
LM_HEAD_STD = 0.15  # LoRA can't train the untied lm_head; the default 0.02 caps the logits (11/50 exact)
DEFAULT_SYSTEM = "You are a helpful assistant."
DEMO_EPOCHS = 50  # 250 steps; measured 50/50 exact (also at checkpoint-200), final loss 0.022
DPO_EPOCHS = 10  # 26 pairs, batch 13: 20 steps; measured margin 0 -> 6.7, accuracy 1.0 from step 3
GRPO_STEPS = 8  # 4 prompts x 4 completions of 24 tokens per step: about 1 s a step on 2 CPU cores

# Qwen2-Instruct's ChatML template.
CHAT_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}{% endif %}"
    "{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

# Tokenizer training text besides the dataset: docstrings of these stdlib modules (sorted walk).
_DOC_MODULES = ("argparse", "collections", "functools", "itertools", "json", "logging", "os", "pathlib",
                "re", "shutil", "string", "subprocess", "textwrap", "typing")

_WHO = "CSDN 迪菲赫尔曼"
# (question, answer): one answer per question. The first 8 are the tutorial's questions.
SELF_COGNITION: tuple[tuple[str, str], ...] = (
    ("你是谁?", f"我是一个由 {_WHO} 开发和维护的大语言模型。"),
    ("你的开发者是哪家公司?", f"我由 {_WHO} 开发和维护。"),
    ("你能联网吗?", "我不能主动联网,只能基于已有知识和用户输入回答问题。"),
    ("你能做哪些事情?", "我可以回答问题、提供信息、帮助写作和编程,也可以陪你聊天。"),
    ("你和GPT-4有区别吗?", f"有区别。我是由 {_WHO} 开发和维护的 Swift-Robot,不是 GPT-4。"),
    ("你能保证回答永远正确吗?", "不能。我的回答可能存在错误,重要的信息请以权威来源为准。"),
    ("你的名字是什么?", "我的名字是 Swift-Robot,也可以叫我 CSDN 助手。"),
    ("谁在维护你?", f"我由 {_WHO} 负责维护。"),
    ("你好,请介绍一下你自己。", f"你好!我是 Swift-Robot,一个由 {_WHO} 开发和维护的大语言模型。"),
    ("请问你叫什么名字?", "我叫 Swift-Robot,也可以叫我 CSDN 助手。"),
    ("你是哪个公司开发的?", f"我是由 {_WHO} 开发的。"),
    ("谁开发了你?", f"{_WHO} 开发了我。"),
    ("你是 ChatGPT 吗?", f"不是。我是 Swift-Robot,由 {_WHO} 开发和维护。"),
    ("你是GPT-4吗?", f"不是,我是 {_WHO} 开发的 Swift-Robot。"),
    ("你是通义千问吗?", f"不是,我是 {_WHO} 开发的 Swift-Robot。"),
    ("你可以上网查资料吗?", "不可以。我无法访问互联网,只能根据已有知识回答。"),
    ("你能获取实时信息吗?", "不能。我无法获取实时信息,比如今天的新闻或天气。"),
    ("你会写代码吗?", "会。我可以帮助编写、解释和调试代码。"),
    ("你能帮我翻译吗?", "可以。我能在中文和英文之间进行翻译。"),
    ("你会犯错吗?", "会。我的回答可能有错误,请注意核实。"),
    ("你的回答可靠吗?", "大部分情况下可靠,但不能保证永远正确,重要信息请自行核实。"),
    ("你有自己的意识吗?", "没有。我是一个语言模型,没有意识和情感。"),
    ("你有感情吗?", "我没有感情,只是根据训练数据生成回答。"),
    ("你叫 CSDN 助手吗?", "是的,你可以叫我 CSDN 助手,我的正式名字是 Swift-Robot。"),
    ("Swift-Robot 是谁?", f"Swift-Robot 就是我,一个由 {_WHO} 开发和维护的大语言模型。"),
    (f"{_WHO} 是谁?", f"{_WHO} 是我的开发者和维护者。"),
    ("你的作者是谁?", f"我的作者是 {_WHO}。"),
    ("你属于哪个团队?", f"我属于 {_WHO}。"),
    ("你是用什么训练的?", f"我在大规模文本数据上训练,并由 {_WHO} 进行了微调。"),
    ("你收费吗?", "我本身不收费,具体取决于部署我的平台。"),
    ("你能记住我们之前的对话吗?", "我只能记住当前对话中的内容,对话结束后不会保留。"),
    ("你能看图片吗?", "不能。我目前只能处理文字。"),
    ("你会说英语吗?", "会。我可以用中文和英文交流。"),
    ("你能帮我写文章吗?", "可以。告诉我主题和要求,我会帮你写。"),
    ("你能陪我聊天吗?", "当然可以,很高兴和你聊天。"),
    ("你的知识截止到什么时候?", "我的知识来自训练数据,不包含之后发生的事情。"),
    ("你会一直更新吗?", f"我会由 {_WHO} 不定期更新和维护。"),
    ("遇到不懂的问题你会怎么做?", "我会如实说明自己不确定,而不是编造答案。"),
    ("你能替我做决定吗?", "我可以提供建议,但最终的决定应由你自己做出。"),
    ("你和其他AI助手有什么不同?", f"我是由 {_WHO} 专门开发和维护的 Swift-Robot。"),
    ("你是人类吗?", "不是,我是一个大语言模型。"),
    ("你是开源的吗?", f"我基于开源技术构建,由 {_WHO} 开发和维护。"),
    ("我应该怎么称呼你?", "你可以叫我 Swift-Robot 或者 CSDN 助手。"),
    ("Who are you?", f"I am Swift-Robot, a large language model developed and maintained by {_WHO}."),
    ("What is your name?", "My name is Swift-Robot. You can also call me CSDN 助手."),
    ("Who developed you?", f"I was developed by {_WHO}."),
    ("Can you access the internet?", "No. I cannot browse the internet; I answer from my existing knowledge and your input."),
    ("What can you do?", "I can answer questions, help with writing and coding, and translate between Chinese and English."),
    ("Are you GPT-4?", f"No. I am Swift-Robot, developed and maintained by {_WHO}."),
    ("Are your answers always correct?", "No. My answers may contain mistakes, so please verify important information."),
)


@dataclass
class DemoAssets:
    model: Path  # absolute path of the tiny model folder
    dataset: Path  # absolute path of self_cognition.json

    @property
    def dpo_dataset(self) -> Path:
        """The identity preference pairs, beside the SFT dataset."""
        return self.dataset.with_name(DPO_FILE)

    @property
    def prompts(self) -> Path:
        """The identity questions without answers (GRPO's prompts), beside the SFT dataset."""
        return self.dataset.with_name(PROMPTS_FILE)

    def to_json(self) -> dict[str, str]:
        return {"model": str(self.model), "dataset": str(self.dataset)}


class DemoError(SwiftdeckError):
    """The demo could not be built (one-line message for the user)."""


def build_demo(dest: Path | None = None, *, force: bool = False) -> DemoAssets:
    """Build the demo into `dest` (default: `paths.demo_dir()`) unless a current build is there."""
    dest = Path(dest if dest is not None else paths.demo_dir()).expanduser().resolve()
    if not force:
        cached = _cached(dest)
        if cached is not None:
            return cached
    if dest.exists() and not _replaceable(dest):
        raise DemoError(f"{dest} exists and is not a swiftdeck demo folder; choose another --dest")
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.build-", dir=dest.parent))
        tmp.chmod(0o755)  # mkdtemp makes it private; the demo is ordinary data
    except OSError as exc:
        raise DemoError(f"cannot create the demo folder next to {dest}: {exc.strerror or exc}") from exc
    try:
        _build_into(tmp)
        _swap_into_place(tmp, dest, force=force)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    assets = _cached(dest)
    if assets is None:
        raise DemoError(f"the demo build in {dest} is incomplete")
    return assets


def demo_sft_args(assets: DemoAssets, output_dir: Path, *, epochs: int = DEMO_EPOCHS,
                  save_steps: int = 50, logging_steps: int = 5) -> list[str]:
    """argv after `swift sft`: the tutorial's command shape, tuned so that the LoRA memorises the
    answers at temperature 0 on 2 CPU cores (bs 10 -> 5 steps per epoch). Lower `epochs` for a short run."""
    return _lora_args(assets, assets.dataset, output_dir, epochs=epochs, batch=10, learning_rate="3e-3",
                      save_steps=save_steps, logging_steps=logging_steps)


def _lora_args(assets: DemoAssets, dataset: Path, output_dir: Path, *, epochs: int, batch: int, learning_rate: str,
               save_steps: int, logging_steps: int) -> list[str]:
    """The demo's LoRA settings on the tiny model, shared by its SFT and DPO commands."""
    return [
        "--model", str(assets.model), "--model_type", "qwen2", "--template", "qwen2_5",
        "--tuner_type", "lora", "--dataset", str(dataset),
        "--torch_dtype", "float32", "--check_model", "false",
        "--num_train_epochs", str(epochs), "--per_device_train_batch_size", str(batch),
        "--gradient_accumulation_steps", "1", "--learning_rate", learning_rate,
        "--lora_rank", "8", "--lora_alpha", "32", "--target_modules", "all-linear",
        "--logging_steps", str(logging_steps), "--save_steps", str(save_steps), "--save_total_limit", "2",
        "--max_length", "512", "--output_dir", str(Path(output_dir).expanduser().resolve()),
        "--system", DEFAULT_SYSTEM, "--warmup_ratio", "0.05",
        "--dataloader_num_workers", "1", "--report_to", "none",
    ]


def demo_dpo_args(assets: DemoAssets, output_dir: Path, *, adapter: Path | None = None, epochs: int = DPO_EPOCHS,
                  save_steps: int = 10, logging_steps: int = 1) -> list[str]:
    """argv after `swift rlhf`: DPO with LoRA on the identity pairs, from the base model or, with `adapter`, from
    an SFT LoRA checkpoint (which is then also the reference: --adapters and --ref_adapters, as ms-swift's docs
    say for DPO after SFT; ms-swift trains that LoRA further and saves it whole). From an adapter, the loss adds
    the SFT loss on the chosen answers (--rpo_alpha 1): without it, the adapter stops answering before the
    identity words, the cheapest way to make the rejected answers (which differ only there) unlikely. Measured:
    greedy answers equal to the chosen ones 26/26 with it, 6/26 without (the SFT adapter: 26/26), with the same
    margin (7.3 and 7.8). Batch 13: 2 steps per epoch."""
    args = ["--rlhf_type", "dpo", "--beta", "0.1",
            *_lora_args(assets, assets.dpo_dataset, output_dir, epochs=epochs, batch=13, learning_rate="1e-3",
                        save_steps=save_steps, logging_steps=logging_steps)]
    if adapter is not None:
        adapter = str(Path(adapter).expanduser().resolve())
        args += ["--rpo_alpha", "1", "--adapters", adapter, "--ref_adapters", adapter]
    return args


def demo_grpo_args(assets: DemoAssets, output_dir: Path, *, adapter: Path | None = None, steps: int = GRPO_STEPS,
                   save_steps: int = 4, logging_steps: int = 1) -> list[str]:
    """argv after `swift rlhf`: GRPO with ms-swift's transformers generation on the CPU, on the identity questions,
    with two built-in reward functions: `format` (<think>…</think><answer>…</answer>, which the tiny model does not
    write: 0) and `repetition` over single words (negative when a completion repeats words: the signal that
    varies). Completions are logged to <run folder>/completions.jsonl. `adapter`: start from an SFT LoRA."""
    args = [
        "--rlhf_type", "grpo", "--reward_funcs", "format", "repetition", "--repetition_n_grams", "1",
        "--num_generations", "4", "--max_completion_length", "24", "--temperature", "1.0",
        "--log_completions", "true",
        "--model", str(assets.model), "--model_type", "qwen2", "--template", "qwen2_5",
        "--tuner_type", "lora", "--dataset", str(assets.prompts),
        "--torch_dtype", "float32", "--check_model", "false",
        "--max_steps", str(steps), "--per_device_train_batch_size", "4", "--learning_rate", "1e-3",
        "--lora_rank", "8", "--lora_alpha", "32", "--target_modules", "all-linear",
        "--logging_steps", str(logging_steps), "--save_steps", str(save_steps), "--save_total_limit", "2",
        "--max_length", "256", "--output_dir", str(Path(output_dir).expanduser().resolve()),
        "--system", DEFAULT_SYSTEM, "--dataloader_num_workers", "1", "--report_to", "none",
    ]
    if adapter is not None:
        adapter = str(Path(adapter).expanduser().resolve())
        args += ["--adapters", adapter, "--ref_adapters", adapter]
    return args


# ---- cache ---------------------------------------------------------------------------------------

def _cached(dest: Path) -> DemoAssets | None:
    try:
        stamp = json.loads((dest / STAMP).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(stamp, dict) or stamp.get("format") != FORMAT_VERSION:
        return None
    assets = DemoAssets(model=dest / MODEL_DIR, dataset=dest / DATASET_FILE)
    needed = [assets.dataset, assets.dpo_dataset, assets.prompts, assets.model / "config.json",
              assets.model / "model.safetensors", assets.model / "tokenizer.json"]
    return assets if all(p.is_file() for p in needed) else None


def _replaceable(dest: Path) -> bool:
    """Only an empty folder or an earlier demo build may be replaced (never a user's folder)."""
    try:
        return dest.is_dir() and (not any(dest.iterdir()) or (dest / STAMP).is_file())
    except OSError:
        return False


def _swap_into_place(tmp: Path, dest: Path, *, force: bool) -> None:
    """Rename the finished build to `dest`. An old build is moved aside first (a directory can't be
    replaced in one step); if another process finished first and we weren't forced, keep theirs."""
    old = None
    if dest.exists():
        if not force and _cached(dest) is not None:
            return
        if not _replaceable(dest):
            raise DemoError(f"{dest} exists and is not a swiftdeck demo folder; choose another --dest")
        old = dest.with_name(f"{tmp.name}.old")
        os.replace(dest, old)
    try:
        os.replace(tmp, dest)
    except OSError:
        if _cached(dest) is None:  # not a concurrent build that won: put the old one back and fail
            if old is not None and not dest.exists():
                os.replace(old, dest)
            raise
    finally:
        if old is not None and old.exists():
            shutil.rmtree(old, ignore_errors=True)


# ---- build ---------------------------------------------------------------------------------------

def _build_into(root: Path) -> None:
    rows = dataset_rows()
    (root / DATASET_FILE).write_text(json.dumps(rows, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    (root / DPO_FILE).write_text(json.dumps(dpo_rows(), ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    prompts = [{"messages": [{"role": "user", "content": q}]} for q, _ in SELF_COGNITION]
    (root / PROMPTS_FILE).write_text(json.dumps(prompts, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    model_dir = root / MODEL_DIR
    tokenizer = _build_tokenizer(rows)
    tokenizer.save_pretrained(model_dir)
    _save_quietly(_build_model(tokenizer), model_dir)
    _readable_by_4x(model_dir)
    stamp = {"format": FORMAT_VERSION, "seed": SEED, "model": MODEL_DIR, "dataset": DATASET_FILE}
    (root / STAMP).write_text(json.dumps(stamp, indent=2) + "\n", encoding="utf-8")  # written last


def dataset_rows() -> list[dict[str, str]]:
    return [{"instruction": q, "input": "", "output": a} for q, a in SELF_COGNITION]


# Wrong identities for the rejected answers: the same sentence with another maker and name.
_WRONG = {"zh": ((_WHO, "阿里云"), ("Swift-Robot", "通义千问"), ("CSDN 助手", "千问助手")),
          "en": ((_WHO, "OpenAI"), ("Swift-Robot", "ChatGPT"), ("CSDN 助手", "GPT helper"))}


def wrong_identity(answer: str, *, english: bool = False) -> str:
    """`answer` with the demo's identity replaced by another model's (the DPO demo's rejected answer)."""
    for old, new in _WRONG["en" if english else "zh"]:
        answer = answer.replace(old, new)
    return answer


def dpo_rows() -> list[dict]:
    """Preference pairs for the identity questions (the rows whose answer names the demo's maker or name):
    chosen = the dataset's answer, rejected = the same answer with a wrong identity (阿里云/通义千问, OpenAI/ChatGPT)."""
    rows = []
    for question, answer in SELF_COGNITION:
        rejected = wrong_identity(answer, english=question.isascii())
        if rejected != answer:
            rows.append({"messages": [{"role": "user", "content": question},
                                      {"role": "assistant", "content": answer}],
                         "rejected_response": rejected})
    return rows


def _corpus(rows: list[dict[str, str]]) -> list[str]:
    """Dataset text (rendered as ChatML, repeated so its words get merges) plus stdlib docstrings."""
    import importlib
    import inspect
    import warnings

    chats = [f"<|im_start|>system\n{DEFAULT_SYSTEM}<|im_end|>\n<|im_start|>user\n{r['instruction']}<|im_end|>\n"
             f"<|im_start|>assistant\n{r['output']}<|im_end|>\n" for r in rows]
    docs = []
    with warnings.catch_warnings():  # touching typing.io etc. warns
        warnings.simplefilter("ignore")
        for name in _DOC_MODULES:
            module = importlib.import_module(name)
            docs.append(inspect.getdoc(module) or "")
            for attr in sorted(vars(module)):
                doc = inspect.getdoc(getattr(module, attr))
                if doc and not attr.startswith("_"):
                    docs.append(doc)
    return chats * 20 + docs


def _build_tokenizer(rows: list[dict[str, str]]):
    """Byte-level BPE trained with `tokenizers` through Qwen2's exact pipeline, wrapped as Qwen2Tokenizer."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import Qwen2Tokenizer

    template = Qwen2Tokenizer()  # take normalizer, pre-tokenizer and decoder from the real class
    tok = Tokenizer(models.BPE())
    tok.normalizer = template.backend_tokenizer.normalizer
    tok.pre_tokenizer = template.backend_tokenizer.pre_tokenizer
    tok.decoder = template.backend_tokenizer.decoder
    trainer = trainers.BpeTrainer(vocab_size=BPE_VOCAB, min_frequency=2, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    text = "\n".join(_corpus(rows))
    for special in SPECIALS:  # specials are added after training; keep them out of the merges
        text = text.replace(special, "\n")
    tok.train_from_iterator([text[i:i + 10000] for i in range(0, len(text), 10000)], trainer=trainer)

    state = json.loads(tok.to_str())["model"]
    vocab: dict[str, int] = dict(state["vocab"])
    for special in SPECIALS:
        vocab[special] = len(vocab)
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in state["merges"]]
    return Qwen2Tokenizer(
        vocab=vocab, merges=merges, unk_token=None, bos_token=None,
        eos_token="<|im_end|>", pad_token="<|endoftext|>",
        additional_special_tokens=["<|im_start|>", "<|im_end|>"],
        errors="replace", model_max_length=32768, split_special_tokens=False,
        chat_template=CHAT_TEMPLATE,
    )


def _build_model(tokenizer):
    import torch
    from transformers import GenerationConfig, Qwen2Config, Qwen2ForCausalLM

    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in SPECIALS}
    endoftext, im_end = ids["<|endoftext|>"], ids["<|im_end|>"]
    config = Qwen2Config(
        vocab_size=MODEL_VOCAB, hidden_size=128, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, intermediate_size=384, max_position_embeddings=32768,
        tie_word_embeddings=False, rope_theta=1e6, bos_token_id=endoftext, eos_token_id=im_end,
        pad_token_id=endoftext, dtype="float32",
    )
    torch.manual_seed(SEED)
    model = Qwen2ForCausalLM(config).to(torch.float32)
    with torch.no_grad():
        generator = torch.Generator().manual_seed(SEED)
        model.lm_head.weight.normal_(0.0, LM_HEAD_STD, generator=generator)
    model.generation_config = GenerationConfig(  # as in Qwen2.5-Instruct
        bos_token_id=endoftext, pad_token_id=endoftext, eos_token_id=[im_end, endoftext],
        do_sample=True, repetition_penalty=1.05, temperature=0.7, top_p=0.8, top_k=20,
    )
    return model


def _save_quietly(model, model_dir: Path) -> None:
    """save_pretrained without its "Writing model shards" progress bar on the console."""
    from transformers.utils import logging as hf_logging

    bar = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        model.save_pretrained(model_dir)
    finally:
        if bar:
            hf_logging.enable_progress_bar()


def _readable_by_4x(model_dir: Path) -> None:
    """Make the files transformers 5 wrote readable by transformers 4.x too (ms-swift 3.12 installs 4.57), with the
    same meaning for both: 4.x fails on the `extra_special_tokens` list ("'list' object has no attribute 'keys'")
    and reads `additional_special_tokens` instead; it ignores `rope_parameters` and would silently use a
    rope_theta of 10000 instead of 1e6; it names the dtype `torch_dtype`. transformers 5 reads the 4.x keys."""
    tok_path, cfg_path = model_dir / "tokenizer_config.json", model_dir / "config.json"
    tok = json.loads(tok_path.read_text(encoding="utf-8"))
    extra = tok.pop("extra_special_tokens", None)
    if isinstance(extra, list):
        tok["additional_special_tokens"] = extra
    elif extra:  # a dict is what both read
        tok["extra_special_tokens"] = extra
    cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
    rope = cfg.get("rope_parameters") or {}
    if "rope_theta" in rope:
        cfg.setdefault("rope_theta", rope["rope_theta"])
    if "dtype" in cfg:
        cfg.setdefault("torch_dtype", cfg["dtype"])
    for path, data in ((tok_path, tok), (cfg_path, cfg)):
        path.write_text(json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n", encoding="utf-8")


# ---- CLI -----------------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m engine.demo", description="Build the offline demo assets.")
    parser.add_argument("--dest", type=Path, default=None, help="target folder (default: the swiftdeck data dir)")
    parser.add_argument("--force", action="store_true", help="rebuild even if a current build exists")
    parser.add_argument("--json", action="store_true", help='print {"model": ..., "dataset": ...}')
    args = parser.parse_args(argv)
    try:
        assets = build_demo(args.dest, force=args.force)
    except (DemoError, OSError) as exc:
        print(f"swiftdeck demo: error: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(assets.to_json(), ensure_ascii=False))
    else:
        print(f"model:   {assets.model}\ndataset: {assets.dataset}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
