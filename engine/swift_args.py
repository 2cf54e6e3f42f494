"""Check and rewrite a `swift <command>` argv before launch, against the ms-swift of the environment swiftdeck
drives (engine.swift_env: its own, or the user's venv given with --swift / SWIFTDECK_SWIFT).

What ms-swift accepts comes from ms-swift itself: `engine.swift_introspect` (a subprocess run with that
environment's Python, it imports swift) dumps the command's argparse options and the model/template registries as
JSON, cached per (ms-swift version, item) under `paths.data_dir()/cache/`. Everything here is then plain Python:
no swift/torch import, no shell.

check_args() refuses unknown flags (closest names via difflib), bad values, stray words; renames the other major
version's spelling of the tuner flag (--train_type -> --tuner_type on 4.x, --tuner_type -> --train_type on 3.x,
where --train_type is the flag and stays as it is); makes paths absolute against the given cwd; proposes --model_type/--template
for a local folder that ms-swift could not match on its own; proposes --torch_dtype float32 where ms-swift
would stop with "Your setup doesn't support bf16/gpu"; adds --check_model false for a local model.
"""
from __future__ import annotations

from engine.errors import SwiftdeckError
import difflib
import json
import os
import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from engine import paths, swift_env
from engine.command import _flag_groups, _is_flag_token, _norm, flag_value, flag_values, set_flag  # noqa: F401
from engine.swift_env import SwiftEnv
from engine.swift_introspect import COMMANDS

SCHEMA = 3  # bump when the introspection JSON changes shape (2: reward functions of rlhf; 3: "callbacks")
INTROSPECT_TIMEOUT_S = 300
# Real older spellings ms-swift 4.x refuses: 4.0 renamed train_type (3.x), which was sft_type in 2.x. A 3.x
# environment gets the other direction (a 4.x tutorial or swiftdeck's own launch form there).
RENAMES = {"--train_type": "--tuner_type", "--sft_type": "--tuner_type"}
RENAMES_3 = {"--tuner_type": "--train_type", "--sft_type": "--train_type"}
PATH_SUFFIXES = (".json", ".jsonl", ".csv")
DEEPSPEED_PRESETS = {"zero0", "zero1", "zero2", "zero3", "zero2_offload", "zero3_offload"}
# dest -> how its values are paths (see _resolve_paths)
PATH_DESTS = {
    "model": "model", "dataset": "dataset", "val_dataset": "dataset", "adapters": "adapter", "ref_adapters": "adapter",
    "output_dir": "output", "logging_dir": "output", "resume_from_checkpoint": "existing",
    "external_plugins": "existing", "custom_dataset_info": "existing", "deepspeed": "deepspeed",
}
_NEGATIVE_NUMBER = re.compile(r"^-\d+$|^-\d*\.\d+$")  # argparse's _negative_number_matcher
_TRUE = {"yes", "true", "t", "y", "1"}  # transformers.hf_argparser.string_to_bool
_FALSE = {"no", "false", "f", "n", "0"}


class IntrospectError(SwiftdeckError, RuntimeError):
    """ms-swift could not be asked (not installed, crashed); the message is one line for the user."""


@dataclass
class ArgProblem:
    flag: str | None
    message: str
    suggestions: list[str] = field(default_factory=list)
    fix: list[str] | None = None  # argv fragment that resolves it, e.g. ['--torch_dtype', 'float32']


@dataclass
class ArgCheck:
    argv: list[str]  # rewritten argv (after `swift <command>`)
    notes: list[str]  # what we changed, told to the user
    problems: list[ArgProblem]  # must be resolved before launch
    command: str = field(default="sft", repr=False)
    cwd: Path | None = field(default=None, repr=False)
    cuda: bool | None = field(default=None, repr=False)
    env: SwiftEnv | None = field(default=None, repr=False)  # the ms-swift environment it was checked against
    callbacks: list[str] = field(default_factory=list, repr=False)  # what its --callbacks accepts ([]: no flag)

    @property
    def graceful_exit(self) -> bool:
        """Whether this ms-swift offers the graceful_exit callback (4.x: a stop saves a checkpoint first)."""
        from engine.command import GRACEFUL

        return GRACEFUL in self.callbacks

    @property
    def ok(self) -> bool:
        return not self.problems

    def with_fixes(self) -> "ArgCheck":
        """Apply every problem's fix, then check again (problems without a fix stay)."""
        argv, applied = list(self.argv), []
        for problem in self.problems:
            if problem.fix:
                for group in _flag_groups(problem.fix):
                    argv = set_flag(argv, group[0], group[1:])
                applied.append(" ".join(problem.fix))
        if not applied:
            return self
        again = check_args(argv, command=self.command, cwd=self.cwd or Path.cwd(), cuda=self.cuda, env=self.env)
        notes = self.notes + [f"applied: {' '.join(applied)}"] + again.notes
        again.notes = list(dict.fromkeys(notes))
        return again


