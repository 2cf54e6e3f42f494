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


@dataclass
class LaunchForm:
    """The new-run screen's fields. Defaults: the self-cognition tutorial's `swift sft` settings."""

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


def build_launch(form: LaunchForm, *, gpu: bool, cwd: Path | str = ".") -> Command:
    """The `swift sft` command of a filled-in form (before engine.ops.launch's checks)."""
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
    argv = ["--model", form.model.strip(), "--dataset", *form.dataset.split(), "--tuner_type", "lora",
            "--torch_dtype", dtype, "--num_train_epochs", form.epochs, "--per_device_train_batch_size",
            form.batch_size, "--learning_rate", form.learning_rate, "--lora_rank", form.lora_rank,
            "--lora_alpha", form.lora_alpha, "--target_modules", *form.target_modules.split(),
            "--gradient_accumulation_steps", form.grad_accum, "--max_length", form.max_length,
            "--output_dir", form.output_dir.strip() or "output", *PRESET_TAIL]
    env = {"CUDA_VISIBLE_DEVICES": form.visible_gpus.strip()} if form.visible_gpus.strip() else {}
    swift = os.path.abspath(os.path.expanduser(form.swift.strip())) if form.swift.strip() else ""
    cmd = Command("sft", tuple(argv), str(Path(cwd).resolve()), env, form.label.strip(), swift)
    try:
        return cmd.with_extra(extra)  # extra arguments win over the preset
    except CommandError as exc:
        raise ActionError(str(exc)) from None


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
