"""The one command value of a run: which `swift` command, its arguments, its environment, its working folder, its
label, and which `swift` runs it (an ms-swift environment; engine.swift_env). Every edit of a run's command line goes through here (read or set a flag, add the graceful-exit
callback, find the output folder), and so does reading a line pasted from a tutorial
(`CUDA_VISIBLE_DEVICES=0 swift sft --model ...`)."""
from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field, replace
from pathlib import Path

from engine.errors import SwiftdeckError

TRAINING_KINDS = ("sft", "pt", "rlhf")
SWIFT_KINDS = (*TRAINING_KINDS, "infer", "deploy", "export", "eval", "app", "sample", "rollout", "web-ui")
GRACEFUL = "graceful_exit"  # ms-swift 4 callback: on SIGUSR1/SIGTERM/SIGINT save at the next step end, then stop
# (ms-swift 3.x has no --callbacks flag: a stop there interrupts the trainer and saves nothing more)
_ENV_ASSIGNMENT = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)=(.*)", re.S)


class CommandError(SwiftdeckError):
    """A command line swiftdeck cannot read (one line for the user)."""


# ---------------------------------------------------------------- small argv helpers (no option table)

def _norm(flag: str) -> str:
    return "--" + flag[2:].replace("-", "_") if flag.startswith("--") else flag


def _is_flag_token(token: str) -> bool:
    return token.startswith("--") and len(token) > 2


def _occurrences(argv: list[str], flag: str) -> list[tuple[int, int, list[str]]]:
    """(start, end, values) of each occurrence of flag; values run to the next --flag token."""
    want, found, i = _norm(flag), [], 0
    while i < len(argv):
        token = argv[i]
        name, eq, inline = token.partition("=")
        if _is_flag_token(token) and _norm(name) == want:
            if eq:
                found.append((i, i + 1, [inline]))
                i += 1
                continue
            j = i + 1
            while j < len(argv) and not _is_flag_token(argv[j]):
                j += 1
            found.append((i, j, argv[i + 1:j]))
            i = j
        else:
            i += 1
    return found


def flag_values(argv: list[str], flag: str) -> list[str] | None:
    """Values of the last occurrence of flag (`--a_b` and `--a-b` are the same); None if absent."""
    found = _occurrences(argv, flag)
    return found[-1][2] if found else None


def flag_value(argv: list[str], flag: str) -> str | None:
    """First value of the last occurrence of flag; '' for a bare flag; None if absent."""
    values = flag_values(argv, flag)
    return None if values is None else (values[0] if values else "")


def set_flag(argv: list[str], flag: str, values: list[str]) -> list[str]:
    """argv with flag set to values: replaces the first occurrence in place, drops later ones, else appends."""
    found = _occurrences(argv, flag)
    if not found:
        return [*argv, flag, *values]
    out, last = [], 0
    for n, (start, end, _) in enumerate(found):
        out += argv[last:start] + ([flag, *values] if n == 0 else [])
        last = end
    return out + argv[last:]


def _flag_groups(fragment: list[str]) -> list[list[str]]:
    groups: list[list[str]] = []
    for token in fragment:
        if _is_flag_token(token) or not groups:
            groups.append([token])
        else:
            groups[-1].append(token)
    return groups


def pasted_kind(tokens: list[str]) -> str | None:
    """The <kind> of a pasted `[VAR=value ...] swift <kind> ...` line (None without the `swift` prefix)."""
    tokens = [t for t in tokens if t not in ("\\", "\n", "\\\n")]
    tokens = tokens[1:] if tokens[:1] == ["--"] else tokens
    while tokens and not tokens[0].startswith("-") and _ENV_ASSIGNMENT.fullmatch(tokens[0]):
        tokens = tokens[1:]
    if len(tokens) > 1 and (tokens[0] == "swift" or tokens[0].endswith("/swift")):
        return tokens[1]
    return None


# ---------------------------------------------------------------- the command value

def swift_args_of(rec) -> list[str] | None:
    """What followed `swift <kind>` in a run record's argv; None for a record that ran something else (a chat
    worker's `python -m engine.chat_worker`)."""
    argv = list(rec.argv or [])
    return argv[2:] if argv[1:2] == [rec.kind] else None


