"""What a chat talks to: the base model of a run, a LoRA checkpoint on it, or a merged (full) model."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from engine.chat_client import ChatClientError, target_from_checkpoint
from engine.errors import SwiftdeckError


class TargetError(SwiftdeckError):
    """Nothing (or nothing comparable) to chat with: one line for the user."""


@dataclass(frozen=True)
class ChatTarget:
    label: str  # shown in the pane: "checkpoint-300", "base tiny-qwen2", "checkpoint-300-merged"
    base: dict = field(hash=False, compare=False)  # the worker's load spec: model, model_type, template, system, dtype
    adapter: str | None = None  # LoRA checkpoint folder (absolute) or None: the base itself
    folder: str | None = None  # the checkpoint folder (adapter or merged model), for transcripts

    @property
    def base_key(self) -> tuple:
        """Targets with the same key share one loaded base (one worker)."""
        b = self.base
        return b.get("model"), b.get("model_type"), b.get("template"), b.get("torch_dtype")

    @property
    def is_adapter(self) -> bool:
        return self.adapter is not None

    @property
    def name(self) -> str:
        """File-name friendly: the checkpoint's name, or `base-<model folder>`."""
        if self.folder:
            return Path(self.folder).name
        return "base-" + Path(str(self.base.get("model") or "model")).name.replace("/", "_")


def for_checkpoint(ckpt) -> ChatTarget:
    """A checkpoint picked in the browser (engine.checkpoints.CheckpointInfo or a folder). A merged/full model is
    loaded as the base itself; a LoRA checkpoint is attached to its base (from its args.json, as swift infer does)."""
    path = Path(getattr(ckpt, "path", ckpt)).expanduser().absolute()
    spec = target_from_checkpoint(path)
    if (path / "adapter_config.json").is_file():
        return ChatTarget(path.name, spec, adapter=str(path), folder=str(path))
    spec["model"] = str(path)
    return ChatTarget(path.name, spec, folder=str(path))


def for_base(model: str, folders: list = (), argv: list[str] | None = None) -> ChatTarget:
    """The run's base model; model_type/template/system come from a run folder's args.json, else the run's argv
    (a local Qwen2 folder needs them)."""
    for folder in folders:
        if (Path(folder.path) / "args.json").is_file():
            try:
                spec = target_from_checkpoint(folder.path)
            except ChatClientError:
                continue
            if spec["model"] == model or Path(spec["model"]).name == Path(model).name:
                return ChatTarget(f"base {Path(model).name}", spec)
    spec = {"model": str(Path(model).expanduser().absolute()) if Path(model).expanduser().exists() else model}
    if argv:
        from engine.chat_client import _cuda_visible
        from engine.swift_args import flag_value

        for key in ("model_type", "template", "system", "torch_dtype"):
            spec[key] = flag_value(argv, f"--{key}")
        if not _cuda_visible():
            spec["torch_dtype"] = "float32"
    return ChatTarget(f"base {Path(model).name}", spec)

