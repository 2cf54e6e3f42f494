"""Before a training launch: the GPUs it will use, who else is on them, the free disk, and a rough memory estimate.

    pre = check(cmd)              # engine.command.Command; NVML through engine.gpu (a clean "no GPU" state)
    pre.problems                  # refused outright: a layout ms-swift would reject, a GPU that is not there
    pre.busy                      # refused unless the user confirms: other processes hold most of a selected GPU
                                  # (BUSY_SHARE) or leave less than the estimate
    pre.lines()                   # (level, text) for a terminal or a form

The estimate (`estimate()`) is arithmetic on the model's own files (safetensors headers, else config.json) and the
command's flags, per GPU, at the peak of a training step:

    weights        parameters × dtype bytes (÷ the world size under ZeRO-3; × quant_bits / 8 when quantised)
    training state LoRA: its parameters × 16 bytes (fp32 weight, gradient and two AdamW moments; peft keeps
                   adapters in fp32); full: parameters × 3 × dtype bytes (gradient and two moments in the model's
                   dtype). ZeRO-2/3 divide gradients and moments by the world size; DDP adds a gradient bucket copy
    activations    batch × max_length tokens (an upper bound: real batches are often shorter) × (hidden × layers ×
                   dtype with gradient checkpointing, ms-swift's default, plus one layer's full set during its
                   recompute; without it every layer's), plus the logits (tokens × vocab × (dtype + 8 bytes): fp32
                   upcast and its gradient in the loss)

This is what PyTorch reserves, so it compares with ms-swift's logged `memory(GiB)` (torch.cuda.max_memory_reserved
of rank 0); NVML shows about CUDA_CONTEXT_BYTES more per process (the CUDA context). `compare()` puts the two side
by side after a run (docs/MULTI_GPU.md says how close it came on real runs).
"""
from __future__ import annotations

import json
import os
import re
import shutil
import struct
from dataclasses import asdict, dataclass, field
from pathlib import Path

from engine import ranks

GiB = 2 ** 30
CUDA_CONTEXT_BYTES = 512 * 2 ** 20  # per process, outside PyTorch's allocator (seen on an H200: ~500-600 MiB)
DTYPE_BYTES = {"float32": 4, "fp32": 4, "float": 4, "float16": 2, "fp16": 2, "half": 2, "bfloat16": 2, "bf16": 2,
               "float8": 1, "f32": 4, "f16": 2, "bf16_": 2}
_ST_BYTES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "F8_E4M3": 1, "F8_E5M2": 1, "I64": 8, "I32": 4, "I16": 2,
             "I8": 1, "U8": 1, "BOOL": 1}
DEEPSPEED_PRESETS = ("zero0", "zero1", "zero2", "zero3", "zero2_offload", "zero3_offload")
BUSY_SHARE = 0.5  # a GPU where other processes hold more than this share, or leave less than the estimate, is "full"
# Linear modules of a decoder layer that ms-swift's `all-linear` adapts: every 2-D weight inside the layers.
_LAYER = re.compile(r"(?:^|\.)layers\.\d+\.")


def gib(n: float | None) -> str:
    """Bytes as '1.25 GiB' (or '37 MiB' below one GiB)."""
    if n is None:
        return "?"
    return f"{n / GiB:.2f} GiB" if abs(n) >= GiB else f"{n / 2 ** 20:.0f} MiB"


# ---------------------------------------------------------------- the model's shape

@dataclass(frozen=True)
class ModelShape:
    params: int
    dtype: str | None  # the stored dtype (config or safetensors)
    hidden: int
    layers: int
    intermediate: int
    vocab: int
    linears: tuple[tuple[str, int, int], ...]  # (module name, in, out) of each layer linear
    source: str  # "safetensors" | "config.json"


def _config(model_dir: Path) -> dict:
    cfg = json.loads((model_dir / "config.json").read_text())
    return cfg.get("text_config") or cfg.get("llm_config") or cfg  # a multimodal model: its language part