# ---------------------------------------------------------------- introspection (cached subprocess)

_MEMO: dict[Path, dict] = {}


def _env(env: SwiftEnv | None) -> SwiftEnv:
    """`env`, else the environment swiftdeck drives now; IntrospectError (one line) when it cannot be used."""
    if env is not None:
        return env
    try:
        return swift_env.selected()
    except swift_env.SwiftEnvError as exc:
        raise IntrospectError(str(exc)) from None


def swift_version(env: SwiftEnv | None = None) -> str:
    """The ms-swift version of `env` (default: the driven environment), read from package metadata (no import)."""
    try:
        return _env(env).version
    except swift_env.SwiftEnvError as exc:
        raise IntrospectError(str(exc)) from None


def major_version(env: SwiftEnv | None = None) -> int:
    try:
        return int(swift_version(env).split(".", 1)[0])
    except ValueError:
        return 0


def cache_dir(env: SwiftEnv | None = None) -> Path:
    return paths.data_dir() / "cache" / f"ms-swift-{swift_version(env)}"


def _spawn(args: list[str], env: SwiftEnv | None = None) -> dict:
    """Run `python -m engine.swift_introspect ARGS` with the environment's Python and return its JSON answer."""
    env = _env(env)
    root = str(Path(__file__).resolve().parents[1])
    environ = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p))
    where = "" if env.own else f" in {env.python}"
    try:
        proc = subprocess.run([env.python, "-m", "engine.swift_introspect", *args], capture_output=True,
                              text=True, env=environ, cwd=root, timeout=INTROSPECT_TIMEOUT_S, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise IntrospectError(f"asking ms-swift{where} timed out after {INTROSPECT_TIMEOUT_S} s") from None
    except OSError as exc:
        raise IntrospectError(f"asking ms-swift{where} failed: {exc.strerror or exc}") from None
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        err = proc.stderr.strip().splitlines()
        raise IntrospectError(f"asking ms-swift{where} failed (exit {proc.returncode}): "
                              f"{err[-1] if err else 'no output'}")
    return json.loads(lines[-1])


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _write_json(path: Path, data: dict) -> bool:
    """Cache `data` at `path` (atomically, 0600). Best effort: a full or read-only volume only costs the next
    call another subprocess, so it is no error; no temp file is left behind. True if written."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(mode=paths.PRIVATE_DIR, parents=True, exist_ok=True)
        with paths.open_private(tmp, "wb") as fh:
            fh.write(json.dumps(data, ensure_ascii=False).encode("utf-8"))
        os.replace(tmp, path)
        return True
    except OSError:
        return False
    finally:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass


def introspect(*items: str, env: SwiftEnv | None = None) -> dict[str, dict]:
    """Introspection items ('registry' or a command such as 'sft') of `env`'s ms-swift (default: the driven
    environment), from memory, the disk cache (per ms-swift version), or one subprocess for all missing ones."""
    for item in items:
        if item != "registry" and item not in COMMANDS:
            raise ValueError(f"unknown swift command {item!r}; known: {', '.join(COMMANDS)}")
    env = _env(env)
    folder = cache_dir(env)
    result, missing = {}, []
    for item in items:
        path = folder / f"{item}.v{SCHEMA}.json"
        data = _MEMO.get(path) or _read_json(path)
        if data is None:
            missing.append(item)
        else:
            result[item] = _MEMO[path] = data
    if missing:
        fresh = _spawn(["dump", *missing], env)
        for item in missing:
            data = dict(fresh[item], _timing=fresh.get("_timing"))
            path = folder / f"{item}.v{SCHEMA}.json"
            _write_json(path, data)
            result[item] = _MEMO[path] = data
    return result


def options(command: str = "sft", env: SwiftEnv | None = None) -> dict[str, dict]:
    """option string -> {dest, nargs, kind, choices, const} for `swift <command>`."""
    return introspect(command, env=env)[command]["options"]


def valid_flags(command: str = "sft", env: SwiftEnv | None = None) -> set[str]:
    return set(options(command, env))


def swift_parse(argv: list[str], command: str = "sft", *, match: tuple[str | Path, ...] = (),
                env: SwiftEnv | None = None) -> dict:
    """ms-swift's own parser on argv (subprocess, ~10 s): {'remaining': [...], 'values': {dest: value}};
    with `match`, also ms-swift's own model matching for those local folders under 'folders'."""
    ops = ["match", *map(str, match), "+"] if match else []
    return _spawn([*ops, "parse", command, "--", *argv], env)


