"""ms-swift's own error messages, and those of the tools around it, each with the kind of failure it means.

Collected from the source of ms-swift 3.12.6 (swift/llm/...) and 4.6 (swift/...): the `raise`, `assert` and
`logger.error` texts on the paths a user hits (argument validation, model and template resolution, dataset loading
and filtering, resume, adapters, rlhf), and from torchrun, datasets/pyarrow, the ModelScope and Hugging Face hubs,
peft, DeepSpeed and vLLM. docs/DIAGNOSIS.md shows them as a table (message -> kind -> versions); a test checks that
every row of that table is classified to its kind and that every rule here has a row.

A rule's pattern is searched in the text of the exception that ended the process ("Type: message"), or in a bare
error line when no traceback is left. The first rule that matches wins: specific messages come before general ones.
"""
from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Rule:
    kind: str
    pattern: str
    versions: str  # "3.x, 4.x", "4.x", or the tool: "torchrun", "datasets", ...
    where: str  # the module that raises it

    @property
    def rx(self) -> re.Pattern:
        return _compiled(self.pattern)


_CACHE: dict[str, re.Pattern] = {}


def _compiled(pattern: str) -> re.Pattern:
    rx = _CACHE.get(pattern)
    if rx is None:
        rx = _CACHE[pattern] = re.compile(pattern)
    return rx


