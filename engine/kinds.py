"""Training kinds beyond `swift sft`: what `swift pt` and each `swift rlhf --rlhf_type` needs (dataset columns,
Python packages) and logs (metric names), as ms-swift 4.6 and trl write them. Plain data and small functions (no
swift import): the launch check, `swiftdeck runs|metrics|checkpoints` and the loss pane read it from here.

Metric names (logging.jsonl / console dicts), from swift/rlhf_trainers and trl 0.29:
- DPO, ORPO, CPO/SimPO: rewards/chosen, rewards/rejected, rewards/accuracies, rewards/margins, logps/chosen,
  logps/rejected (ORPO and CPO add nll_loss, log_odds_*).
- KTO: rewards/chosen, rewards/rejected, rewards/margins, logps/chosen, logps/rejected, kl.
- GRPO: reward, reward_std, rewards/<Func>/mean|std (one per reward function, by class name: Format,
  RepetitionPenalty, ...), kl, completions/mean_length|min_length|max_length|clipped_ratio, clip_ratio/low_mean|
  high_mean|region_mean; with --log_completions the rows go to <run folder>/completions.jsonl.
"""
from __future__ import annotations

import importlib.util
import re

RLHF_TYPES = ("dpo", "orpo", "simpo", "kto", "cpo", "rm", "ppo", "grpo", "gkd")  # RLHFArguments.rlhf_type
DEFAULT_RLHF_TYPE = "dpo"

# The columns a dataset row needs besides its conversation (swift/dataset/preprocessor/core.py standard keys).
PAIRED = ("dpo", "orpo", "simpo", "cpo", "rm")  # a chosen answer (the conversation's last) and a rejected one
REJECTED_KEYS = ("rejected_response", "rejected_messages")
UNPAIRED = ("kto",)  # one answer per row with a `label`: true (desirable) or false (undesirable)
PROMPT_ONLY = ("grpo", "gkd", "ppo")  # the model writes the answers; a row may end with the user's turn

# Packages a kind imports that `pip install ms-swift` does not bring (checked without importing them).
PACKAGES = {"grpo": ("msgspec",), "gkd": ("msgspec",)}  # swift/rlhf_trainers/utils.py: from msgspec import field
REWARD_PACKAGES = {"accuracy": ("math_verify",), "cosine": ("math_verify",)}  # swift/rewards/orm.py MathAccuracy

# Chart families: which logged keys tell which kind of run it is.
FAMILIES = ("sft", "preference", "kto", "grpo")
HEADLINE = {  # what `swiftdeck attach|train --wait` prints per step, besides loss
    "sft": ("grad_norm", "learning_rate", "token_acc", "eval_loss"),
    "preference": ("rewards/margins", "rewards/accuracies", "rewards/chosen", "rewards/rejected"),
    "kto": ("rewards/margins", "kl", "rewards/chosen", "rewards/rejected"),
    "grpo": ("reward", "reward_std", "kl", "completions/mean_length"),
}
_REWARD_FUNC = re.compile(r"rewards/(.+)/mean")


def missing_packages(names) -> list[str]:
    """The names among `names` that this Python cannot import (a find_spec, never an import)."""
    out = []
    for name in names:
        try:
            found = importlib.util.find_spec(name) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            out.append(name)
    return out


# ---------------------------------------------------------------- naming a run's kind

def label(command: str, rlhf_type: str | None = None, loss_type: str | None = None) -> str:
    """'sft', 'pt', 'rlhf/dpo', 'rlhf/grpo', ...; other commands as they are ('deploy')."""
    if command != "rlhf":
        return command
    kind = rlhf_type or DEFAULT_RLHF_TYPE
    if kind == "cpo" and loss_type == "simpo":  # ms-swift stores --rlhf_type simpo as cpo + loss_type simpo
        kind = "simpo"
    return f"rlhf/{kind}"


def label_of_argv(command: str, args: list[str]) -> str:
    from engine.command import flag_value

    return label(command, flag_value(args, "--rlhf_type") if command == "rlhf" else None)


def label_of_args_json(args: dict) -> str | None:
    """A run folder's kind from its args.json (None when it has none): rlhf runs record rlhf_type; `swift pt`
    differs from sft by use_chat_template false."""
    if not args:
        return None
    if args.get("rlhf_type"):
        loss = args.get("loss_type")
        return label("rlhf", str(args["rlhf_type"]), loss if isinstance(loss, str) else None)
    if args.get("use_chat_template") is False:
        return "pt"
    return "sft"


# ---------------------------------------------------------------- metrics

def family(keys) -> str:
    """Which chart family a logged step belongs to, from its keys."""
    keys = set(keys)
    if "reward" in keys or "reward_std" in keys or any(_REWARD_FUNC.fullmatch(k) for k in keys):
        return "grpo"
    if "rewards/chosen" in keys or "rewards/margins" in keys:
        return "kto" if "kl" in keys and "rewards/accuracies" not in keys else "preference"
    return "sft"


def reward_functions(keys) -> list[str]:
    """GRPO's reward functions as logged (rewards/<Name>/mean), in the order given."""
    return [m.group(1) for k in keys if (m := _REWARD_FUNC.fullmatch(k))]


# ---------------------------------------------------------------- dataset rows

def needs_answer(rlhf_type: str | None) -> bool:
    """Whether each dataset row must end with the assistant's answer (every kind but the generating ones)."""
    return rlhf_type not in PROMPT_ONLY


def row_problems(row: dict, rlhf_type: str | None, answer: str | None) -> list[tuple[str, str, str]]:
    """(level, code, message) for the columns `--rlhf_type` needs in one dataset row; `answer` is the row's chosen
    answer (the conversation's last message) when known."""
    if rlhf_type in PAIRED:
        key = next((k for k in REJECTED_KEYS if row.get(k) not in (None, "", [])), None)
        if key is None:
            hint = " (ms-swift 4.6 reads 'rejected_response', not 'rejected')" if "rejected" in row else ""
            return [("error", "missing_field", f"missing field 'rejected_response' (the rejected answer): "
                                               f"--rlhf_type {rlhf_type} trains on preference pairs{hint}")]
        value = row[key]
        if key == "rejected_response" and not isinstance(value, str):
            return [("error", "not_a_string", f"field 'rejected_response' must be a string, got "
                                              f"{type(value).__name__}")]
        if key == "rejected_response" and answer is not None and value == answer:
            return [("error", "rejected_is_chosen", "rejected_response is the chosen answer itself (ms-swift "
                                                    "stops with \"ValueError: rejected_response: ...\")")]
    elif rlhf_type in UNPAIRED:
        value = row.get("label")
        if value is None:
            return [("error", "missing_field", "missing field 'label' (true for a desirable answer, false for an "
                                               "undesirable one): --rlhf_type kto needs it")]
        if value not in (True, False) or isinstance(value, float):
            return [("error", "bad_label", f"field 'label' must be true or false (or 1/0), got {value!r}")]
    return []
