"""The launch form's fields and the command they make (without Textual), and byte formatting for the panes.
Checking, starting, resuming and checkpoint clean-up are engine.ops'."""
from __future__ import annotations

import os
import shlex
from dataclasses import dataclass
from pathlib import Path

from engine.command import Command, CommandError
from engine.errors import SwiftdeckError


class ActionError(SwiftdeckError):
    """One line for the user; nothing was changed."""


# ---------------------------------------------------------------- launch form


KINDS = ("sft", "pt", "rlhf/dpo", "rlhf/kto", "rlhf/orpo", "rlhf/simpo", "rlhf/cpo", "rlhf/grpo")  # the form's


@dataclass
class LaunchForm:
    """The new-run screen's fields. Defaults: the self-cognition tutorial's `swift sft` settings."""

    kind: str = "sft"  # one of KINDS: `swift sft`, `swift pt`, or `swift rlhf --rlhf_type T`
    model: str = ""
    dataset: str = ""
    output_dir: str = "output"
    lora_rank: str = "8"
    lora_alpha: str = "32"
    target_modules: str = "all-linear"
    learning_rate: str = "1e-4"
    epochs: str = "10"
    batch_size: str = "1"
    grad_accum: str = "16"
    max_length: str = "2048"
    torch_dtype: str = "auto"  # auto: bfloat16 with a GPU, float32 on CPU
    visible_gpus: str = ""  # CUDA_VISIBLE_DEVICES; empty = inherit
    extra: str = ""
    label: str = ""
    swift: str = ""  # the `swift` of another ms-swift environment (a venv or conda env); empty = the driven one


# the rest of the tutorial's command: evaluation/saving/logging cadence, system prompt, warmup, workers
PRESET_TAIL = ["--per_device_eval_batch_size", "1", "--eval_steps", "50", "--save_steps", "50",
               "--save_total_limit", "2", "--logging_steps", "5", "--system", "You are a helpful assistant.",
               "--warmup_ratio", "0.05", "--dataloader_num_workers", "4"]


def _preset_tail(command: str) -> list[str]:
    """PRESET_TAIL; `swift pt` without the system prompt (its plain-text template takes none: ms-swift stops)."""
    if command != "pt":
        return list(PRESET_TAIL)
    at = PRESET_TAIL.index("--system")
    return PRESET_TAIL[:at] + PRESET_TAIL[at + 2:]


def build_launch(form: LaunchForm, *, gpu: bool, cwd: Path | str = ".") -> Command:
    """The `swift sft|pt|rlhf` command of a filled-in form (before engine.ops.launch's checks)."""
    if form.kind not in KINDS:
        raise ActionError(f"kind must be one of {', '.join(KINDS)}, not {form.kind!r}")
    command, _, rlhf_type = form.kind.partition("/")
    for name in ("model", "dataset"):
        if not getattr(form, name).strip():
            raise ActionError(f"{name} is required")
    dtype = form.torch_dtype.strip() or "auto"
    if dtype == "auto":
        dtype = "bfloat16" if gpu else "float32"
    numbers = {"lora_rank": int, "lora_alpha": float, "learning_rate": float, "epochs": float,
               "batch_size": int, "grad_accum": int, "max_length": int}
    for name, kind in numbers.items():
        try:
            kind(getattr(form, name))
        except ValueError:
            raise ActionError(f"{name.replace('_', ' ')} must be a number, not {getattr(form, name)!r}") from None
    try:
        extra = shlex.split(form.extra)
    except ValueError as exc:
        raise ActionError(f"extra arguments: {exc}") from None
    argv = [*(["--rlhf_type", rlhf_type] if rlhf_type else []),
            "--model", form.model.strip(), "--dataset", *form.dataset.split(), "--tuner_type", "lora",
            "--torch_dtype", dtype, "--num_train_epochs", form.epochs, "--per_device_train_batch_size",
            form.batch_size, "--learning_rate", form.learning_rate, "--lora_rank", form.lora_rank,
            "--lora_alpha", form.lora_alpha, "--target_modules", *form.target_modules.split(),
            "--gradient_accumulation_steps", form.grad_accum, "--max_length", form.max_length,
            "--output_dir", form.output_dir.strip() or "output", *_preset_tail(command)]
    env = {"CUDA_VISIBLE_DEVICES": form.visible_gpus.strip()} if form.visible_gpus.strip() else {}
    swift = os.path.abspath(os.path.expanduser(form.swift.strip())) if form.swift.strip() else ""
    cmd = Command(command, tuple(argv), str(Path(cwd).resolve()), env, form.label.strip(), swift)
    try:
        return cmd.with_extra(extra)  # extra arguments win over the preset
    except CommandError as exc:
        raise ActionError(str(exc)) from None


# the form's fields that stand for one flag each (build_launch writes them)
FORM_FLAGS = {"--model": "model", "--dataset": "dataset", "--output_dir": "output_dir", "--lora_rank": "lora_rank",
              "--lora_alpha": "lora_alpha", "--target_modules": "target_modules", "--learning_rate": "learning_rate",
              "--num_train_epochs": "epochs", "--per_device_train_batch_size": "batch_size",
              "--gradient_accumulation_steps": "grad_accum", "--max_length": "max_length",
              "--torch_dtype": "torch_dtype"}


def form_of(cmd: Command) -> LaunchForm:
    """"Clone this run": the form filled from a run's command. The flags the form has fill their fields; every
    other flag goes to "extra args" (the preset's own flags at the preset's value are left out: the form adds
    them)."""
    preset = dict(_groups(PRESET_TAIL))
    fields: dict[str, str] = {}
    extra: list[str] = []
    rlhf_type = ""
    for flag, values in _groups(list(cmd.args)):
        name = "--" + flag[2:].replace("-", "_") if flag.startswith("--") else flag
        if name in FORM_FLAGS and values:
            fields[FORM_FLAGS[name]] = " ".join(values)
        elif name == "--rlhf_type" and values:
            rlhf_type = values[0]
        elif (name == "--tuner_type" and values == ("lora",)) or preset.get(name) == values:
            continue
        else:
            extra += [flag, *values]
    kind = f"{cmd.kind}/{rlhf_type}" if rlhf_type else cmd.kind
    if kind not in KINDS:
        raise ActionError(f"`swift {cmd.kind}{' --rlhf_type ' + rlhf_type if rlhf_type else ''}` is not a kind the "
                          f"new-run form makes ({', '.join(KINDS)})")
    return LaunchForm(kind=kind, **fields, visible_gpus=cmd.env.get("CUDA_VISIBLE_DEVICES", ""),
                      extra=shlex.join(extra), label=cmd.label)


def _groups(args: list[str]) -> list[tuple[str, tuple[str, ...]]]:
    """(--flag, its values) in order; values run to the next --flag."""
    groups: list[tuple[str, list[str]]] = []
    for token in args:
        if token.startswith("--") and len(token) > 2 or not groups:
            groups.append((token, []))
        else:
            groups[-1][1].append(token)
    return [(flag, tuple(values)) for flag, values in groups]


# ---------------------------------------------------------------- formatting


def fmt_bytes(n: int | None) -> str:
    if n is None:
        return "-"
    size = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TB"
