"""Asks the installed ms-swift about itself and prints JSON. Runs as a subprocess only: importing swift takes
~10 s and pulls in torch, so the engine and the TUI call this (via engine.swift_args, which caches the answer).

    python -m engine.swift_introspect dump sft registry   -> {"sft": {options...}, "registry": {...}}
    python -m engine.swift_introspect parse sft -- ARGV   -> ms-swift's own parser on ARGV: {"remaining": [...]}
    python -m engine.swift_introspect match FOLDER...     -> ms-swift's own model matching for local folders
    Operations chain with `+` into one process (one import): `match F + parse sft -- ARGV`.

The parser is built exactly like ms-swift's `swift.utils.parse_args` (HfArgumentParser over the command's
arguments dataclass) but the dataclass is never instantiated (its __post_init__ loads models and datasets).

It runs with the interpreter of the environment swiftdeck drives (engine.swift_env), so it reads ms-swift 4.x
(`swift.arguments`, `swift.model`, `swift.template`) and 3.x (everything under `swift.llm`) alike; it imports only
the standard library before that.
"""
from __future__ import annotations

import json
import os
import re
import sys
import time

# `swift <command>` -> the arguments dataclass its pipeline parses (swift/pipelines/*: args_class).
COMMANDS = {
    "sft": "SftArguments", "pt": "PretrainArguments", "rlhf": "RLHFArguments", "infer": "InferArguments",
    "deploy": "DeployArguments", "export": "ExportArguments", "eval": "EvalArguments",
    "sample": "SamplingArguments", "app": "AppArguments",
}
# ms-swift 3.x names: every training command parses TrainArguments (swift/llm/train/*.py args_class).
COMMANDS_3 = dict(COMMANDS, sft="TrainArguments", pt="TrainArguments")
# Special tokens that identify a chat format, used to compare a template with a folder's chat template.
MARKER_RE = re.compile(r"<\|[A-Za-z0-9_]+\|>|<｜[^｜]+｜>|\[/?INST\]|<</?SYS>>")


def _arguments_class(command: str):
    """(the arguments dataclass of `swift <command>`, its name): swift.arguments in 4.x, swift.llm in 3.x."""
    if command not in COMMANDS:
        raise SystemExit(f"unknown command {command!r}; known: {', '.join(COMMANDS)}")
    try:
        import swift.arguments as module
        names = COMMANDS
    except ImportError:  # ms-swift 3.x
        import swift.llm as module
        names = COMMANDS_3
    return getattr(module, names[command]), names[command]


def _callbacks() -> list[str]:
    """The names `--callbacks` accepts (ms-swift 4.x callbacks_map; none in 3.x, which has no such flag)."""
    try:
        from swift.callbacks import callbacks_map
    except ImportError:
        return []
    return sorted(callbacks_map)


def _reward_funcs() -> list[str]:
    """The built-in GRPO reward functions (`--reward_funcs NAME`): swift.rewards in 4.x, swift.plugin in 3.x."""
    for module in ("swift.rewards.orm", "swift.plugin.orm"):
        try:
            return sorted(__import__(module, fromlist=["orms"]).orms)
        except (ImportError, AttributeError):
            continue
    return []


def build_parser(command: str):
    """The HfArgumentParser ms-swift builds for `swift <command>` (swift/utils/utils.py parse_args)."""
    from transformers import HfArgumentParser

    cls, _ = _arguments_class(command)
    try:
        from swift.utils.utils import _patch_get_type_hints
    except ImportError:  # private helper; without it only dict-typed fields parse differently
        return HfArgumentParser([cls])
    with _patch_get_type_hints():
        return HfArgumentParser([cls])


def _kind(action) -> str:
    if action.nargs == 0:
        return "flag"  # store_true/store_false, e.g. --no_check_model
    kind = getattr(action.type, "__name__", "") if action.type is not None else ""
    if action.type in (int, float, str):
        return kind
    if kind == "string_to_bool":
        return "bool"
    return "choice" if action.choices is not None else "str"


def describe_options(command: str) -> dict:
    """Every option string of the command with what argparse needs to consume and check its values."""
    parser = build_parser(command)
    options = {}
    for action in parser._actions:
        if not action.option_strings or action.dest == "help":
            continue
        info = {
            "dest": action.dest,
            "nargs": action.nargs,
            "kind": _kind(action),
            "choices": None if action.choices is None else [str(c) for c in action.choices],
            "const": None if action.const is None else str(action.const),
        }
        for opt in action.option_strings:
            options[opt] = info
    out = {"command": command, "class": _arguments_class(command)[1], "options": options,
           "callbacks": _callbacks() if "--callbacks" in options else []}
    if command == "rlhf":  # the built-in GRPO reward functions (--reward_funcs NAME)
        out["reward_funcs"] = _reward_funcs()
    return out


