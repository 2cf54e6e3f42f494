"""Discovery and metadata of ms-swift run folders (`vN-YYYYMMDD-HHMMSS`) and their `checkpoint-N` folders.

Layouts: `<output_dir>/vN-*` and ms-swift's default `output/<model>/vN-*`; a run folder itself is accepted too.
Everything is read from disk (args.json, logging.jsonl, trainer_state.json, adapter_config.json, the headers of the
weight files); nothing loads torch. A checkpoint whose weights are missing, empty or cut short (a save that filled
the disk or was killed) is incomplete: never `last`, `best` or resumable. A run folder's state is its registry
record's status when swiftdeck launched it, else what its files show (engine.status.folder_status).
"""
from __future__ import annotations

from engine.errors import SwiftdeckError
import bisect
import dataclasses
import os
import re
import zipfile
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from engine.kinds import label_of_args_json
from engine.ingest import JsonlRecords, loads_json, record_step, record_values

RUN_RE = re.compile(r"v(\d+)-(\d{8})-(\d{6})")
CKPT_RE = re.compile(r"checkpoint-(\d+)(-merged)?")
ADAPTER_WEIGHTS = ("adapter_model.safetensors", "adapter_model.bin")
MODEL_WEIGHTS_RE = re.compile(r"(model|pytorch_model)(-\d+-of-\d+)?\.(safetensors|bin)|model\.safetensors\.index\.json"
                              r"|pytorch_model\.bin\.index\.json")
NOT_LORA = "not a LoRA adapter"
SUMMARY_KEYS = ("train_runtime", "train_loss", "train_samples_per_second", "train_steps_per_second")


class CheckpointError(SwiftdeckError):
    """A one-line, user-facing problem (missing folder, not a run folder)."""


@dataclass
class CheckpointInfo:
    path: Path
    step: int | None
    kind: str  # "lora" | "merged" | "full"
    complete: bool  # weights present (adapter for LoRA, model weights otherwise)
    resumable: bool  # optimizer + scheduler + rng state + trainer_state present
    size_bytes: int
    loss: float | None = None  # train loss logged at the nearest step <= `step`
    loss_step: int | None = None
    eval_loss: float | None = None
    is_best: bool = False
    is_last: bool = False
    lora_rank: int | None = None
    lora_alpha: float | None = None
    target_modules: list[str] | str | None = None
    base_model: str | None = None
    model_type: str | None = None
    template: str | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.path.name

    def to_json(self) -> dict:
        data = dataclasses.asdict(self)
        data["path"] = str(self.path)
        data["name"] = self.name
        return data


@dataclass
class RunFolder:
    path: Path
    version: int | None
    created: datetime | None
    model: str | None = None
    model_type: str | None = None
    template: str | None = None
    tuner_type: str | None = None
    kind: str | None = None  # sft | pt | rlhf/dpo | rlhf/grpo | … (engine.kinds, from args.json)
    adapters: list[str] = field(default_factory=list)  # --adapters it started from: trained further (engine.lineage)
    empty: bool = False  # a launch that failed before training leaves an empty folder behind
    ended: bool = False  # logging.jsonl has ms-swift's final record (also written after an interrupt or a crash)
    state: str = "not finished"  # engine.status.folder_status: the registry status, or what the files show
    final: dict = field(default_factory=dict)  # last/best checkpoint, best_metric, global_step, train summary
    last_step: int | None = None  # last logged step
    max_steps: int | None = None
    checkpoints: list[CheckpointInfo] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def finished(self) -> bool:
        """The run got to its end (not merely: ms-swift wrote its final record)."""
        return self.state == "finished"

    @property
    def label(self) -> str:
        """State and steps, e.g. "finished step 120/120", "stopped step 22/900", "ended at step 0/?"."""
        step = self.final.get("global_step")
        step = step if isinstance(step, int) and not isinstance(step, bool) else self.last_step
        if step is None:
            return self.state
        return f"{self.state} {'at ' if self.state == 'ended' else ''}step {step}/{self.max_steps or '?'}"

    def to_json(self) -> dict:
        return {
            "path": str(self.path), "name": self.name, "version": self.version,
            "created": self.created.isoformat() if self.created else None,
            "model": self.model, "model_type": self.model_type, "template": self.template,
            "tuner_type": self.tuner_type, "kind": self.kind, "adapters": list(self.adapters), "empty": self.empty, "ended": self.ended,
            "state": self.state, "finished": self.finished, "final": self.final,
            "last_step": self.last_step, "max_steps": self.max_steps,
            "checkpoints": [c.to_json() for c in self.checkpoints], "notes": list(self.notes),
        }