def cuda_available(env: SwiftEnv | None = None) -> bool:
    """Whether the torch of `env` (default: the driven environment) could see a CUDA GPU, without importing it."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None and visible.strip() in ("", "-1"):
        return False
    try:
        torch = _env(env).versions.get("torch")
    except (IntrospectError, swift_env.SwiftEnvError):
        torch = None
    if not torch or torch.endswith("+cpu"):
        return False
    gpus = Path("/proc/driver/nvidia/gpus")
    if gpus.is_dir() and any(gpus.iterdir()):
        return True
    from engine.gpu import nvml_gpu_count

    return nvml_gpu_count() > 0


# ---------------------------------------------------------------- argparse emulation

@dataclass
class _Item:
    flag: str | None  # as typed (before '='); None for a stray word
    values: list[str]
    info: dict | None = None  # option info; None for an unknown flag
    inline: bool = False  # typed as --flag=value

    def tokens(self) -> list[str]:
        if self.flag is None:
            return list(self.values)
        if self.inline:
            return [f"{self.flag}={self.values[0]}"]
        return [self.flag, *self.values]


def _is_option(token: str, opts: dict) -> bool:
    """argparse's _parse_optional: does this token start an option (known or not)?"""
    if not token.startswith("-") or len(token) == 1:
        return False
    if token in opts or token.split("=", 1)[0] in opts:
        return True
    if _NEGATIVE_NUMBER.match(token) or " " in token:
        return False
    return True


def _tokenize(argv: list[str], opts: dict) -> list[_Item]:
    items, i = [], 0
    while i < len(argv):
        token = argv[i]
        if not _is_option(token, opts):
            if items and items[-1].flag is None:
                items[-1].values.append(token)
            else:
                items.append(_Item(None, [token]))
            i += 1
            continue
        name, eq, inline = token.partition("=")
        if token in opts or not eq:  # the whole token is the option (known or not)
            name, eq = token, ""
        info = opts.get(name)
        if eq:
            items.append(_Item(name, [inline], info, inline=True))
            i += 1
            continue
        j = i + 1
        while j < len(argv) and not _is_option(argv[j], opts):
            j += 1
        nargs = None if info is None else info["nargs"]
        take = j - i - 1
        if info is not None:
            take = {None: min(take, 1), "?": min(take, 1), 0: 0}.get(nargs, take)
            if isinstance(nargs, int) and nargs > 0:
                take = min(take, nargs)
        items.append(_Item(name, argv[i + 1:i + 1 + take], info))
        i += 1 + take
    return items


def _value_problem(item: _Item) -> ArgProblem | None:
    info, values = item.info, item.values
    nargs = info["nargs"]
    if nargs == 0 and item.inline:
        return ArgProblem(item.flag, f"{item.flag} takes no value (got {values[0]!r})")
    if nargs in (None, "+") and not values:
        return ArgProblem(item.flag, f"{item.flag} needs a value")
    for value in values:
        kind, bad = info["kind"], False
        if kind in ("int", "float"):
            try:
                (int if kind == "int" else float)(value)
            except ValueError:
                bad = True
        elif kind == "bool":
            bad = value.lower() not in _TRUE | _FALSE
        if info["choices"] is not None and value not in info["choices"]:
            choices = [c for c in info["choices"] if c != "None"]
            close = difflib.get_close_matches(value, choices, n=3, cutoff=0.5)
            return ArgProblem(item.flag, f"{item.flag} {value!r} is not one of: {', '.join(choices)}", close)
        if bad:
            want = {"int": "an integer", "float": "a number", "bool": "true or false"}[kind]
            return ArgProblem(item.flag, f"{item.flag} expects {want}, got {value!r}")
    return None