def _markers(template_meta) -> list[str]:
    parts = []
    for name in ("prefix", "prompt", "chat_sep", "suffix", "system_prefix"):
        for piece in getattr(template_meta, name, None) or []:
            if isinstance(piece, str):
                parts.append(piece)
    return sorted(set(MARKER_RE.findall("".join(parts))))


def describe_registry() -> dict:
    """ms-swift's model and template registries: the data behind its automatic model_type/template matching
    (swift/model/model_meta.py get_matched_model_meta, get_matched_model_types; swift/template/register.py)."""
    try:
        from swift.model.model_meta import MODEL_MAPPING, _get_arch_mapping
        from swift.template import TEMPLATE_MAPPING
    except ImportError:  # ms-swift 3.x: one template per model type (no candidate_templates)
        from swift.llm.model.register import MODEL_MAPPING, _get_arch_mapping
        from swift.llm.template import TEMPLATE_MAPPING

    model_types, model_names = {}, {}
    for model_type, meta in MODEL_MAPPING.items():
        model_types[model_type] = {
            "template": meta.template,
            "candidate_templates": list(getattr(meta, "candidate_templates", None) or [meta.template]),
            "is_multimodal": bool(meta.is_multimodal),
        }
        for group in meta.model_groups:
            for model in group.models:
                for key in ("ms_model_id", "hf_model_id", "model_path"):
                    value = getattr(model, key)
                    if isinstance(value, str):
                        # first match wins, as in get_matched_model_meta
                        model_names.setdefault(value.rsplit("/", 1)[-1].lower(),
                                               [model_type, getattr(group, "template", None) or meta.template])
    return {
        "model_types": model_types,
        "model_names": model_names,
        "arch_mapping": _get_arch_mapping(),
        "templates": {name: {"markers": _markers(meta)} for name, meta in TEMPLATE_MAPPING.items()},
    }


def parse(command: str, argv: list[str]) -> dict:
    """What ms-swift's parser makes of argv: the `remaining_argv` it would refuse, and the parsed values."""
    parser = build_parser(command)
    try:
        namespace, remaining = parser.parse_known_args(argv)
    except SystemExit as exc:  # argparse already printed its one-line error on stderr
        return {"error": f"argparse exited with {exc.code}", "remaining": None, "values": {}}
    given = {parser._option_string_actions[a.split("=", 1)[0]].dest
             for a in argv if a.split("=", 1)[0] in parser._option_string_actions}
    values = {k: v for k, v in vars(namespace).items() if k in given}
    return {"remaining": remaining, "values": json.loads(json.dumps(values, default=str))}


def match(folder: str) -> dict:
    """ms-swift's own matching for a local model folder (what get_model_info_meta does before loading)."""
    try:
        from swift.model.model_meta import MODEL_MAPPING, get_matched_model_meta, get_matched_model_types
    except ImportError:  # ms-swift 3.x
        from swift.llm.model.register import MODEL_MAPPING, get_matched_model_meta, get_matched_model_types

    folder = os.path.abspath(folder)
    with open(os.path.join(folder, "config.json"), encoding="utf-8") as f:
        config = json.load(f)
    by_name = get_matched_model_meta(folder)
    types = get_matched_model_types(config.get("architectures"))
    return {
        "name_match": None if by_name is None else [by_name.model_type, by_name.template],
        "arch_model_types": types,
        "candidate_templates": {t: list(getattr(MODEL_MAPPING[t], "candidate_templates", None)
                                        or [MODEL_MAPPING[t].template]) for t in types},
    }


def _operations(argv: list[str]) -> list[list[str]]:
    """Split `dump sft + match F + parse sft -- ARGV` into operations (parse's ARGV runs to the end)."""
    ops: list[list[str]] = [[]]
    for n, token in enumerate(argv):
        if token == "--" and ops[-1][:1] == ["parse"]:
            ops[-1] += argv[n:]
            break
        if token == "+":
            ops.append([])
        else:
            ops[-1].append(token)
    return ops


def main(argv: list[str]) -> int:
    # ms-swift logs on import; keep our stdout for the JSON answer only.
    out = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    ops = _operations(argv)
    if any(not op or op[0] not in ("dump", "parse", "match") for op in ops):
        print(__doc__, file=sys.stderr)
        return 2
    start = time.perf_counter()
    result: dict = {}
    for op, *args in ops:
        if op == "dump":
            result.update({item: describe_registry() if item == "registry" else describe_options(item)
                           for item in args})
        elif op == "parse":
            rest = args[1:]
            result.update(parse(args[0], rest[1:] if rest[:1] == ["--"] else rest))
        else:
            result["folders"] = {folder: match(folder) for folder in args}
    result["_timing"] = {"total_s": round(time.perf_counter() - start, 3)}
    json.dump(result, out, ensure_ascii=False)
    out.write("\n")
    out.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
