"""The offline demo assets: deterministic, cached, a real Qwen2 tokenizer/model, the tutorial's dataset."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from engine import demo

REPO = Path(__file__).resolve().parents[1]


def _hashes(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_second_call_uses_the_cache(demo_assets):
    stamp = demo_assets.model.parent / demo.STAMP
    weights = demo_assets.model / "model.safetensors"
    before = (stamp.stat().st_mtime_ns, weights.stat().st_ino)
    assert demo.build_demo(demo_assets.model.parent) == demo_assets
    assert (stamp.stat().st_mtime_ns, weights.stat().st_ino) == before
    leftovers = [p.name for p in demo_assets.model.parent.parent.iterdir() if ".build-" in p.name]
    assert leftovers == []


def test_rebuild_is_deterministic_and_replaces_stale_builds(demo_assets, tmp_path):
    dest = tmp_path / "demo"
    shutil.copytree(demo_assets.model.parent, dest)
    (dest / "tiny-qwen2" / "model.safetensors").write_bytes(b"garbage")
    assets = demo.build_demo(dest, force=True)
    assert assets == demo.DemoAssets(dest / "tiny-qwen2", dest / "self_cognition.json")
    first, second = _hashes(demo_assets.model.parent), _hashes(dest)
    assert set(first) >= {"demo.json", "self_cognition.json", "tiny-qwen2/model.safetensors",
                          "tiny-qwen2/tokenizer.json", "tiny-qwen2/config.json"}
    assert first == second  # same bytes from a fresh build: weights, tokenizer, dataset

    # a stamp of another format version is not trusted: rebuilt without force
    (dest / demo.STAMP).write_text(json.dumps({"format": demo.FORMAT_VERSION - 1}))
    ino = (dest / "tiny-qwen2" / "model.safetensors").stat().st_ino
    demo.build_demo(dest)
    assert _hashes(dest) == first
    assert (dest / "tiny-qwen2" / "model.safetensors").stat().st_ino != ino
    assert sorted(p.name for p in tmp_path.iterdir()) == ["demo"]


def test_paths_are_absolute_and_json(demo_assets):
    assert demo_assets.model.is_absolute() and demo_assets.dataset.is_absolute()
    assert demo_assets.model.name == "tiny-qwen2" and demo_assets.dataset.name == "self_cognition.json"
    assert demo_assets.to_json() == {"model": str(demo_assets.model), "dataset": str(demo_assets.dataset)}


def test_tokenizer_is_qwen2_with_chatml(demo_assets):
    from transformers import AutoTokenizer, Qwen2Tokenizer

    tok = AutoTokenizer.from_pretrained(demo_assets.model)
    assert isinstance(tok, Qwen2Tokenizer)
    ids = tok.convert_tokens_to_ids(list(demo.SPECIALS))
    assert ids == [demo.BPE_VOCAB, demo.BPE_VOCAB + 1, demo.BPE_VOCAB + 2]
    assert (tok.eos_token, tok.pad_token) == ("<|im_end|>", "<|endoftext|>")
    assert len(tok) == demo.BPE_VOCAB + 3

    for text in ["我是一个由 CSDN 迪菲赫尔曼 开发和维护的大语言模型。", "量子纠缠与朝花夕拾,没见过的汉字也行:鑫龘🙂",
                 "def f(x):\n    return x  # Hello"]:
        encoded = tok.encode(text)
        assert all(i < demo.BPE_VOCAB for i in encoded)
        assert tok.decode(encoded) == text

    messages = [{"role": "user", "content": "你是谁?"}]
    text = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert text == ("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
                    "<|im_start|>user\n你是谁?<|im_end|>\n<|im_start|>assistant\n")
    encoded = tok(text)["input_ids"]
    im_start, im_end = ids[1], ids[2]
    assert encoded.count(im_start) == 3 and encoded.count(im_end) == 2
    assert encoded[0] == im_start and tok.decode(encoded) == text


def test_tokenizer_pipeline_is_qwen2s(demo_assets):
    spec = json.loads((demo_assets.model / "tokenizer.json").read_text(encoding="utf-8"))
    assert spec["normalizer"]["type"] == "NFC"
    assert [p["type"] for p in spec["pre_tokenizer"]["pretokenizers"]] == ["Split", "ByteLevel"]
    assert spec["decoder"]["type"] == "ByteLevel"
    assert spec["model"]["type"] == "BPE"
    config = json.loads((demo_assets.model / "tokenizer_config.json").read_text(encoding="utf-8"))
    assert config["tokenizer_class"] == "Qwen2Tokenizer"


def test_model_loads_and_config_matches(demo_assets):
    import torch
    from transformers import AutoModelForCausalLM, GenerationConfig

    model = AutoModelForCausalLM.from_pretrained(demo_assets.model)
    cfg = model.config
    assert type(model).__name__ == "Qwen2ForCausalLM"
    assert (cfg.hidden_size, cfg.num_hidden_layers, cfg.num_attention_heads, cfg.num_key_value_heads,
            cfg.intermediate_size) == (128, 2, 4, 2, 384)
    assert cfg.tie_word_embeddings is False and cfg.vocab_size >= demo.BPE_VOCAB + 3
    assert cfg.rope_parameters["rope_theta"] == 1e6
    assert 0.12 < model.lm_head.weight.std().item() < 0.18  # the wide init the demo needs
    gen = GenerationConfig.from_pretrained(demo_assets.model)
    assert gen.eos_token_id == [demo.BPE_VOCAB + 2, demo.BPE_VOCAB]
    with torch.no_grad():
        logits = model(torch.tensor([[demo.BPE_VOCAB + 1, 10, 20]])).logits
    assert logits.shape == (1, 3, cfg.vocab_size) and torch.isfinite(logits).all()


def test_dataset_has_the_tutorial_questions(demo_assets):
    rows = json.loads(demo_assets.dataset.read_text(encoding="utf-8"))
    assert 40 <= len(rows) <= 60
    assert all(set(r) == {"instruction", "input", "output"} and r["input"] == "" for r in rows)
    questions = [r["instruction"] for r in rows]
    assert len(set(questions)) == len(questions)  # one answer per question
    answers = dict(zip(questions, (r["output"] for r in rows)))
    for q in ["你是谁?", "你的开发者是哪家公司?", "你能联网吗?", "你能做哪些事情?", "你和GPT-4有区别吗?",
              "你能保证回答永远正确吗?", "你的名字是什么?", "谁在维护你?"]:
        assert q in answers
    assert answers["你是谁?"] == "我是一个由 CSDN 迪菲赫尔曼 开发和维护的大语言模型。"
    assert "CSDN 迪菲赫尔曼" in answers["谁在维护你?"]
    assert "Swift-Robot" in answers["你的名字是什么?"]
    assert answers["Who are you?"].startswith("I am Swift-Robot")
    assert sum(q.isascii() for q in questions) >= 5


def test_sft_args_are_absolute_and_tunable(demo_assets, tmp_path):
    argv = demo.demo_sft_args(demo_assets, tmp_path / "out", epochs=2)
    opts = dict(zip(argv[::2], argv[1::2]))
    assert len(argv) % 2 == 0 and all(k.startswith("--") for k in opts)
    assert opts["--model"] == str(demo_assets.model) and opts["--dataset"] == str(demo_assets.dataset)
    assert Path(opts["--output_dir"]).is_absolute()
    assert (opts["--model_type"], opts["--template"], opts["--tuner_type"]) == ("qwen2", "qwen2_5", "lora")
    assert opts["--num_train_epochs"] == "2"
    assert demo.demo_sft_args(demo_assets, tmp_path)[argv.index("--num_train_epochs") + 1] == str(demo.DEMO_EPOCHS)


def test_cli_json_and_bad_dest(demo_assets, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "engine.demo", "--dest", str(demo_assets.model.parent), "--json"]
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tmp_path, check=True)
    assert json.loads(out.stdout) == demo_assets.to_json()

    blocker = tmp_path / "file"
    blocker.write_text("x")
    cmd = [sys.executable, "-m", "engine.demo", "--dest", str(blocker / "demo")]
    bad = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tmp_path)
    assert bad.returncode == 1 and "Traceback" not in bad.stderr
    assert bad.stderr.startswith("swiftdeck demo: error:") and len(bad.stderr.strip().splitlines()) == 1


def test_never_replaces_a_foreign_folder(tmp_path):
    dest = tmp_path / "mine"
    dest.mkdir()
    (dest / "notes.txt").write_text("keep me")
    with pytest.raises(demo.DemoError, match="not a swiftdeck demo folder"):
        demo.build_demo(dest, force=True)
    assert (dest / "notes.txt").read_text() == "keep me"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine"]


def test_import_is_light():
    code = "import sys, engine.demo; print(any(m in sys.modules for m in ('torch', 'transformers', 'tokenizers')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.slow
def test_short_real_training_runs(demo_assets, tmp_path):
    """A few real `swift sft` steps on the demo (the full memorisation run belongs to the e2e test)."""
    swift = Path(sys.executable).with_name("swift")
    argv = [str(swift), "sft", *demo.demo_sft_args(demo_assets, tmp_path / "out", epochs=1, save_steps=5)]
    proc = subprocess.run(argv, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    ckpts = list((tmp_path / "out").glob("v*/checkpoint-5/adapter_model.safetensors"))
    assert len(ckpts) == 1