def _unknown_flag_problem(item: _Item, opts: dict, command: str, version: str) -> ArgProblem:
    name = item.flag
    canonical = sorted({o for o in opts if "-" not in o[2:]} or opts)
    # argparse would silently take a unique prefix as that option (allow_abbrev); we refuse it instead
    prefixed = [o for o in canonical if o.startswith(_norm(name))]
    close = difflib.get_close_matches(_norm(name), canonical, n=3, cutoff=0.75)
    suggestions = list(dict.fromkeys((prefixed if len(prefixed) == 1 else []) + close))
    hint = f"; did you mean {' or '.join(suggestions)}?" if suggestions else ""
    if _norm(name) in ("--rlhf_type", "--reward_funcs") and command != "rlhf":
        suggestions, hint = [], "; it belongs to `swift rlhf` (swiftdeck train --kind rlhf)"
    return ArgProblem(name, f"{name} is not a `swift {command}` option in ms-swift {version}{hint}",
                      suggestions)


def _syntax_problems(items: list[_Item], opts: dict, command: str, version: str) -> list[ArgProblem]:
    """Stray words, unknown flags, values argparse (or ms-swift's choices) would refuse."""
    problems = []
    for n, item in enumerate(items):
        if item.flag is None:
            prev = items[n - 1] if n else None
            words = " ".join(item.values)
            if n == 0 and words.lower().endswith((".json", ".yaml", ".yml")):
                problems.append(ArgProblem(None, f"{words}: config files are not checked by swiftdeck; "
                                                 "pass its settings as --flags"))
            elif prev is not None and prev.info is not None and prev.values:
                problems.append(ArgProblem(prev.flag, f"unexpected {words!r} after {prev.flag} "
                                                      f"{prev.values[-1]!r}: quote values that contain spaces"))
            else:
                problems.append(ArgProblem(None, f"unexpected {words!r}: options start with --"))
        elif item.info is None:
            problems.append(_unknown_flag_problem(item, opts, command, version))
        else:
            problem = _value_problem(item)
            if problem:
                problems.append(problem)
    return problems


def _registry_problems(given: dict[str, _Item], registry: dict, version: str) -> list[ArgProblem]:
    """--model_type / --template values ms-swift does not know."""
    problems = []
    for dest, names in (("model_type", registry["model_types"]), ("template", registry["templates"])):
        item = given.get(dest)
        if item and item.values and item.values[0] not in names:
            close = difflib.get_close_matches(item.values[0], list(names), n=3, cutoff=0.6)
            hint = f"; did you mean {' or '.join(close)}?" if close else ""
            problems.append(ArgProblem(item.flag, f"{item.flag} {item.values[0]!r} is not known to "
                                                  f"ms-swift {version}{hint}", close))
    return problems


# ---------------------------------------------------------------- paths

def _looks_like_path(value: str) -> bool:
    return value.startswith(("./", "../", "/", "~")) or value.lower().endswith(PATH_SUFFIXES)


def _abs(value: str, cwd: Path) -> str:
    return os.path.abspath(os.path.join(cwd, os.path.expanduser(value)))


def _resolve_dataset(value: str, cwd: Path) -> tuple[str, str | None]:
    """ms-swift's dataset syntax `[hf::|ms::]path_or_id[:subsets][#N]` (swift/dataset/dataset_syntax.py)."""
    if os.path.exists(_abs(value, cwd)):
        return _abs(value, cwd), None
    base, sep, sample = value.rpartition("#")
    if not (sep and sample.isdigit()):
        base, sep, sample = value, "", ""
    if os.path.exists(_abs(base, cwd)):
        return _abs(base, cwd) + sep + sample, None
    if _looks_like_path(base) and "::" not in base:
        return value, f"dataset file not found: {_abs(base, cwd)}"
    return value, None  # a hub dataset id


def _resolve_value(kind: str, dest: str, value: str, cwd: Path) -> tuple[str, str | None]:
    """(new value, error message or None) for one path-ish value."""
    if kind == "dataset":
        return _resolve_dataset(value, cwd)
    if kind == "output":
        return _abs(value, cwd), None
    if kind == "adapter" and "=" in value and "/" not in value.split("=", 1)[0]:  # name=path
        name, path = value.split("=", 1)
        new, err = _resolve_value(kind, dest, path, cwd)
        return f"{name}={new}", err
    if kind == "deepspeed" and (value in DEEPSPEED_PRESETS or value.lstrip().startswith("{")):
        return value, None
    full = _abs(value, cwd)
    if os.path.exists(full):
        return full, _not_an_adapter(Path(full)) if kind == "adapter" else None
    what = {"model": "model folder", "adapter": "adapter folder", "deepspeed": "deepspeed config"}.get(kind, dest)
    if kind == "existing" or _looks_like_path(value):
        return value, f"{what} not found: {full}"
    return value, None  # a hub id