_B = "3.x, 4.x"
RULES: tuple[Rule, ...] = (
    # ---- argument validation (swift/arguments, swift/llm/argument, swift/pipelines) ----
    Rule("unknown_argument", r"remaining_argv: \[", _B, "pipelines/base.py (3.x: llm/base.py)"),
    Rule("unknown_argument", r": error: unrecognized arguments: ", _B, "argparse"),
    Rule("invalid_argument", r": error: argument \S+: invalid ", _B, "argparse (a flag's value)"),
    Rule("invalid_argument", r"Please set --model <model_id_or_path>", _B, "arguments/base_args/model_args.py"),
    Rule("invalid_argument", r"Please input the training dataset", _B, "arguments/sft_args.py (3.x: train_args.py)"),
    Rule("invalid_argument", r"Unknown (?:tuner|train)_type: |args\.(?:tuner|train)_type: ", _B,
         "pipelines/train/tuner.py (3.x: llm/train/tuner.py)"),
    Rule("invalid_argument", r"Target modules .* not found in the base model", _B, "peft / tuners/lora_layers.py"),
    Rule("invalid_argument", r"num_generations must be greater than 1 for GRPO", "4.x", "arguments/rlhf_args.py"),
    Rule("invalid_argument", r"GRPO requires `truncation_strategy", "4.x", "arguments/rlhf_args.py"),
    Rule("invalid_argument", r"KTO will not work properly because the KL term", "4.x", "pipelines/train/kto.py"),
    Rule("invalid_argument", r"CPO/ORPO or LoRA training does not require a ref_model", "4.x",
         "arguments/rlhf_args.py"),
    Rule("invalid_argument", r"Currently, only DPO, KTO, and GRPO support `ref_adapters`", _B,
         "pipelines/train/rlhf.py"),
    Rule("invalid_argument", r"does not support padding_free/packing|does not support padding free or packing", _B,
         "arguments/rlhf_args.py, pipelines/train/sft.py"),
    Rule("invalid_argument", r"Packing and lazy_tokenize are incompatible|Streaming and lazy_tokenize are "
                             r"incompatible", "4.x", "arguments/base_args/base_args.py"),
    Rule("invalid_argument", r"`--truncation_strategy split` is currently only supported for pre-training", "4.x",
         "pipelines/train/sft.py"),
    Rule("invalid_argument", r"Invalid truncation_strategy: ", "4.x", "template/base.py"),
    Rule("invalid_argument", r"args\.output_dir: `[^`]*` already exists", _B, "arguments/export_args.py"),
    Rule("invalid_argument", r"Please specify the quantization method using `--quant_method|Please specify "
                             r"`--quant_bits`", _B, "arguments/export_args.py"),
    Rule("invalid_argument", r"is not compatible with `device_map`", _B, "arguments/sft_args.py, rlhf_args.py"),
    # ---- model and template resolution ----
    Rule("model_type_ambiguous", r"Failed to automatically match `model_type`", _B,
         "model/model_meta.py (3.x: llm/model/register.py)"),
    Rule("template_ambiguous", r"Failed to automatically match `template_type`", "4.x", "template/register.py"),
    Rule("model_type_unknown", r"model_type: '[^']*' not in \[", _B, "model/model_meta.py"),
    Rule("model_type_unknown", r"is not supported because no suitable `model_type` was found", _B,
         "model/model_meta.py"),
    Rule("template_unknown", r"template_type: '[^']*' not in \[", "4.x", "template/register.py"),
    Rule("cpu_bf16_unsupported", r"doesn't support bf16/gpu", _B, "transformers TrainingArguments"),
    # ---- adapters ----
    Rule("not_an_adapter", r"is not an adapter, please try using `--model`", _B, "arguments/base_args/base_args.py"),
    Rule("not_an_adapter", r"Can't find 'adapter_config\.json' at", _B, "peft PeftConfig.from_pretrained"),
    Rule("not_an_adapter", r"ckpt_dir: .* must exists in local disk", _B, "tuners/base.py"),
    Rule("vllm_adapter_failed", r"LoRA rank \d+ is greater than max_lora_rank \d+", "vLLM", "vllm/lora/models.py"),
    Rule("vllm_adapter_failed", r"expected target modules in .* but received", "vLLM", "vllm/lora/models.py"),
    Rule("vllm_adapter_failed", r"Loading lora \S+ failed", "vLLM", "vllm/lora/worker_manager.py"),
    Rule("vllm_adapter_failed", r"does not support `enable_lora`", _B, "infer_engine/vllm_engine.py"),
    # ---- datasets: finding them ----
    Rule("dataset_not_found", r"The local path does not exist, dataset_id:", _B,
         "dataset/loader.py (3.x: llm/dataset/loader.py)"),
    Rule("dataset_not_found", r"Dataset '[^']*' doesn't exist on the Hub", "datasets", "datasets/load.py"),
    Rule("dataset_not_found", r"The modelscope dataset \[.*\] does not exist", "ModelScope hub",
         "modelscope_hub/compat/hub_api.py"),
    Rule("dataset_not_found", r"Unable to find '[^']*'", "datasets", "datasets/data_files.py"),
    Rule("dataset_not_found", r"Dataset \S+ load failed: subset_name=", _B,
         "dataset/loader.py (logger.error: a hub download that failed)"),
    # ---- datasets: reading and converting them ----
    Rule("dataset_invalid", r"JSON parse error|Unexpected character found when decoding|Expected object or value"
                            r"|Missing a closing quotation mark", "datasets, pyarrow", "pyarrow json reader"),
    Rule("dataset_invalid", r"DatasetGenerationCastError|All the data files must have the same columns", "datasets",
         "datasets/builder.py"),
    Rule("dataset_invalid", r"Couldn't cast array of type|CastError: Couldn't cast", "datasets, pyarrow",
         "datasets/table.py"),
    Rule("dataset_invalid", r"ArrowInvalid|ArrowTypeError|ArrowNotImplementedError", "pyarrow", "pyarrow"),
    Rule("dataset_invalid", r"DatasetGenerationError: An error occurred while generating the dataset", "datasets",
         "datasets/builder.py"),
    Rule("dataset_invalid", r"rejected_response must be a str or list|^ValueError: rejected_response: |inputs\.rejected "
                            r"is None|The 'user' role is not allowed in 'rejected_response'", _B,
         "template/template_inputs.py, dataset/preprocessor/core.py"),
    Rule("dataset_invalid", r"Column '?\w+'? (?:not in the dataset|doesn't exist)", "datasets (KTO without label)",
         "datasets/formatting/formatting.py"),
    Rule("dataset_invalid", r"A standalone tool message must follow a user message", "4.x", "template/base.py"),
    Rule("dataset_empty_after_filter", r"Failed to retrieve the dataset\. You can avoid this issue by increasing "
                                       r"`max_length`", _B, "dataset/utils.py"),
    Rule("dataset_empty_after_filter", r"Trainer: training requires a train_dataset", _B, "trainers/mixin.py"),
    # ---- the model itself ----
    Rule("model_not_found", r"is not a local folder and is not a valid model identifier", _B, "transformers"),
    Rule("model_not_found", r"RepositoryNotFoundError|Repository Not Found for url", "Hugging Face hub",
         "huggingface_hub"),
    Rule("model_not_found", r"\[E3020\]|NotExistError|404 Not Found: \S+ does not exist or is not accessible"
                            r"|The request resource\(model or dataset\) does not exist", "ModelScope hub",
         "modelscope_hub/errors.py, modelscope/hub/errors.py"),
    Rule("tokenizer_load_failed", r"Can't load tokenizer for|data did not match any variant of untagged enum "
                                  r"ModelWrapper", "transformers, tokenizers", "transformers/tokenization_utils_base.py"),
    # ---- rlhf ----
    Rule("reward_function_not_found", r"reward_function \S+ is not implemented in swift\.(?:rewards|plugin)", _B,
         "rlhf_trainers/grpo_trainer.py (3.x: trainers/rlhf_trainer/grpo_trainer.py)"),
    Rule("reward_function_not_found", r"You must specify reward_funcs or reward_model", _B,
         "rlhf_trainers/grpo_trainer.py"),
    Rule("reward_function_not_found", r"requires reward_funcs", "4.x", "arguments/rlhf_args.py"),
    # ---- packages ----
    Rule("missing_package", r"No module named '[^']+'", "Python", "import"),
    Rule("missing_package", r"Please (?:install|update|upgrade)\b[^\n]*pip install|please install \S+ by `?pip "
                            r"install|Your current version of `trl` is outdated", _B, "arguments/*, model/register.py"),
    Rule("missing_package", r"The '[^']+' distribution was not found and is required", "transformers",
         "transformers/utils/versions.py (require_version)"),
    Rule("missing_package", r"No package metadata was found for \w", "Python", "importlib.metadata"),
    Rule("missing_package", r"requires the following packages that were not found in your environment", "transformers",
         "transformers/dynamic_module_utils.py"),
    # ---- DeepSpeed ----
    Rule("deepspeed_error", r"CUDA_HOME does not exist, unable to compile CUDA op|MissingCUDAException", "DeepSpeed",
         "deepspeed/ops/op_builder/builder.py"),
    Rule("deepspeed_error", r"Installed CUDA version [\d.]+ does not match the version torch was compiled with",
         "DeepSpeed", "deepspeed/ops/op_builder/builder.py"),
    Rule("deepspeed_error", r"DeepSpeed ZeRO3 not supported|FSDP2 is not compatible with DeepSpeed", _B,
         "tuners/base.py, arguments/sft_args.py"),
    Rule("deepspeed_error", r"Expected a string path to an existing deepspeed config", "transformers",
         "transformers/integrations/deepspeed.py"),
    # ---- torchrun ----
    Rule("killed_by_signal", r"Signal \d+ \(SIG\w+\) received by PID", "torchrun",
         "torch/distributed/elastic (ChildFailedError summary)"),
)


def match(text: str) -> Rule | None:
    """The first rule whose pattern is found in text (an exception's "Type: message" or an error line)."""
    if not text:
        return None
    for rule in RULES:
        if rule.rx.search(text):
            return rule
    return None


def package_of(text: str) -> str | None:
    """The package a missing_package message names: the top module of "No module named 'x.y'", or the name after
    `pip install` (flags and version pins left out)."""
    m = re.search(r"No module named '([^'.]+)|The '([^']+)' distribution was not found"
                  r"|No package metadata was found for ([\w\-]+)$", text, re.M)
    if m:
        return m[1] or m[2] or m[3]
    m = re.search(r"pip install (?:-U |--upgrade )?['\"]?([A-Za-z0-9_.\-\[\],]+)", text)
    return m[1].rstrip(".,`'\"") if m else None
