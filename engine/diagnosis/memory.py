"""Memory and disk: CUDA and host OOM, a full disk, and the remedies that need less memory per step, with the numbers
of the run's own arguments (per-device batch and gradient accumulation, max_length, LoRA rank, and for `swift rlhf`
GRPO's completions and DPO's pairs)."""
from __future__ import annotations

import re

from engine.diagnosis.evidence import _Ctx, _int, _path_like, _true
from engine.diagnosis.result import Diagnosis


def _size_gib(text: str | None) -> float | None:
    m = re.match(r"([\d.]+)\s*([KMGT]?i?B)", text or "")
    if not m:
        return None
    scale = {"B": 0, "KiB": 1, "KB": 1, "MiB": 2, "MB": 2, "GiB": 3, "GB": 3, "TiB": 4, "TB": 4}.get(m[2], 0)
    return float(m[1]) * 1024.0 ** scale / 1024.0 ** 3


def _batch_remedy(ctx: _Ctx) -> str | None:
    """Halve the per-device batch and multiply gradient accumulation so the effective batch stays the same."""
    bs = _int(ctx.arg("per_device_train_batch_size"))
    ga = _int(ctx.arg("gradient_accumulation_steps")) or 1
    if bs is None:
        return ("halve --per_device_train_batch_size and double --gradient_accumulation_steps "
                "(same effective batch)")
    if bs <= 1:
        return None
    new_bs = max(d for d in range(1, bs // 2 + 1) if bs % d == 0)
    new_ga = ga * (bs // new_bs)
    return (f"--per_device_train_batch_size {new_bs} --gradient_accumulation_steps {new_ga} "
            f"(was {bs} x {ga}: the effective batch stays {bs * ga} per device)")


def _training_memory_remedies(ctx: _Ctx) -> list[str]:
    """Ways to need less memory per step, with numbers from the run's own args where known."""
    out = [r for r in (_batch_remedy(ctx),) if r]
    if _true(ctx.arg("gradient_checkpointing")) is not True:
        out.append("--gradient_checkpointing true (recompute activations instead of storing them)")
    ml = _int(ctx.arg("max_length"))
    out.append(f"--max_length {max(ml // 2, 1)} (was {ml}; longer rows are dropped, see swiftdeck check-dataset)"
               if ml else "a shorter --max_length")
    out += _rlhf_memory_remedies(ctx)
    rank = _int(ctx.arg("lora_rank"))
    out.append(f"--lora_rank {rank // 2} (was {rank})" if rank and rank > 1 else "a smaller --lora_rank")
    return out


def _rlhf_memory_remedies(ctx: _Ctx) -> list[str]:
    """What `swift rlhf` holds on top of SFT: GRPO's completions, DPO's pairs and reference model (issue 11)."""
    if ctx.command != "rlhf":
        return []
    rtype = str(ctx.arg("rlhf_type") or "dpo")
    if rtype == "grpo":
        gens, comp = _int(ctx.arg("num_generations")), _int(ctx.arg("max_completion_length"))
        return [f"--num_generations {gens // 2} (was {gens}; each prompt's completions are in memory together)"
                if gens and gens > 2 else "fewer --num_generations",
                f"--max_completion_length {max(comp // 2, 1)} (was {comp})" if comp
                else "a shorter --max_completion_length"]
    out = [f"--rlhf_type {rtype} runs chosen and rejected answers through the model in one step: a shorter "
           "--max_length halves both"]
    if not ctx.arg("adapters") and str(ctx.arg("tuner_type") or ctx.arg("train_type") or "lora") != "lora":
        out.append("train a LoRA (--tuner_type lora): the reference model is then the base with the adapter off, "
                   "not a second copy")
    return out


def _oom(ctx: _Ctx) -> Diagnosis:
    text = next((e.message for e in ctx.chain if "out of memory" in e.message.lower()), ctx.chain_text)
    d: dict = {}
    if m := re.search(r"Tried to allocate ([\d.]+ \w+)", text):
        d["requested"] = m[1]
    if m := re.search(r"GPU (\d+) has a total capacity of ([\d.]+ \w+) of which ([\d.]+ \w+) is free", text):
        d.update(gpu=int(m[1]), total=m[2], free=m[3])
    elif m := re.search(r"\(GPU (\d+); ([\d.]+ \w+) total capacity; ([\d.]+ \w+) already allocated; "
                        r"([\d.]+ \w+) free", text):  # torch < 2.1 wording
        d.update(gpu=int(m[1]), total=m[2], allocated=m[3], free=m[4])
    others = [{"pid": int(p), "used": u} for p, u in re.findall(r"Process (\d+) has ([\d.]+ \w+) memory in use", text)]
    if others:
        d["other_processes"] = others
    if m := re.search(r"this process has ([\d.]+ \w+) memory in use", text):
        d["this_process"] = m[1]
    if m := re.search(r"([\d.]+ \w+) is allocated by PyTorch, and ([\d.]+ \w+) is reserved by PyTorch but", text):
        d.update(allocated=m[1], reserved_unallocated=m[2])
    where = f"GPU {d['gpu']}" if "gpu" in d else "the GPU"
    summary = f"CUDA out of memory on {where}"
    if "requested" in d:
        summary += f": tried to allocate {d['requested']}"
        if "free" in d:
            summary += f" with {d['free']} free" + (f" of {d['total']}" if "total" in d else "")
    if others:
        summary += "; " + ", ".join(f"process {o['pid']} holds {o['used']}" for o in others)
    remedies = []
    if ctx.command == "export":
        remedies.append("--device_map cpu (merge the LoRA in CPU RAM instead of on the GPU)")
    if others:
        held = sum(_size_gib(o["used"]) or 0 for o in others)
        pids = ", ".join(str(o["pid"]) for o in others)
        remedies.append(f"free the card: process {pids} holds {held:.1f} GiB; stop it (nvidia-smi shows it) "
                        "or run on another GPU with CUDA_VISIBLE_DEVICES")
    if ctx.command in ("infer", "deploy", "app", "eval"):
        remedies += ["--max_batch_size 1 (fewer requests decoded at once)", "a smaller --max_new_tokens",
                     "--torch_dtype bfloat16 if it ran in float32 (half the memory)"]
    elif ctx.command != "export":
        remedies += _training_memory_remedies(ctx)
    if (_size_gib(d.get("reserved_unallocated")) or 0) >= 1:
        remedies.append("PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True (much memory is reserved but unused)")
    d["args_used"] = {k: ctx.arg(k) for k in ("per_device_train_batch_size", "gradient_accumulation_steps",
                                               "max_length", "lora_rank", "gradient_checkpointing")
                      if ctx.arg(k) is not None}
    return Diagnosis("cuda_oom", summary, remedies, ctx.evidence(), d)


def _cpu_oom(ctx: _Ctx) -> Diagnosis:
    m = re.search(r"you tried to allocate (\d+) bytes", ctx.chain_text)
    d = {"requested_bytes": int(m[1])} if m else {}
    summary = "out of host (CPU) memory" + (f": tried to allocate {int(m[1]) / 2**30:.2f} GiB" if m else "")
    remedies = _training_memory_remedies(ctx)[:-1]  # (LoRA rank barely matters for host RAM)
    remedies += ["fewer --dataloader_num_workers (each worker is a process)",
                 "close other programs using RAM (free -h)"]
    return Diagnosis("cpu_oom", summary, remedies, ctx.evidence(), d)


def _disk_full(ctx: _Ctx, full: dict | None = None) -> Diagnosis:
    """From a "No space left on device" in the log, or (`full`) a volume the runner found full when the run ended
    without a recognisable error: a console write that fails for space cannot log its own error."""
    out = _path_like(ctx.arg("output_dir"))
    m = re.search(r"No space left on device: '([^']+)'", ctx.chain_text)
    d = {"path": m[1]} if m else {}
    where = (m[1] if m else None) or out
    summary = "the disk is full" + (f" (writing {where})" if where else "")
    remedies = [f"free space on the disk holding {out or where or 'the output folder'} (df -h)"]
    evidence = ctx.evidence()
    if full:
        console = full.get("what") == "console"
        d["volume"] = full
        summary = (f"the disk holding {full['path']} was full when the run ended ({_bytes(full['free_bytes'])} free "
                   f"of {_bytes(full['total_bytes'])}): " + ("writing the console failed, so no error could be logged"
                                                            if console else "a write there failed"))
        remedies = [f"free space on the disk holding {full['path']} (df -h)"]
        seen = (f"swiftdeck's runner at exit: {full['path']} ({full.get('what', 'volume')}) had "
                f"{full['free_bytes']} bytes free of {full['total_bytes']}")
        evidence = ctx.evidence(seen) if ctx.chain else "\n".join([seen, *ctx.lines[-5:]])
        if console:
            remedies.append("keep SWIFTDECK_HOME (where swiftdeck writes run consoles) on a disk with room to spare")
            return Diagnosis("disk_full", summary, remedies, evidence, d)
    remedies += ["--save_total_limit 2 (keep fewer checkpoints)",
                 "--save_only_model true (no optimizer/scheduler states in checkpoints)",
                 "put --output_dir on a larger disk"]
    return Diagnosis("disk_full", summary, remedies, evidence, d)


# A volume with at most this much free when a run ended badly was full (ENOSPC leaves a few blocks at most; the
# share of the total keeps small volumes, such as a test's tmpfs, from always counting as full).
DISK_FULL_FREE_BYTES = 16 * 2**20


def full_volume(disk: list | None) -> dict | None:
    """The first volume of the runner's exit record (`[{path, free_bytes, total_bytes, what}]`) that was full."""
    for vol in disk or []:
        try:
            free, total = int(vol["free_bytes"]), int(vol["total_bytes"])
        except (KeyError, TypeError, ValueError):
            continue
        if free <= min(DISK_FULL_FREE_BYTES, total // 100):
            return vol
    return None


def _bytes(n) -> str:
    n = float(n)
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"