def _safetensors(model_dir: Path) -> dict[str, tuple[str, list[int]]]:
    tensors: dict[str, tuple[str, list[int]]] = {}
    for path in sorted(model_dir.glob("*.safetensors")):
        with open(path, "rb") as fh:
            (size,) = struct.unpack("<Q", fh.read(8))
            if size > 256 * 2 ** 20:
                raise ValueError(f"{path.name}: implausible safetensors header")
            header = json.loads(fh.read(size))
        for name, info in header.items():
            if name != "__metadata__" and isinstance(info, dict):
                tensors[name] = (str(info.get("dtype")), [int(x) for x in info.get("shape", [])])
    return tensors


def model_shape(model_dir: str | Path) -> ModelShape:
    """The parameter count and layer shapes of a local model folder (raises OSError/ValueError if unreadable)."""
    model_dir = Path(model_dir)
    cfg = _config(model_dir)
    hidden, layers = int(cfg["hidden_size"]), int(cfg["num_hidden_layers"])
    inter, vocab = int(cfg.get("intermediate_size") or 4 * hidden), int(cfg.get("vocab_size") or 0)
    dtype = cfg.get("torch_dtype") or cfg.get("dtype")
    tensors = _safetensors(model_dir)
    if tensors:
        params = sum(_prod(shape) for _, shape in tensors.values())
        linears = tuple((name[:-len(".weight")], shape[1], shape[0]) for name, (_, shape) in tensors.items()
                        if name.endswith(".weight") and len(shape) == 2 and _LAYER.search(name))
        if not dtype:
            kinds = [d for d, _ in tensors.values()]
            dtype = {"BF16": "bfloat16", "F16": "float16", "F32": "float32"}.get(max(set(kinds), key=kinds.count))
        return ModelShape(params, dtype, hidden, layers, inter, vocab, linears, "safetensors")
    qkv_bias = cfg.get("attention_bias", cfg.get("model_type") in ("qwen2", "qwen2_moe", "qwen2_vl", "qwen2_5_vl"))
    heads = int(cfg.get("num_attention_heads") or 1)
    head_dim = int(cfg.get("head_dim") or hidden // heads)
    kv = int(cfg.get("num_key_value_heads") or heads) * head_dim
    q = heads * head_dim
    per_layer = [("self_attn.q_proj", hidden, q), ("self_attn.k_proj", hidden, kv), ("self_attn.v_proj", hidden, kv),
                 ("self_attn.o_proj", q, hidden), ("mlp.gate_proj", hidden, inter), ("mlp.up_proj", hidden, inter),
                 ("mlp.down_proj", inter, hidden)]
    linears = tuple((f"model.layers.{i}.{n}", a, b) for i in range(layers) for n, a, b in per_layer)
    embed = vocab * hidden
    params = sum(a * b for _, a, b in linears) + layers * 2 * hidden + hidden + embed * (
        1 if cfg.get("tie_word_embeddings") else 2) + (layers * (q + 2 * kv) if qkv_bias else 0)
    return ModelShape(params, dtype, hidden, layers, inter, vocab, linears, "config.json")


def _prod(shape: list[int]) -> int:
    out = 1
    for x in shape:
        out *= x
    return out


# ---------------------------------------------------------------- the estimate

@dataclass
class MemoryEstimate:
    model: str
    source: str  # where the shape came from
    dtype: str
    params: int
    trainable: int
    weights: int  # bytes, per GPU
    training_state: int
    activations: int
    logits: int
    per_gpu: int  # what PyTorch reserves at the peak on one GPU (compare with memory(GiB))
    layout: str  # how the run is spread
    tokens: int  # batch × max_length per process
    assumptions: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        return asdict(self)

    def line(self) -> str:
        return (f"estimate: ~{gib(self.per_gpu)} per GPU ({self.layout}): weights {gib(self.weights)}, "
                f"training state {gib(self.training_state)} ({self.trainable:,} trainable parameters), "
                f"activations {gib(self.activations)} + logits {gib(self.logits)} for {self.tokens:,} tokens; "
                f"NVML shows ~{gib(CUDA_CONTEXT_BYTES)} more per process")


def _flag(args: dict, name: str, default=None):
    value = args.get(name)
    return default if value is None or value == "" else value


def _int(value, default: int) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


def _true(value, default: bool) -> bool:
    if value is None:
        return default
    return str(value).strip().lower() in ("true", "1", "yes")


def _lora_params(shape: ModelShape, rank: int, targets: list[str]) -> int:
    every = not targets or any(t in ("all-linear", "all") for t in targets)
    total = 0
    for name, fan_in, fan_out in shape.linears:
        if every or any(name.split(".")[-1] == t or name.endswith("." + t) for t in targets):
            total += rank * (fan_in + fan_out)
    return total


def estimate(args: dict, env: dict[str, str] | None = None, *, visible_gpus: int | None = None) -> MemoryEstimate:
    """The memory of a training run per GPU, from its arguments (flag name without dashes → value, e.g. args.json
    or Command flags) and environment. Raises ValueError/OSError when the model is not a readable local folder."""
    env = env or {}
    model = str(_flag(args, "model", ""))
    if not model or not Path(model).is_dir():
        raise ValueError(f"the model {model!r} is not a local folder: no estimate before ms-swift downloads it")
    shape = model_shape(model)
    assumptions = []
    dtype = str(_flag(args, "torch_dtype", shape.dtype or "bfloat16")).replace("torch.", "")
    wb = DTYPE_BYTES.get(dtype, 2)
    if dtype not in DTYPE_BYTES:
        assumptions.append(f"dtype {dtype!r} counted as 2 bytes")
    layout = ranks.distributed(env) or {"nproc_per_node": 1, "nnodes": 1}
    nproc, world = layout["nproc_per_node"], layout["nproc_per_node"] * layout["nnodes"]
    zero, ds_bucket = _deepspeed(_flag(args, "deepspeed"), Path(str(_flag(args, "cwd", "."))))
    quant = _flag(args, "quant_bits")
    weight_bytes = shape.params * wb if quant in (None, "", "None") else shape.params * (
        1 if quant == "float8" else _int(quant, 16) / 8)
    tuner = str(_flag(args, "tuner_type", _flag(args, "train_type", "lora")))
    if tuner == "full":
        trainable = shape.params
        grads, moments = trainable * wb, trainable * 2 * wb
        own = 0
    else:
        if tuner not in ("lora", "qlora"):
            assumptions.append(f"tuner {tuner!r} counted like LoRA")
        targets = _flag(args, "target_modules", ["all-linear"])
        targets = [targets] if isinstance(targets, str) else list(targets)
        trainable = _lora_params(shape, _int(_flag(args, "lora_rank"), 8), [str(t) for t in targets])
        own, grads, moments = trainable * 4, trainable * 4, trainable * 8
    if zero is not None and zero >= 2 and world > 1:
        state = own + (grads + moments + (trainable * 4 if tuner == "full" else 0)) / world
        if zero == 3:
            weight_bytes /= world
        how = f"DeepSpeed ZeRO-{zero} over {world} processes"
    elif zero is not None and world > 1:
        state = own + grads + moments
        how = f"DeepSpeed ZeRO-{zero} over {world} processes"
    elif world > 1:
        state = own + grads * 2 + moments  # DDP keeps a bucket copy of the gradients
        how = f"DDP, {world} processes, one GPU each" + (f" ({layout['nnodes']} nodes)" if layout["nnodes"] > 1 else "")
    else:
        state = own + grads + moments
        how = "one process"
    if zero is not None and zero < 3 and ds_bucket:
        state += ds_bucket * wb  # the gradient bucket DeepSpeed allocates whole (2e8 elements in ms-swift's presets)
    batch = _int(_flag(args, "per_device_train_batch_size"), 1)
    cfg_max = _int(_config(Path(model)).get("max_position_embeddings"), 2048)
    max_length = _int(_flag(args, "max_length"), cfg_max)
    if _flag(args, "max_length") is None:
        assumptions.append(f"no --max_length: the model's {max_length:,} tokens")
    tokens = batch * max_length
    h, i = shape.hidden, shape.intermediate
    per_layer = 7 * h + 4 * i  # a decoder layer's saved tensors per token (flash/SDPA attention: no seq² term)
    checkpointing = _true(_flag(args, "gradient_checkpointing"), True)
    activations = tokens * wb * (h * shape.layers + per_layer if checkpointing else per_layer * shape.layers)
    logits = tokens * shape.vocab * (wb + 8)
    spread = 1
    if nproc == 1 and world == 1 and visible_gpus and visible_gpus > 1:
        spread = visible_gpus
        how = f"one process over {visible_gpus} GPUs (device_map auto: the layers are split between them)"
    per_gpu = int(weight_bytes / spread + state + activations + logits)
    return MemoryEstimate(model, shape.source, dtype, shape.params, trainable, int(weight_bytes / spread),
                          int(state), int(activations), int(logits), per_gpu, how, tokens, assumptions)


def _deepspeed(value, cwd: Path) -> tuple[int | None, int]:
    """(ZeRO stage, reduce bucket in elements) of a --deepspeed value: a preset name, a json file, or the dict
    ms-swift writes into args.json. (None, 0) without DeepSpeed."""
    if value in (None, "", "None"):
        return None, 0
    config = value if isinstance(value, dict) else None
    if config is None:
        name = str(value)
        path = Path(name) if name.endswith(".json") else None
        if path is None:
            import importlib.util

            spec = importlib.util.find_spec("swift")
            root = Path(spec.origin).parent if spec and spec.origin else None
            path = root / "config" / f"{name}.json" if root else None
        elif not path.is_absolute():
            path = cwd / path
        try:
            config = json.loads(path.read_text()) if path else None
        except (OSError, ValueError):
            config = None
        if config is None:
            m = re.search(r"zero([0-3])", name)
            return (int(m[1]) if m else None), 0
    zero = config.get("zero_optimization") or {}
    stage = zero.get("stage")
    bucket = zero.get("reduce_bucket_size")
    return (int(stage) if isinstance(stage, (int, float)) else None,
            int(bucket) if isinstance(bucket, (int, float)) else 0)


def estimate_for(cmd, *, visible_gpus: int | None = None, env: dict[str, str] | None = None) -> MemoryEstimate:
    """estimate() for an engine.command.Command (`env`: what the run inherits, default this process's)."""
    args = {}
    for name in ("model", "torch_dtype", "deepspeed", "quant_bits", "tuner_type", "train_type", "lora_rank",
                 "per_device_train_batch_size", "max_length", "gradient_checkpointing"):
        value = cmd.flag(f"--{name}")
        if value is not None:
            args[name] = value
    targets = cmd.flags("--target_modules")
    if targets:
        args["target_modules"] = targets
    args["cwd"] = cmd.cwd
    if args.get("model") and not Path(args["model"]).is_absolute():
        args["model"] = str(Path(cmd.cwd) / args["model"])
    return estimate(args, {**(os.environ if env is None else env), **cmd.env}, visible_gpus=visible_gpus)


def compare(run_dir: str | Path, measured_gib: float | None, env: dict[str, str] | None = None) -> dict | None:
    """The estimate from a run folder's args.json beside what ms-swift measured (`memory(GiB)`, max over the log):
    {"estimate_gib", "measured_gib", "ratio", "layout", "note"}; None without args.json."""
    path = Path(run_dir) / "args.json"
    try:
        args = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    try:
        est = estimate(args, env)
    except (OSError, ValueError, KeyError) as exc:
        return {"estimate_gib": None, "measured_gib": measured_gib, "ratio": None, "layout": None,
                "note": f"no estimate: {exc}"}
    value = est.per_gpu / GiB
    ratio = measured_gib / value if measured_gib and value else None
    return {"estimate_gib": round(value, 3), "measured_gib": measured_gib, "ratio": round(ratio, 2) if ratio else None,
            "layout": est.layout, "note": "memory(GiB) is torch's peak reserved memory on rank 0"}


# ---------------------------------------------------------------- the preflight

@dataclass
class GpuState:
    index: int
    name: str
    total: int
    used: int
    others: list[dict]  # {pid, name, bytes} of processes already on it
    full: bool = False  # another process holds it and what is free is too little for the run

    @property
    def free(self) -> int:
        return max(self.total - self.used, 0)


@dataclass
class Preflight:
    gpu_available: bool
    gpu_reason: str
    selected: list[str]  # as CUDA_VISIBLE_DEVICES names them (every GPU NVML sees when it is unset)
    gpus: list[GpuState]
    disk_path: str
    disk_free: int | None
    estimate: MemoryEstimate | None
    estimate_note: str = ""
    problems: list[str] = field(default_factory=list)  # refused outright
    busy: list[str] = field(default_factory=list)  # refused unless confirmed
    notes: list[str] = field(default_factory=list)
    pin: str | None = None  # a CUDA_VISIBLE_DEVICES value to offer when one process would spread over several GPUs

    def lines(self) -> list[tuple[str, str]]:
        out: list[tuple[str, str]] = []
        if not self.gpu_available:
            out.append(("info", f"GPUs: {self.gpu_reason}"))
        for g in self.gpus:
            held = ", ".join(f"pid {o['pid']} {o['name']} {gib(o['bytes'])}" for o in g.others)
            out.append(("busy" if g.full else "info",
                        f"GPU {g.index} {g.name}: {gib(g.free)} free of {gib(g.total)}"
                        + (f"; other processes: {held}" if held else "; no other process")))
        out.append(("info", f"disk: {gib(self.disk_free)} free under {self.disk_path}"))
        if self.estimate:
            out.append(("info", self.estimate.line()))
            out += [("info", f"estimate assumes {a}") for a in self.estimate.assumptions]
        elif self.estimate_note:
            out.append(("info", f"estimate: {self.estimate_note}"))
        out += [("note", n) for n in self.notes]
        out += [("busy", b) for b in self.busy]
        out += [("problem", p) for p in self.problems]
        return out

    def to_json(self) -> dict:
        data = asdict(self)
        data["gpus"] = [{**asdict(g), "free": g.free} for g in self.gpus]
        return data


def _disk(path: Path) -> tuple[str, int | None]:
    probe = path
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    try:
        return str(probe), shutil.disk_usage(probe).free
    except OSError:
        return str(probe), None


def _visible(env: dict[str, str]) -> list[str] | None:
    value = env.get("CUDA_VISIBLE_DEVICES")
    if value is None:
        return None
    return [d.strip() for d in value.split(",") if d.strip()]


def check(cmd, *, snapshot=None, env: dict[str, str] | None = None) -> Preflight:
    """The preflight of a training command (see the module's note). `snapshot`: an engine.gpu.GpuSnapshot to use
    (else a fresh sample); `env`: the environment the run inherits (default: this process's)."""
    from engine import gpu

    run_env = {**(os.environ if env is None else env), **cmd.env}
    if snapshot is None:
        snapshot = gpu.default_sampler().sample()
    visible = _visible(run_env)
    by_name = {str(g.index): g for g in snapshot.gpus} | {g.uuid: g for g in snapshot.gpus}
    problems, notes = [], []
    if visible is None:
        chosen = list(snapshot.gpus)
        selected = [str(g.index) for g in chosen]
    else:
        selected = visible
        chosen = []
        for name in visible:
            found = by_name.get(name) or next((g for g in snapshot.gpus if g.uuid.startswith(name)), None) \
                if name.startswith("GPU-") else by_name.get(name)
            if found is not None:
                chosen.append(found)
            elif snapshot.available:
                problems.append(f"CUDA_VISIBLE_DEVICES names GPU {name}, which NVML does not see "
                                f"(GPUs here: {', '.join(str(g.index) for g in snapshot.gpus) or 'none'})")
    layout = ranks.distributed(run_env)
    nproc = layout["nproc_per_node"] if layout else 1
    count = len(selected) if (visible is not None or snapshot.available) else None
    if layout and count is not None and count > 0:
        if nproc > count:
            problems.append(f"{nproc} processes per node but {count} GPU(s) selected: one process needs its own GPU "
                            "(give more GPUs or fewer processes)")
        elif count % nproc:
            problems.append(f"{count} GPUs selected for {nproc} processes: ms-swift needs a multiple "
                            f"(assert n_gpu % local_world_size == 0)")
        elif count // nproc >= 2:
            notes.append(f"{count} GPUs for {nproc} process(es): ms-swift splits each process's model over "
                         f"{count // nproc} GPUs (device_map), the ranks do not each get one")
    if layout and layout["nnodes"] > 1 and not 0 <= layout["node_rank"] < layout["nnodes"]:
        problems.append(f"NODE_RANK={layout['node_rank']} is outside 0..{layout['nnodes'] - 1}")
    deepspeed = cmd.flag("--deepspeed")
    if deepspeed:
        import importlib.util

        if deepspeed not in DEEPSPEED_PRESETS and not Path(cmd.cwd, deepspeed).is_file():
            problems.append(f"--deepspeed {deepspeed}: not a preset ({', '.join(DEEPSPEED_PRESETS)}) or a json file")
        if importlib.util.find_spec("deepspeed") is None:
            problems.append("--deepspeed needs the deepspeed package in the Python that runs ms-swift "
                            "(pip install deepspeed)")
        if not layout:
            notes.append("--deepspeed with one process: DeepSpeed then only offloads/partitions nothing across "
                         "GPUs; set --nproc to use several")
    pin = None
    if not layout and len(chosen) >= 2:
        pin = str(chosen[0].index)
        notes.append(f"one process and {len(chosen)} visible GPUs: ms-swift spreads the model over all of them "
                     f"(device_map auto, layers split between the cards, no data parallelism). Pin one GPU with "
                     f"--gpus {pin} (CUDA_VISIBLE_DEVICES={pin}), or run one process per GPU with --nproc "
                     f"{len(chosen)}")
    try:
        est, est_note = estimate_for(cmd, visible_gpus=len(chosen) if not layout else None, env=run_env), ""
    except (OSError, ValueError, KeyError, TypeError) as exc:
        est, est_note = None, str(exc)
    per_gpu = est.per_gpu + CUDA_CONTEXT_BYTES if est else None
    states, busy = [], []
    for g in chosen:
        others = [{"pid": p.pid, "name": p.name, "bytes": p.used_mem or 0} for p in g.processes]
        state = GpuState(g.index, g.name, g.mem_total, g.mem_used, others)
        if others and g.mem_total:
            held = sum(o["bytes"] for o in others)
            state.full = held > g.mem_total * BUSY_SHARE or (per_gpu is not None and state.free < per_gpu)
        if state.full:
            held = sum(o["bytes"] for o in others)
            busy.append(f"GPU {g.index} is taken: {len(others)} other process(es) hold {gib(held)} and "
                        f"{gib(state.free)} is free" + (f", the run needs ~{gib(per_gpu)}" if per_gpu else ""))
        elif est and g.mem_total and per_gpu > state.free:
            notes.append(f"GPU {g.index}: the estimate (~{gib(per_gpu)}) is more than its {gib(state.free)} free")
        states.append(state)
    disk_path, disk_free = _disk(Path(cmd.output_dir))
    if est and disk_free is not None:
        ckpt = est.trainable * (4 + 8) + (est.params * DTYPE_BYTES.get(est.dtype, 2) if est.trainable == est.params
                                          else 0)
        keep = _int(cmd.flag("--save_total_limit"), 2) or 2
        if disk_free < ckpt * keep + GiB:
            notes.append(f"disk: {gib(disk_free)} free under {disk_path}; {keep} checkpoints of ~{gib(ckpt)} need "
                         f"~{gib(ckpt * keep)}")
    return Preflight(snapshot.available, snapshot.reason, selected, states, disk_path, disk_free, est, est_note,
                     problems, busy, notes, pin)
