"""The checkpoint a run started from: a `swift rlhf` (DPO, KTO, GRPO …) or a further `swift sft` launched with
`--adapters CKPT` continues training that LoRA (ms-swift 4.6, TunerMixin.prepare_model: the adapter is loaded
trainable and saved again whole, so each of the run's checkpoints holds it with the new training in it: chatting
with one needs no other adapter). `--ref_adapters CKPT` is the reference of DPO/KTO/GRPO, usually the same SFT
checkpoint. Comparing a run's checkpoint against what it started from is what the chat's A/B is for."""
from __future__ import annotations

import json
from pathlib import Path

from engine.checkpoints import CheckpointInfo, scan_checkpoint


def started_from(run_folder: Path) -> list[CheckpointInfo]:
    """The existing LoRA checkpoints named by the run folder's args.json `adapters`, then `ref_adapters` (each once,
    in that order); [] for a run from the base model, an unreadable args.json or folders that are gone."""
    try:
        args = json.loads((Path(run_folder) / "args.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    if not isinstance(args, dict):
        return []
    seen, out = set(), []
    for key in ("adapters", "ref_adapters"):
        items = args.get(key) or []
        for item in [items] if isinstance(items, str) else items:
            path = Path(str(item)).expanduser()
            if not path.is_absolute() or str(path) in seen or not (path / "adapter_config.json").is_file():
                continue
            seen.add(str(path))
            try:
                out.append(scan_checkpoint(path))
            except OSError:
                continue
    return out