# ---------------------------------------------------------------- helpers


def _read_json(path: Path, notes: list[str] | None = None) -> dict:
    try:
        data = loads_json(path.read_bytes())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        if notes is not None:
            notes.append(f"{path.name} unreadable: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}")
        return {}
    return data if isinstance(data, dict) else {}


def _size(path: Path) -> int:
    total = 0
    try:
        entries = list(os.scandir(path))
    except OSError:
        return 0
    for e in entries:
        try:
            if e.is_dir(follow_symlinks=False):
                total += _size(Path(e.path))
            else:
                total += e.stat(follow_symlinks=False).st_size
        except OSError:
            pass
    return total


def _run_created(name: str) -> tuple[int | None, datetime | None]:
    m = RUN_RE.fullmatch(name)
    if not m:
        return None, None
    try:
        created = datetime.strptime(m.group(2) + m.group(3), "%Y%m%d%H%M%S")
    except ValueError:
        created = None
    return int(m.group(1)), created


def _basename(path) -> str | None:
    return Path(path).name if isinstance(path, str) and path and path != "None" else None


def _last_checkpoint_link(run: Path) -> str | None:
    """`last-checkpoint` is a relative symlink; a copy may have turned it into a small file holding the name."""
    link = run / "last-checkpoint"
    try:
        if link.is_symlink():
            return Path(os.readlink(link)).name
        if link.is_file() and link.stat().st_size < 4096:
            return link.read_text(errors="replace").strip() or None
    except OSError:
        pass
    return None


def _history(records: list[dict]) -> tuple[dict[int, float], dict[int, float]]:
    """(train loss by step, eval loss by step) from log records."""
    loss, eval_loss = {}, {}
    for rec in records:
        step, _ = record_step(rec)
        if step is None:
            continue
        values = record_values(rec)
        if "loss" in values:
            loss[step] = values["loss"]
        if "eval_loss" in values:
            eval_loss[step] = values["eval_loss"]
    return loss, eval_loss


# ---------------------------------------------------------------- checkpoints