def _not_an_adapter(path: Path) -> str | None:
    """Why a local --adapters/--ref_adapters folder is not one ms-swift loads (its BaseArguments._check_is_adapter
    fails with "is not an adapter"), e.g. a run folder instead of one of its checkpoints; None when it is one."""
    if not path.is_dir() or any((path / sub / "adapter_config.json").is_file() for sub in ("", "default")) \
            or (path / "reft").exists():
        return None
    ckpts = sorted(path.glob("checkpoint-*/adapter_config.json"), key=lambda p: int(p.parent.name.split("-")[-1])
                   if p.parent.name.split("-")[-1].isdigit() else -1)
    if ckpts:
        return f"{path} is a run folder, not a LoRA checkpoint: pick one of its checkpoint-N folders " \
               f"(the last: {ckpts[-1].parent})"
    return f"{path} is not a LoRA checkpoint (no adapter_config.json)"


def _resolve_paths(items: list[_Item], cwd: Path, problems: list[ArgProblem]) -> list[str]:
    changed = []
    for item in items:
        kind = PATH_DESTS.get(item.info["dest"]) if item.info else None
        if kind is None:
            continue
        new_values = []
        for value in item.values:
            new, err = _resolve_value(kind, item.info["dest"], value, cwd)
            if err:
                problems.append(ArgProblem(item.flag, err))
            new_values.append(new)
        if new_values != item.values:
            changed.append(item.flag)
            item.values = new_values
    return changed


# ---------------------------------------------------------------- model folder: model_type / template

def _read_config_json(folder: Path) -> dict | None:
    try:
        data = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _chat_template_text(folder: Path) -> str:
    """The folder's own chat template (transformers 5 writes chat_template.jinja)."""
    texts = []
    for name in ("chat_template.jinja", "chat_template.json", "tokenizer_config.json"):
        try:
            texts.append((folder / name).read_text(encoding="utf-8"))
        except OSError:
            continue
    return "\n".join(texts)


def _model_name(path: str) -> str:
    """ms-swift's get_model_name (swift/model/model_meta.py): hub cache snapshots, then the basename."""
    path = path.rstrip("/")
    found = re.search("/models--(?:.+?--)?(.+?)/snapshots/", path) or re.search(
        "/models/(?:.+?--)?(.+?)/snapshots/", path)
    if found:
        return found.group(1)
    return path.rsplit("/", 1)[-1].replace("___", ".")


def _pick_template(candidates: list[str], model_type: str, chat_text: str, templates: dict):
    """(template or None, reason, candidates best first). Prefers templates whose special tokens appear in the
    folder's chat template, then the one named after the model type (qwen2 -> qwen2_5, llama -> llama3)."""
    def score(name):
        markers = templates.get(name, {}).get("markers") or []
        return sum(m in chat_text for m in markers) / len(markers) if markers and chat_text else 0.0

    scores = {t: score(t) for t in candidates}
    best = max(scores.values(), default=0.0)
    pool = [t for t in candidates if scores[t] == best] if best > 0 else list(candidates)
    named = sorted((t for t in pool if t.startswith(model_type)), key=lambda t: (t != model_type, len(t)))
    ordered = list(dict.fromkeys(named + pool + list(candidates)))
    if named:
        return named[0], f"named after model type {model_type}", ordered
    if len(pool) == 1:
        return pool[0], "its special tokens match the folder's chat template", ordered
    return None, "", ordered


def _value(given: dict[str, _Item], dest: str) -> str | None:
    item = given.get(dest)
    return item.values[0] if item and item.values else None


def _model_folder(given: dict[str, _Item]) -> tuple[Path | None, dict]:
    """The local model folder and the args.json ms-swift would load settings from (get_ckpt_dir: adapters
    first, then the model folder)."""
    model = _value(given, "model")
    adapters = given["adapters"].values if "adapters" in given else []
    ckpt_args: dict = {}
    for candidate in [*adapters, *([model] if model else [])]:
        path = Path(candidate.split("=", 1)[-1]) / "args.json"
        if path.is_file():
            ckpt_args = _read_json(path) or {}
            break
    folder = Path(model or ckpt_args.get("model") or "")
    return (folder if str(folder) != "." and folder.is_dir() else None), ckpt_args


