"""`swift export --adapters CKPT --merge_lora true` as a supervised background job; writes `CKPT-merged/`."""
from __future__ import annotations

from engine.errors import SwiftdeckError
from pathlib import Path

from engine import supervisor
from engine.runs import RunRecord


class MergeError(SwiftdeckError, ValueError):
    pass


def merged_path(ckpt: Path) -> Path:
    return ckpt.with_name(ckpt.name + "-merged")


def start(ckpt: Path, *, device_map_cpu: bool = False, label: str = "") -> RunRecord:
    ckpt = Path(ckpt).expanduser().resolve()
    if not (ckpt / "adapter_config.json").is_file():
        raise MergeError(f"{ckpt} is not a LoRA checkpoint (no adapter_config.json): nothing to merge")
    if merged_path(ckpt).exists():
        raise MergeError(f"{merged_path(ckpt)} already exists")
    args = ["--adapters", str(ckpt), "--merge_lora", "true"]
    if device_map_cpu:  # merging on the CPU avoids a CUDA OOM when the card is busy
        args += ["--device_map", "cpu"]
    return supervisor.launch("export", args, cwd=ckpt.parent, label=label or f"merge {ckpt.name}",
                             notes=[f"merged model will be written to {merged_path(ckpt)}"])