@dataclass(frozen=True)
class Command:
    kind: str  # sft | pt | rlhf | infer | deploy | export | ...
    args: tuple[str, ...]  # what follows `swift <kind>`
    cwd: str
    env: dict[str, str] = field(default_factory=dict)  # what the run adds to the inherited environment
    label: str = ""
    swift: str = ""  # the `swift` command (path) that runs it; "" = the environment swiftdeck drives now

    # ------------------------------------------------------------ reading

    @classmethod
    def parse(cls, tokens: list[str] | str, *, kind: str = "sft", cwd: str | Path, label: str = "",
              env: dict[str, str] | None = None) -> "Command":
        """A command line as users paste it: `[VAR=value ...] [swift <kind>] --flag value ...`. A leading `--`,
        the `swift <kind>` prefix and backslash line continuations are dropped; the assignments become the
        command's environment. A different `swift <kind>` than expected is refused."""
        if isinstance(tokens, str):
            try:
                tokens = shlex.split(tokens)
            except ValueError as exc:
                raise CommandError(f"cannot read the command line: {exc}") from None
        tokens = [t for t in tokens if t not in ("\\", "\n", "\\\n")]
        tokens = [t.strip("\n") if t.endswith("\n") else t for t in tokens]
        if tokens[:1] == ["--"]:
            tokens = tokens[1:]
        new_env = dict(env or {})
        while tokens and not tokens[0].startswith("-") and (m := _ENV_ASSIGNMENT.fullmatch(tokens[0])):
            new_env[m.group(1)] = m.group(2)
            tokens = tokens[1:]
        swift = ""
        if tokens and (tokens[0] == "swift" or tokens[0].endswith("/swift")):
            swift = tokens[0] if tokens[0] != "swift" else ""
            given = tokens[1] if len(tokens) > 1 else ""
            if given != kind:
                raise CommandError(f"this is `swift {given or '…'}`, not `swift {kind}`" if given else
                                   f"`swift` needs a command: swift {kind} …")
            tokens = tokens[2:]
        elif tokens and tokens[0] == kind and kind in SWIFT_KINDS:
            tokens = tokens[1:]
        if tokens and not tokens[0].startswith("-"):
            raise CommandError(f"unexpected {tokens[0]!r} before the first --flag (paste the whole "
                               f"`swift {kind} ...` line, or only its --flags)")
        return cls(kind, tuple(tokens), str(Path(cwd).resolve()), new_env, label, swift)

    @classmethod
    def of_record(cls, rec) -> "Command":
        """The command a registry record ran (argv = [swift, kind, *args] for ms-swift commands), with the same
        `swift` (so a resume or relaunch runs in the same ms-swift environment)."""
        args = swift_args_of(rec)
        if args is not None:
            return cls(rec.kind, tuple(args), rec.cwd, dict(rec.env), rec.label, rec.argv[0])
        return cls(rec.kind, tuple(rec.argv), rec.cwd, dict(rec.env), rec.label)

    def flag(self, name: str) -> str | None:
        return flag_value(list(self.args), name)

    def flags(self, name: str) -> list[str] | None:
        return flag_values(list(self.args), name)

    @property
    def is_training(self) -> bool:
        return self.kind in TRAINING_KINDS

    @property
    def output_dir(self) -> str:
        """The --output_dir, absolute (ms-swift's default: ./output)."""
        return str((Path(self.cwd) / (self.flag("--output_dir") or "output")).resolve())

    # ------------------------------------------------------------ changing (each returns a new value)

    def with_flag(self, name: str, values: list[str]) -> "Command":
        return replace(self, args=tuple(set_flag(list(self.args), name, list(values))))

    def with_args(self, args: list[str]) -> "Command":
        return replace(self, args=tuple(args))

    def with_label(self, label: str) -> "Command":
        return replace(self, label=label)

    def with_swift(self, swift: str) -> "Command":
        return replace(self, swift=swift)

    def with_extra(self, tokens: list[str]) -> "Command":
        """Extra `--flag value ...` tokens; each replaces the same flag when present (the extra ones win)."""
        cmd = self
        for group in _flag_groups(tokens):
            if not _is_flag_token(group[0]):
                raise CommandError(f"extra arguments must start with a --flag, not {group[0]!r}")
            name, eq, inline = group[0].partition("=")
            cmd = cmd.with_flag(name, [inline] if eq else group[1:])
        return cmd

    def with_graceful_exit(self) -> "Command":
        """Add ms-swift's `graceful_exit` callback so that a stop saves a checkpoint at the next step."""
        values = self.flags("--callbacks")
        if values is None:
            return replace(self, args=(*self.args, "--callbacks", GRACEFUL))
        return self if GRACEFUL in values else self.with_flag("--callbacks", [*values, GRACEFUL])

    # ------------------------------------------------------------ writing

    def argv(self, swift: str | None = None) -> list[str]:
        return [swift or self.swift or "swift", self.kind, *self.args]

    def display(self) -> str:
        """The line a user could paste into a shell to run the same thing (with the path of its `swift` when that
        is another environment's than swiftdeck's own)."""
        from engine.swift_env import is_own_swift

        env = " ".join(f"{k}={shlex.quote(v)}" for k, v in sorted(self.env.items()))
        swift = shlex.quote(self.swift) if self.swift and not is_own_swift(self.swift) else "swift"
        return " ".join(x for x in (env, f"{swift} {self.kind}", shlex.join(self.args)) if x)