def _model_problem(given: dict[str, _Item], registry: dict) -> ArgProblem | None:
    """What ms-swift's get_model_info_meta / get_template_meta would decide for a local folder, done offline
    on its registry data; a proposal (or a question) where ms-swift would stop."""
    folder, ckpt_args = _model_folder(given)
    if folder is None:
        return None
    config = _read_config_json(folder)
    if config is None:
        return ArgProblem("--model", f"{folder} has no readable config.json: not a Hugging Face model folder")
    arch = (config.get("architectures") or ["null"])[0]
    model_type = _value(given, "model_type") or ckpt_args.get("model_type")
    template = _value(given, "template") or ckpt_args.get("template")
    by_name = registry["model_names"].get(_model_name(str(folder)).lower())
    model_type = model_type or (by_name[0] if by_name else None)
    fix, proposed, found = [], [], f"{folder} ({arch})"
    if model_type is None:
        types = registry["arch_mapping"].get(arch) or []
        if len(types) > 1:
            found += f" matches several ms-swift model types ({', '.join(types)})"
            if config.get("model_type") not in types:
                return ArgProblem("--model_type", f"{found}; ms-swift would stop with \"Failed to automatically "
                                  "match `model_type`\": which one is it? add --model_type",
                                  [f"--model_type {t}" for t in types])
            fix = ["--model_type", config["model_type"]]
            proposed.append(f"--model_type {config['model_type']} (config.json model_type)")
        model_type = fix[1] if fix else (types[0] if types else None)
    meta = registry["model_types"].get(model_type)
    if meta is not None and template is None:
        if by_name and by_name[0] == model_type:
            template = by_name[1]
        template = template or meta["template"]
    if meta is None or template is not None or len(meta["candidate_templates"]) == 1:
        if not fix:  # ms-swift decides alone (or uses its plain 'dummy' template for an unknown architecture)
            return None
        return ArgProblem("--model_type", f"{found}: ms-swift would stop with \"Failed to automatically match "
                          f"`model_type`\"; proposed: {proposed[0]}",
                          [f"--model_type {t}" for t in registry["arch_mapping"][arch]], fix)
    chosen, why, ordered = _pick_template(meta["candidate_templates"], model_type, _chat_template_text(folder),
                                          registry["templates"])
    found += (" and" if fix else f", model type {model_type}, matches several ms-swift") + \
        f" templates ({', '.join(ordered)})"
    stop = "model_type" if fix else "template_type"
    message = f"{found}: ms-swift would stop with \"Failed to automatically match `{stop}`\""
    suggestions = [f"--model_type {t}" for t in (registry["arch_mapping"][arch] if fix else [])]
    suggestions += [f"--template {t}" for t in ordered]
    if chosen is None:
        also = f"{proposed[0]} and " if proposed else ""
        return ArgProblem("--template", f"{message}: add {also}--template (which one?)", suggestions)
    fix += ["--template", chosen]
    proposed.append(f"--template {chosen} ({why})")
    return ArgProblem(fix[0], f"{message}; proposed: {' '.join(proposed)}", suggestions, fix)


def _config_dtype(folder: Path) -> str | None:
    config = _read_config_json(folder) or {}
    for node in (config, config.get("text_config") or {}):
        value = node.get("torch_dtype") or node.get("dtype")
        if isinstance(value, str):
            return value.replace("torch.", "")
    return None


def _truthy(item: _Item | None) -> bool | None:
    if item is None:
        return None
    if not item.values:  # bare `--use_cpu` (nargs '?', const True)
        return True
    return item.values[0].lower() in _TRUE


def _precision_on_cpu(given: dict[str, _Item], local: Path | None, problems: list[ArgProblem],
                      notes: list[str]) -> None:
    """No CUDA: transformers' TrainingArguments.__post_init__ raises for bf16 unless use_cpu (ms-swift sets
    bf16 from torch_dtype, and torch_dtype defaults to the model's config.json dtype). fp16 is accepted."""
    if _truthy(given.get("use_cpu")):
        return
    dtype_item = given.get("torch_dtype")
    dtype = dtype_item.values[0] if dtype_item and dtype_item.values else None
    source = f"{dtype_item.flag} {dtype}" if dtype else ""
    if dtype is None and local is not None:
        dtype = _config_dtype(local)
        source = f"the model's config.json dtype ({dtype}, which ms-swift uses by default)"
    bf16, bf16_eval = _truthy(given.get("bf16")), _truthy(given.get("bf16_full_eval"))
    if bf16 or bf16_eval or (bf16 is None and dtype == "bfloat16"):
        fix = ["--torch_dtype", "float32"] + (["--bf16", "false"] if bf16 else []) + (
            ["--bf16_full_eval", "false"] if bf16_eval else [])
        what = source if dtype == "bfloat16" and not bf16 else "--bf16 true"
        problems.append(ArgProblem("--torch_dtype", (
            f"no CUDA GPU here: with {what} ms-swift stops with \"Your setup doesn't support bf16/gpu. "
            "You need to assign use_cpu\"; proposed: --torch_dtype float32 (bf16 on a CPU is also much "
            "slower: 6x in our measurements)"), ["--torch_dtype float32", "--use_cpu true"], fix))
    elif dtype == "float16":
        notes.append(f"{source} on CPU: ms-swift accepts it, but float32 is the usual choice without a GPU")


