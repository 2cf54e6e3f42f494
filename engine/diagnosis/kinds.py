"""Diagnoses of the kinds found through the message catalog (engine.diagnosis.catalog): a wrong argument value, a
missing package, an unknown model type or template, a reward function that doesn't exist, DeepSpeed and vLLM
failures. The older kinds (OOM, datasets, adapters, resume, ...) are built in engine.diagnose."""
from __future__ import annotations

import re

from engine.diagnosis.catalog import package_of
from engine.diagnosis.evidence import _Ctx, _path_like
from engine.diagnosis.result import Diagnosis


def _reason(ctx: _Ctx) -> str:
    first = ctx.chain[-1].message.splitlines()[0] if ctx.chain and ctx.chain[-1].message else ""
    return first if len(first) <= 200 else first[:197] + "..."


def _first(text: str, *patterns: str) -> re.Match | None:
    for p in patterns:
        m = re.search(p, text)
        if m:
            return m
    return None


def invalid_argument(ctx: _Ctx) -> Diagnosis:
    """ms-swift (or argparse) refused the value of a flag, or a combination of flags."""
    text = ctx.chain_text
    reason = _reason(ctx)
    flag = None
    if m := re.search(r"error: argument (--\w+)(?:/\S+)?: (.+)", text):
        flag, reason = m[1], m[2]
    elif m := _first(text, r"Target modules (.*) not found in the base model"):
        flag = "--target_modules"
    elif "rlhf_type" in text:
        flag = "--rlhf_type"
    remedies = []
    if m := re.search(r"invalid choice: '([^']*)' \(choose from (.+)\)", text):
        remedies.append(f"{flag or 'the flag'}: use one of {m[2]} (not '{m[1]}')")
    elif flag == "--target_modules":
        remedies.append("--target_modules all-linear (every linear layer), or names that exist in the model "
                        "(e.g. q_proj k_proj v_proj o_proj for Qwen/Llama)")
    elif "Please input the training dataset" in text:
        remedies.append("pass the training data with --dataset FILE (or a hub dataset id)")
    elif "Please set --model" in text:
        remedies.append("pass the model with --model FOLDER (or a hub model id)")
    elif "already exists" in text and "output_dir" in text:
        remedies.append("pass an --output_dir that does not exist yet (swift export never overwrites)")
    elif "num_generations" in text:
        remedies.append("--num_generations 2 or more (GRPO compares completions of the same prompt)")
    elif "prepare_kto_dataset" in ctx.frames and "NoneType" in text:
        flag = "--gradient_accumulation_steps"
        reason = "KTO needs it given (ms-swift 4.6 multiplies the batch size by it before setting its default)"
        remedies.append("--gradient_accumulation_steps 1 (or the value you want): give it explicitly for KTO")
    elif "Batch size is 1" in text:
        remedies.append("--per_device_train_batch_size 2 or more for KTO")
    elif re.search(r"(?:tuner|train)_type", text):
        remedies.append("--tuner_type lora (4.x) / --train_type lora (3.x): lora, full, ... (swift sft --help)")
    if flag and not remedies:
        remedies.append(f"give {flag} a valid value")
    remedies.append(f"the message names the flag; `swift {ctx.command} --help` lists the values it takes")
    summary = f"swift {ctx.command} refused its arguments" + (f": {flag}" if flag else "") + (
        f": {reason}" if reason else "")
    return Diagnosis("invalid_argument", summary, remedies, ctx.evidence(), {"flag": flag, "reason": reason})


def missing_package(ctx: _Ctx) -> Diagnosis:
    text = ctx.chain_text
    pkg = package_of(text)
    pip = {"deepspeed": "deepspeed", "vllm": "vllm", "msgspec": "msgspec", "trl": "trl", "flash_attn": "flash-attn",
           "megatron": "megatron-core", "swanlab": "swanlab", "liger_kernel": "liger-kernel"}.get(pkg or "", pkg)
    old = bool(re.search(r"outdated|update|upgrade", text, re.I)) and "No module named" not in text
    summary = (f"a package is too old: {pip}" if old and pip else f"the package {pip} is not installed" if pip
               else "a package is missing or too old") + " in the environment that runs swift"
    remedies = [f"pip install {'-U ' if old else ''}{pip} with the Python of the environment that runs swift "
                "(swiftdeck --swift PATH points at another environment)" if pip
                else "install what the message names into the environment that runs swift"]
    if pkg in ("deepspeed", "vllm", "flash_attn", "megatron"):
        remedies.append(f"or run without it (leave out the flag that needs {pip})")
    return Diagnosis("missing_package", summary, remedies, ctx.evidence(), {"package": pip, "too_old": old})


def model_type_unknown(ctx: _Ctx) -> Diagnosis:
    text = ctx.chain_text
    m = re.search(r"model_type: '([^']*)' not in", text)
    bad = m[1] if m else None
    model = _path_like(ctx.arg("model"))
    summary = (f"--model_type {bad} is not a model type of this ms-swift" if bad else
               f"ms-swift has no model type for {model or 'the model'} (its architecture is not registered)")
    remedies = ["pass a registered --model_type (ms-swift docs: Supported models; e.g. qwen2, qwen2_5, llama)",
                "a folder named like the original model (e.g. Qwen2.5-7B-Instruct) is matched by name"]
    return Diagnosis("model_type_unknown", summary, remedies, ctx.evidence(), {"model_type": bad, "model": model})