def file_problem(path: Path) -> str | None:
    """Why a weights or state file cannot be whole (missing, empty, cut short), else None. Reads a header only:
    safetensors must hold all the bytes its header promises; a torch zip file must end with its zip directory."""
    try:
        size = path.stat().st_size
        if size == 0:
            return f"{path.name} is empty"
        with open(path, "rb") as fh:
            head = fh.read(8)
            if path.suffix == ".safetensors":
                header_len = int.from_bytes(head, "little") if len(head) == 8 else size
                if header_len > size - 8:
                    return f"{path.name} is cut short ({size} bytes)"
                header = loads_json(fh.read(header_len))
                end = max((v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"), default=0)
                if size < 8 + header_len + end:
                    return f"{path.name} is cut short ({size} of {8 + header_len + end} bytes)"
            elif head.startswith(b"PK") and not zipfile.is_zipfile(path):  # torch.save's zip format
                return f"{path.name} is cut short ({size} bytes, no zip directory at its end)"
    except FileNotFoundError:
        return f"no {path.name}"
    except (OSError, ValueError, KeyError, TypeError, IndexError, AttributeError) as exc:
        return f"{path.name} is unreadable ({type(exc).__name__})"
    return None


def _weights_problem(path: Path, files: list[str]) -> str | None:
    """The first problem of the weight files `files` of a checkpoint (shards listed by an index file included)."""
    for name in files:
        if name.endswith(".index.json"):
            index = _read_json(path / name)
            shards = sorted(set((index.get("weight_map") or {}).values())) if isinstance(index, dict) else []
            if not shards:
                return f"{name} lists no weight files"
            problem = _weights_problem(path, [str(s) for s in shards])
        else:
            problem = file_problem(path / name)
        if problem:
            return problem
    return None


def scan_checkpoint(path: Path, run_args: dict | None = None) -> CheckpointInfo:
    """Metadata of one checkpoint folder (LoRA adapter, merged model or full-parameter checkpoint)."""
    path = Path(path)
    notes: list[str] = []
    m = CKPT_RE.fullmatch(path.name)
    step = int(m.group(1)) if m else None
    names = set(os.listdir(path))
    args = _read_json(path / "args.json", notes) or (run_args or {})
    adapter = _read_json(path / "adapter_config.json", notes) if "adapter_config.json" in names else None
    has_model = "config.json" in names and any(MODEL_WEIGHTS_RE.fullmatch(n) for n in names)
    tuner = args.get("tuner_type") or args.get("train_type")
    if adapter is not None:
        kind = "lora"
    elif path.name.endswith("-merged"):
        kind = "merged"
    elif tuner == "full":
        kind = "full"
    elif has_model:
        kind = "merged"
    else:
        kind = "lora"
    if kind == "lora":
        weights = [n for n in ADAPTER_WEIGHTS if n in names][:1]
        problem = ("no adapter_config.json" if adapter is None else "no adapter_model.safetensors" if not weights
                   else _weights_problem(path, weights))
    else:
        notes.append(NOT_LORA)
        weights = sorted(n for n in names if MODEL_WEIGHTS_RE.fullmatch(n))
        index = [n for n in weights if n.endswith(".index.json")]
        problem = ("no config.json + model weights" if not has_model
                   else _weights_problem(path, index or weights))
    complete = problem is None
    if problem:
        notes.append(f"incomplete: {problem}")
    optimizer = bool(names & {"optimizer.pt", "optimizer.bin"}) or any(n.startswith("global_step") for n in names)
    needs = {"optimizer.pt": optimizer, "scheduler.pt": "scheduler.pt" in names,
             "rng_state*.pth": any(n.startswith("rng_state") and n.endswith(".pth") for n in names),
             "trainer_state.json": "trainer_state.json" in names}
    resumable = kind != "merged" and all(needs.values())
    if kind != "merged" and not resumable:
        notes.append("not resumable: no " + ", ".join(k for k, ok in needs.items() if not ok))
    elif resumable:
        cut = next((p for n in ("optimizer.pt", "scheduler.pt") if n in names and (p := file_problem(path / n))), None)
        if cut:
            notes.append(f"not resumable: {cut}")
        resumable = complete and cut is None
    info = CheckpointInfo(
        path=path, step=step, kind=kind, complete=complete, resumable=resumable, size_bytes=_size(path),
        base_model=(adapter or {}).get("base_model_name_or_path") or args.get("model"),
        model_type=args.get("model_type"), template=args.get("template"), notes=notes)
    if adapter is not None:
        info.lora_rank = adapter.get("r")
        info.lora_alpha = adapter.get("lora_alpha")
        info.target_modules = adapter.get("target_modules")
        if isinstance(info.target_modules, list):
            info.target_modules = sorted(info.target_modules)
    return info


# ---------------------------------------------------------------- runs


def is_run_folder(path: Path) -> bool:
    path = Path(path)
    if not path.is_dir():
        return False
    if RUN_RE.fullmatch(path.name):
        return True
    try:
        names = os.listdir(path)
    except OSError:
        return False
    return "logging.jsonl" in names or ("args.json" in names and any(CKPT_RE.fullmatch(n) for n in names))


def scan_run(path: Path, *, registry: bool | dict[str, str] = True, logged=None) -> RunFolder:
    """Everything about one run folder. Raises CheckpointError for a missing path. `registry`: look up the
    registry record that points at the folder for its state (a dict: engine.status.registry_index(), read once
    for many folders); False: the state from the files alone. `logged`: the folder's logging.jsonl as a caller
    already read it (an engine.observer.RunObserver, caught up): its columns are used, the file is not read again."""
    path = Path(path)
    if not path.is_dir():
        raise CheckpointError(f"not a folder: {path}")
    version, created = _run_created(path.name)
    run = RunFolder(path=path, version=version, created=created)
    names = sorted(os.listdir(path))
    if not names:
        run.empty = True
        run.notes.append("empty folder: the launch failed before training started")
        return _with_state(run, registry)
    args = _read_json(path / "args.json", run.notes)
    run.model, run.model_type, run.template = args.get("model"), args.get("model_type"), args.get("template")
    run.tuner_type = args.get("tuner_type") or args.get("train_type")
    run.kind = label_of_args_json(args)
    run.adapters = [a for a in args.get("adapters") or [] if isinstance(a, str)]

    if logged is not None and logged.jsonl_read and Path(logged.state.run_dir or "") == path:
        return _scan_rest(run, path, names, args, registry, _from_columns(run, logged))
    records = JsonlRecords(path / "logging.jsonl")  # streamed: a long run is not held as a list of dicts
    for rec in records:
        if "last_model_checkpoint" in rec or "log_history" in rec:
            run.ended = True
            run.final.update({k: rec.get(k) for k in
                              ("last_model_checkpoint", "best_model_checkpoint", "best_metric", "global_step")})
        elif "train_runtime" in rec:
            run.final.update({k: v for k, v in record_values(rec).items() if k in SUMMARY_KEYS})
        step, max_steps = record_step(rec)
        if step is not None and "last_model_checkpoint" not in rec:
            run.last_step = max(run.last_step or 0, step)
            run.max_steps = max_steps or run.max_steps

    loss, eval_loss = _history(records)
    return _scan_rest(run, path, names, args, registry, (_Lookup.of(loss), _Lookup.of(eval_loss), bool(records)))


def _from_columns(run: RunFolder, logged) -> tuple:
    """What scan_run reads from logging.jsonl, from an observer's state instead (engine.metric_columns)."""
    state = logged.state
    rec = logged.final_record
    if rec is not None:
        run.ended = True
        run.final.update({k: rec.get(k) for k in
                          ("last_model_checkpoint", "best_model_checkpoint", "best_metric", "global_step")})
    if state.finished is not None:
        run.final.update({k: v for k, v in state.finished.summary.items() if k in SUMMARY_KEYS})
    steps = [c.steps[-1] for c in (state.train, state.eval) if len(c)]
    if state.progress is not None:
        steps.append(state.progress.step)
    if steps:
        run.last_step = max(steps)
        run.max_steps = state.max_steps
    return (_Lookup(*state.train.series("loss")), _Lookup(*state.eval.series("eval_loss")),
            bool(steps or rec is not None))


class _Lookup:
    """A metric by step (steps rising): the value at or before a step."""

    def __init__(self, steps, values):
        self.steps, self.values = steps, values

    @classmethod
    def of(cls, series: dict[int, float]) -> "_Lookup":
        steps = sorted(series)
        return cls(steps, [series[s] for s in steps])

    def __bool__(self) -> bool:
        return len(self.steps) > 0

    def at_or_before(self, step: int | None) -> tuple[int | None, float | None]:
        i = len(self.steps) if step is None else bisect.bisect_right(self.steps, step)
        return (self.steps[i - 1], self.values[i - 1]) if i else (None, None)


def _scan_rest(run: RunFolder, path: Path, names: list[str], args: dict, registry, logged: tuple) -> RunFolder:
    loss, eval_loss, any_record = logged
    if not any_record:
        run.notes.append("no logging.jsonl: training never logged a step (failed early, or still starting)")
    ckpt_dirs = sorted((p for n in names if CKPT_RE.fullmatch(n) and (p := path / n).is_dir()),
                       key=lambda p: (int(CKPT_RE.fullmatch(p.name).group(1)), p.name))
    run.checkpoints = [scan_checkpoint(p, args) for p in ckpt_dirs]
    _mark_losses(run, loss, eval_loss)
    _mark_last_best(run)
    if not run.checkpoints and any_record:
        run.notes.append("no checkpoint saved" + ("" if run.ended else " yet"))
    return _with_state(run, registry)


def _with_state(run: RunFolder, registry: bool | dict[str, str]) -> RunFolder:
    from engine import status

    rec = None
    if registry is not False:
        rec = status.record_for(run.path, None if registry is True else registry)
    run.state = status.folder_status(run, rec)
    return run


def _mark_losses(run: RunFolder, loss: _Lookup, eval_loss: _Lookup) -> None:
    for c in run.checkpoints:
        lo, ev = loss, eval_loss
        if not lo:  # no logging.jsonl: this checkpoint's own trainer_state.json log_history
            state = _read_json(c.path / "trainer_state.json")
            lo, ev = map(_Lookup.of, _history([h for h in state.get("log_history", []) if isinstance(h, dict)]))
        c.loss_step, c.loss = lo.at_or_before(c.step)
        c.eval_loss = ev.at_or_before(c.step)[1]


def _mark_last_best(run: RunFolder) -> None:
    """`last`: the checkpoint ms-swift names (final record, else the last-checkpoint link), or the newest one; an
    incomplete checkpoint is never last or best (the newest complete one is last instead)."""
    trained = [c for c in run.checkpoints if c.kind != "merged"]
    if not trained:
        return
    whole = [c for c in trained if c.complete]
    last = _basename(run.final.get("last_model_checkpoint")) or _last_checkpoint_link(run.path) or trained[-1].name
    if not any(c.name == last for c in whole):
        last = whole[-1].name if whole else None
    best = _basename(run.final.get("best_model_checkpoint"))
    if best is None and not run.ended:
        best = _basename(_read_json(trained[-1].path / "trainer_state.json").get("best_model_checkpoint"))
    for c in trained:
        c.is_last = c.complete and c.name == last
        c.is_best = c.complete and c.name == best


def run_folder_paths(output_dir: Path) -> list[Path]:
    """The run folders `scan` reads, in its order (oldest first), from the folder names alone: no file inside is
    read (the run switcher lists them without scanning 500 checkpoints). Raises CheckpointError when `output_dir`
    does not exist."""
    root = Path(output_dir)
    if not root.is_dir():
        raise CheckpointError(f"no such folder: {root}")
    if is_run_folder(root):
        return [root]
    found: list[Path] = []
    for child in sorted(root.iterdir()):
        if not child.is_dir():
            continue
        if RUN_RE.fullmatch(child.name):
            found.append(child)
        else:
            try:
                found += [g for g in sorted(child.iterdir()) if g.is_dir() and RUN_RE.fullmatch(g.name)]
            except OSError:
                continue

    def order(p: Path) -> tuple:
        version, created = _run_created(p.name)
        return created or datetime.min, version or 0, str(p)

    return sorted(found, key=order)


def scan(output_dir: Path) -> list[RunFolder]:
    """Run folders under `output_dir` (directly, or one level down under a model-name folder), oldest first.
    `output_dir` may itself be a run folder. Raises CheckpointError when it does not exist."""
    root = Path(output_dir)
    found = run_folder_paths(root)
    if found == [root]:
        return [scan_run(root)]
    from engine import status

    index = status.registry_index()
    return [scan_run(p, registry=index) for p in found]  # in run_folder_paths' order


# ---------------------------------------------------------------- human-readable


def _fmt_size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TB"


def _fmt_num(v: float | None) -> str:
    return "-" if v is None else f"{v:.4g}"


def format_table(runs: list[RunFolder], base: Path | None = None) -> str:
    """The text of `swiftdeck checkpoints`: one block per run, one row per checkpoint."""
    if not runs:
        return "no run folders found"
    lines = []
    for r in runs:
        where = str(r.path.relative_to(base)) if base and r.path.is_relative_to(base) else str(r.path)
        what = " ".join(x for x in (r.kind, r.tuner_type, r.model_type, r.template) if x)
        lines.append(f"{where}  [{r.label}]  {what}  {r.model or ''}".rstrip())
        if r.adapters:
            lines.append(f"  started from {', '.join(r.adapters)} (--adapters: its checkpoints hold that LoRA, trained "
                         "further)")
        for note in r.notes:
            lines.append(f"  ! {note}")
        if r.checkpoints:
            lines.append(f"  {'checkpoint':<22} {'kind':<6} {'loss':>8} {'eval':>8} {'size':>9}  flags")
        for c in r.checkpoints:
            flags = [f for f, on in (("last", c.is_last), ("best", c.is_best), ("resumable", c.resumable)) if on]
            if c.kind == "lora" and c.lora_rank is not None:
                flags.append(f"r={c.lora_rank} alpha={c.lora_alpha:g}" if c.lora_alpha is not None
                             else f"r={c.lora_rank}")
            lines.append(f"  {c.name:<22} {c.kind:<6} {_fmt_num(c.loss):>8} {_fmt_num(c.eval_loss):>8} "
                         f"{_fmt_size(c.size_bytes):>9}  {' '.join(flags) or '-'}")
            for note in c.notes:
                lines.append(f"      {note}")
    return "\n".join(lines)


def to_json(runs: list[RunFolder]) -> list[dict]:
    return [r.to_json() for r in runs]


__all__ = ["CheckpointError", "CheckpointInfo", "RunFolder", "scan", "scan_run", "scan_checkpoint", "is_run_folder",
           "format_table", "to_json", "NOT_LORA"]