# ---------------------------------------------------------------- swift rlhf

def _rlhf_problems(given: dict[str, _Item], info: dict, problems: list[ArgProblem], notes: list[str]) -> None:
    """What `swift rlhf` needs beyond its flags: the packages its trainer imports, GRPO's reward functions
    (built-in names, or registered by --external_plugins), and a reward for GRPO at all."""
    from engine import kinds

    rlhf_type = _value(given, "rlhf_type")
    if rlhf_type is None:
        notes.append(f"no --rlhf_type: ms-swift trains {kinds.DEFAULT_RLHF_TYPE}")
        rlhf_type = kinds.DEFAULT_RLHF_TYPE
    if rlhf_type not in kinds.RLHF_TYPES:  # already a value problem
        return
    funcs = given["reward_funcs"].values if "reward_funcs" in given else []
    plugins = "external_plugins" in given
    for package in kinds.missing_packages(kinds.PACKAGES.get(rlhf_type, ())):
        problems.append(ArgProblem("--rlhf_type", f"--rlhf_type {rlhf_type} needs the Python package {package}, "
                                                  f"which is not installed (ms-swift's install does not bring it): "
                                                  f"pip install {package}"))
    if rlhf_type != "grpo":
        if funcs:
            notes.append(f"--reward_funcs is only used by --rlhf_type grpo; {rlhf_type} ignores it")
        return
    known = info.get("reward_funcs") or []
    for name in funcs:
        if name not in known:
            if plugins:
                notes.append(f"--reward_funcs {name}: not built into ms-swift; --external_plugins must register it")
                continue
            close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
            hint = f"; did you mean {' or '.join(close)}?" if close else ""
            problems.append(ArgProblem("--reward_funcs", f"--reward_funcs {name!r} is not a reward function of "
                                       f"ms-swift {swift_version()} (built in: {', '.join(known)}; your own ones "
                                       f"come with --external_plugins){hint}", close))
            continue
        for package in kinds.missing_packages(kinds.REWARD_PACKAGES.get(name, ())):
            problems.append(ArgProblem("--reward_funcs", f"--reward_funcs {name} needs the Python package "
                                       f"{package}, which is not installed: pip install {package.replace('_', '-')}"))
    if not funcs and not any(d in given for d in ("reward_model", "teacher_model", "teacher_model_server")):
        problems.append(ArgProblem("--reward_funcs", "--rlhf_type grpo needs --reward_funcs (built in: "
                                   f"{', '.join(known)}) or --reward_model; ms-swift stops with \"You must "
                                   "specify reward_funcs or reward_model\""))


# ---------------------------------------------------------------- the check

def _renamed(argv: list[str], opts: dict, version: str) -> tuple[list[str], list[str]]:
    """(argv with the other major version's spelling of a flag rewritten, the notes): only a flag this ms-swift
    does not know, to a flag it knows (on 3.x, --train_type is the flag and stays)."""
    major = version.split(".", 1)[0]
    table = RENAMES_3 if major.isdigit() and int(major) < 4 else RENAMES
    argv, notes = list(argv), []
    for n, token in enumerate(argv):  # renamed flags, before counting values
        name, eq, value = token.partition("=")
        new = table.get(_norm(name)) if _is_option(token, opts) and name not in opts else None
        if new in opts:
            argv[n] = new + eq + value
            notes.append(f"{name} is called {new} since ms-swift 4.0; rewrote it" if table is RENAMES else
                         f"{name} is called {new} before ms-swift 4.0 (this is ms-swift {version}); rewrote it")
    return argv, notes