def template_unknown(ctx: _Ctx) -> Diagnosis:
    m = re.search(r"template_type: '([^']*)' not in|^KeyError: '([^']*)'", ctx.chain_text, re.M)
    bad = (m[1] or m[2]) if m else None
    summary = f"--template {bad} is not a template of this ms-swift" if bad else "the template is not registered"
    return Diagnosis("template_unknown", summary,
                     ["pass a registered --template (e.g. qwen2_5, llama3, chatml) or leave --template out to use "
                      "the model type's default"], ctx.evidence(), {"template": bad})


_BUILTIN_REWARDS = "accuracy, math, format, react_format, toolbench, cosine, repetition, soft_overlong"


def reward_function_not_found(ctx: _Ctx) -> Diagnosis:
    text = ctx.chain_text
    m = re.search(r"reward_function (\S+) is not implemented", text)
    name = m[1] if m else None
    if name:
        summary = f"--reward_funcs {name}: no reward function of that name"
        remedies = [f"use a built-in reward function ({_BUILTIN_REWARDS}) or register your own in a plugin file "
                    "and pass it with --external_plugins FILE"]
    else:
        summary = f"swift {ctx.command} --rlhf_type {ctx.arg('rlhf_type') or 'grpo'} needs a reward: none was given"
        remedies = [f"--reward_funcs NAME ... (built in: {_BUILTIN_REWARDS}) or --reward_model MODEL"]
    return Diagnosis("reward_function_not_found", summary, remedies, ctx.evidence(), {"reward_function": name})


def vllm_adapter_failed(ctx: _Ctx) -> Diagnosis:
    text = ctx.chain_text
    rank = re.search(r"LoRA rank (\d+) is greater than max_lora_rank (\d+)", text)
    modules = re.search(r"expected target modules in (.*) but received (.*?)(?:\. Please|$)", text, re.M)
    if rank:
        summary = f"vLLM refused the LoRA: its rank {rank[1]} is above vLLM's max_lora_rank {rank[2]}"
        remedies = [f"--vllm_max_lora_rank {rank[1]} (or the next of 8, 16, 32, 64, 128, 256 above it)"]
    elif modules:
        summary = f"vLLM cannot serve this LoRA: it adapts modules vLLM does not support ({modules[2]})"
        remedies = ["merge the LoRA into the model (swift export --adapters CKPT --merge_lora true) and serve the "
                    "merged model with --model"]
    else:
        summary = "vLLM could not load the adapter: " + _reason(ctx)
        remedies = ["check that --adapters points at a LoRA checkpoint (adapter_config.json)",
                    "or merge it (swift export --merge_lora true) and serve the merged model"]
    remedies.append("or use --infer_backend pt (transformers) for this adapter")
    return Diagnosis("vllm_adapter_failed", summary, remedies, ctx.evidence(), {})


def deepspeed_error(ctx: _Ctx) -> Diagnosis:
    text = ctx.chain_text
    if re.search(r"CUDA_HOME does not exist|MissingCUDAException", text):
        summary = "DeepSpeed could not compile its CUDA ops: no CUDA toolkit (CUDA_HOME) was found"
        remedies = ["install the CUDA toolkit that matches torch and set CUDA_HOME, or install a DeepSpeed wheel with "
                    "prebuilt ops", "or train without --deepspeed (a single GPU, or DDP)"]
    elif m := re.search(r"Installed CUDA version ([\d.]+) does not match the version torch was compiled with ([\d.]+)",
                        text):
        summary = f"DeepSpeed: the CUDA toolkit {m[1]} differs from torch's CUDA {m[2]}"
        remedies = [f"point CUDA_HOME at a CUDA {m[2]} toolkit, or install a torch built for CUDA {m[1]}",
                    "or set DS_SKIP_CUDA_CHECK=1 if the minor versions are compatible"]
    elif "config" in text:
        summary = "DeepSpeed: the --deepspeed config file was not found: " + _reason(ctx)
        remedies = ["--deepspeed zero2 / zero3 (ms-swift's own configs) or the path of an existing JSON file"]
    else:
        summary = "DeepSpeed refused this set-up: " + _reason(ctx)
        remedies = ["change the flags the message names (e.g. no --device_map with --deepspeed), or train without "
                    "--deepspeed"]
    return Diagnosis("deepspeed_error", summary, remedies, ctx.evidence(), {"deepspeed": ctx.arg("deepspeed")})


BUILDERS = {
    "invalid_argument": invalid_argument,
    "missing_package": missing_package,
    "model_type_unknown": model_type_unknown,
    "template_unknown": template_unknown,
    "reward_function_not_found": reward_function_not_found,
    "vllm_adapter_failed": vllm_adapter_failed,
    "deepspeed_error": deepspeed_error,
}
