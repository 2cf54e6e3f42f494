"""What the dashboard's actions do, without Textual: the launch form's argv, resume plans, checkpoint clean-up.

Every function either returns a result or raises ActionError with one line for the user.
"""
from __future__ import annotations

from engine.errors import SwiftdeckError
import os
import re
import shlex
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from engine.swift_args import flag_value, set_flag

CKPT_NAME = re.compile(r"checkpoint-\d+(-merged)?")
OPTIMIZER_FILES = re.compile(r"optimizer\.(pt|bin)|scheduler\.pt|rng_state(_\d+)?\.pth|scaler\.pt")


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


# the rest of the tutorial's command: evaluation/saving/logging cadence, system prompt, warmup, workers
PRESET_TAIL = ["--per_device_eval_batch_size", "1", "--eval_steps", "50", "--save_steps", "50",
               "--save_total_limit", "2", "--logging_steps", "5", "--system", "You are a helpful assistant.",
               "--warmup_ratio", "0.05", "--dataloader_num_workers", "4"]


@dataclass
class LaunchPlan:
    argv: list[str]  # after `swift sft`
    env: dict[str, str] = field(default_factory=dict)
    label: str = ""

    def command(self) -> str:
        env = " ".join(f"{k}={shlex.quote(v)}" for k, v in self.env.items())
        return " ".join(x for x in (env, "swift sft", shlex.join(self.argv)) if x)


def _flag_groups(tokens: list[str]) -> list[list[str]]:
    groups: list[list[str]] = []
    for tok in tokens:
        if tok.startswith("--"):
            name, eq, value = tok.partition("=")
            groups.append([name, value] if eq else [name])
        elif groups:
            groups[-1].append(tok)
        else:
            raise ActionError(f"extra arguments must start with a --flag, not {tok!r}")
    return groups


def build_launch(form: LaunchForm, *, gpu: bool) -> LaunchPlan:
    """The `swift sft` argv of a filled-in form (before engine.swift_args' checks)."""
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
        extra = _flag_groups(shlex.split(form.extra))
    except ValueError as exc:
        raise ActionError(f"extra arguments: {exc}") from None
    argv = ["--model", form.model.strip(), "--dataset", *form.dataset.split(), "--tuner_type", "lora",
            "--torch_dtype", dtype, "--num_train_epochs", form.epochs, "--per_device_train_batch_size",
            form.batch_size, "--learning_rate", form.learning_rate, "--lora_rank", form.lora_rank,
            "--lora_alpha", form.lora_alpha, "--target_modules", *form.target_modules.split(),
            "--gradient_accumulation_steps", form.grad_accum, "--max_length", form.max_length,
            "--output_dir", form.output_dir.strip() or "output", *PRESET_TAIL]
    for group in extra:  # extra arguments win over the preset
        argv = set_flag(argv, group[0], group[1:])
    env = {"CUDA_VISIBLE_DEVICES": form.visible_gpus.strip()} if form.visible_gpus.strip() else {}
    return LaunchPlan(argv, env, form.label.strip())


# ---------------------------------------------------------------- resume


@dataclass
class ResumePlan:
    argv: list[str]  # after `swift sft`
    cwd: Path
    changes: list[str]  # what differs from the original run, one line each
    label: str = ""


def resume_plan(record, checkpoint) -> ResumePlan:
    """Resume `record`'s training from `checkpoint` (engine.checkpoints.CheckpointInfo)."""
    if record is None or record.kind != "sft":
        raise ActionError("this run folder was not started by swiftdeck, so its command line is unknown: run "
                          f"`swiftdeck train -- <its arguments> --resume_from_checkpoint {checkpoint.path}`")
    if record.active:
        raise ActionError(f"run {record.id} is still {record.status}: stop it first (S)")
    if not checkpoint.resumable:
        why = next((n for n in checkpoint.notes if n.startswith("not resumable")), "not resumable")
        raise ActionError(f"{checkpoint.name}: {why}")
    old = list(record.argv[2:]) if record.argv[1:2] == ["sft"] else list(record.argv)
    argv = set_flag(old, "--resume_from_checkpoint", [str(checkpoint.path)])
    before = flag_value(old, "--resume_from_checkpoint")
    changes = [f"--resume_from_checkpoint: {before or '(not set)'} → {checkpoint.path}",
               "ms-swift continues from step "
               f"{checkpoint.step} (model, optimizer, scheduler, RNG) and writes a new vN-… folder under "
               f"{flag_value(old, '--output_dir') or 'output'}"]
    return ResumePlan(argv, Path(record.cwd), changes, label=f"resume {checkpoint.name}")


# ---------------------------------------------------------------- checkpoint clean-up


def _size(path: Path) -> int:
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except OSError:
                pass
    return total


def _check_checkpoint(path: Path) -> Path:
    path = Path(path)
    if not CKPT_NAME.fullmatch(path.name) or not path.is_dir() or path.is_symlink():
        raise ActionError(f"not a checkpoint folder: {path}")
    return path


def optimizer_files(path: Path) -> list[Path]:
    """What `strip_optimizer` removes: optimizer/scheduler/scaler/RNG state and DeepSpeed `global_step*/`."""
    path = _check_checkpoint(path)
    return sorted(p for p in path.iterdir()
                  if OPTIMIZER_FILES.fullmatch(p.name) or (p.is_dir() and p.name.startswith("global_step")))


def strip_optimizer(path: Path) -> int:
    """Remove the optimizer state of a checkpoint (keeps the adapter/model and trainer_state.json).
    Returns the bytes freed. The checkpoint can still be chatted with and merged, but no longer resumed."""
    freed = 0
    for p in optimizer_files(path):
        size = _size(p) if p.is_dir() else p.stat().st_size
        if p.is_dir():
            shutil.rmtree(p)
        else:
            p.unlink()
        freed += size
    return freed


def delete_checkpoint(path: Path, *, run_active: bool = False, is_last: bool = False) -> int:
    """Delete a checkpoint folder; returns the bytes freed. Refuses the newest one of a run that is running."""
    path = _check_checkpoint(path)
    if run_active and is_last:
        raise ActionError(f"{path.name} is the newest checkpoint of a running run; stop the run first")
    freed = _size(path)
    link = path.parent / "last-checkpoint"
    shutil.rmtree(path)
    if link.is_symlink() and not link.exists():  # ms-swift's link now points at nothing
        link.unlink()
    return freed


def fmt_bytes(n: int | None) -> str:
    if n is None:
        return "-"
    size = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TB"