def check_args(argv: list[str], *, command: str = "sft", cwd: Path, cuda: bool | None = None,
               env: SwiftEnv | None = None) -> ArgCheck:
    """Check (and rewrite) the argv that follows `swift <command>`, against the ms-swift of `env` (default: the
    environment swiftdeck drives)."""
    cwd = Path(cwd)
    if command not in COMMANDS:
        return ArgCheck(list(argv), [], [ArgProblem(None, f"unknown swift command {command!r}; "
                                                          f"known: {', '.join(COMMANDS)}")], command, cwd, cuda, env)
    try:
        env = _env(env)
        version = swift_version(env)
        data = introspect(command, "registry", env=env)
    except IntrospectError as exc:
        return ArgCheck(list(argv), [], [ArgProblem(None, str(exc))], command, cwd, cuda, env)
    opts, registry = data[command]["options"], data["registry"]
    problems: list[ArgProblem] = []
    argv, notes = _renamed(argv, opts, version)
    items = _tokenize(argv, opts)

    problems += _syntax_problems(items, opts, command, version)
    given = {item.info["dest"]: item for item in items if item.info is not None}
    problems += _registry_problems(given, registry, version)

    changed = _resolve_paths(items, cwd, problems)
    if changed:
        notes.append(f"made paths absolute (relative to {cwd}): {', '.join(dict.fromkeys(changed))}")

    model_item = given.get("model")
    local = Path(model_item.values[0]) if model_item and model_item.values else None
    local = local if local is not None and local.is_dir() else None
    if model_item and model_item.values and local is None and not any(p.flag == model_item.flag
                                                                      for p in problems):
        notes.append(f"--model {model_item.values[0]} is not a local folder: ms-swift will download it "
                     "from the model hub")
    if not any(p.flag in ("--model_type", "--template") for p in problems):
        problem = _model_problem(given, registry)
        if problem:
            problems.append(problem)
    if local is not None and "check_model" in {i["dest"] for i in opts.values()} and "check_model" not in given:
        items.append(_Item("--check_model", ["false"], opts["--check_model"]))
        notes.append("added --check_model false (local model: skips ModelScope's online 'is it the latest' check)")

    if command == "rlhf":
        _rlhf_problems(given, data[command], problems, notes)
    if command == "pt" and "system" in given and not _truthy(given.get("use_chat_template")):
        problems.append(ArgProblem(given["system"].flag, (
            f"`swift pt` trains on plain text (--use_chat_template false), whose template takes no system prompt: "
            f"ms-swift stops with \"The template does not support `system`\"; drop {given['system'].flag} (or "
            f"add --use_chat_template true to pretrain on chat-formatted rows)"), ["--use_chat_template true"]))

    dests = {info["dest"] for info in opts.values()}
    if {"bf16", "use_cpu", "torch_dtype"} <= dests:  # a training command
        cuda = cuda_available(env) if cuda is None else cuda
        if not cuda:
            _precision_on_cpu(given, local, problems, notes)

    new_argv = [token for item in items for token in item.tokens()]
    return ArgCheck(new_argv, notes, problems, command, cwd, cuda, env, list(data[command].get("callbacks") or []))


# ---------------------------------------------------------------- a local model folder outside training

class ModelUnresolved(SwiftdeckError):
    """ms-swift could not tell the model type or template of a local folder on its own (one line)."""


def model_settings(model: str | Path, *, model_type: str | None = None, template: str | None = None,
                   env: SwiftEnv | None = None) -> tuple[str | None, str | None]:
    """(model_type, template) for loading `model` the way `swiftdeck train` resolves it, with the registry of
    `env`'s ms-swift (default: the driven environment): what ms-swift decides alone stays None; a local folder it
    could not match (e.g. a Qwen2 folder: 'qwen2' or 'qwen2_gte') gets the proposal that `train` makes, so chat,
    check-identity, deploy and merge load the same folder the same way."""
    folder = Path(model).expanduser()
    if (model_type and template) or not folder.is_dir():
        return model_type, template
    registry = introspect("registry", env=env)["registry"]
    given = {"model": _Item("--model", [str(folder.resolve())], {"dest": "model"})}
    for dest, value in (("model_type", model_type), ("template", template)):
        if value:
            given[dest] = _Item(f"--{dest}", [value], {"dest": dest})
    problem = _model_problem(given, registry)
    if problem is None:
        return model_type, template
    if not problem.fix:
        also = f" (one of: {', '.join(problem.suggestions)})" if problem.suggestions else ""
        raise ModelUnresolved(f"{problem.message}{also}")
    fixed = {group[0]: group[1] for group in _flag_groups(problem.fix) if len(group) > 1}
    return fixed.get("--model_type", model_type), fixed.get("--template", template)
