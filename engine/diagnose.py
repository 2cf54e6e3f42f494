"""Failure classification for ms-swift console logs: a stable kind, a one-line summary, concrete remedies.

    diagnose(text, exit_code=..., command="sft", args=...) -> Diagnosis
    diagnose_file(path, ...)   reads only a bounded head + tail of a huge console.log
    diagnose_run(rec)          a recorded run: stopped by the user, finished, or why it failed
    match_line(line)           one precompiled regex: the kind of a single fatal console line, else None

Every text of a Diagnosis (summary, remedies, evidence, details) is made printable (engine.textsafe): a log may
hold escape sequences or binary junk, and none of it may act on the terminal that shows the diagnosis.

Built from real ms-swift 4.6 and 3.12.6 output (tests/data/failures/, recorded on CPU, and the recorded H200 OOM in
tests/data/ms-swift-4.6) and from the error texts in both versions' source (engine.diagnosis.catalog, shown as a
table in docs/DIAGNOSIS.md). The parts live in engine.diagnosis: evidence (reading the log), catalog (messages ->
kinds), kinds and tools (the newer kinds, torchrun's signals).

Console text is normalised first: `\\r`-glued tqdm redraws are split, ANSI colours and torchrun's `[rankN]:` prefixes
are removed. Tracebacks that ms-swift only logs and survives (`[INFO:swift] Traceback ...` followed by "the data will
be deleted") are not taken for the fatal error. Evidence order: the last exception of a traceback; else an error line
of the tail without one; else an earlier decisive line (a filtered dataset length of 0, an OOM line, torchrun's
summary); else the exit code; `no_failure` when nothing points to a failure.
"""
from __future__ import annotations

import ast
import os
import re
from pathlib import Path

from engine.diagnosis.evidence import (
    _EVIDENCE_CHARS, _FRAME, _WRAPPERS, _Ctx, _Exc, _argv_to_dict, _clean_lines, _fatal_chain, _int, _log_args,
    _parse_tracebacks, _path_like,
)
from engine.diagnosis import catalog, evidence, kinds, tools
from engine.diagnosis.memory import (  # noqa: F401 - full_volume and DISK_FULL_FREE_BYTES: engine.diagnose API
    DISK_FULL_FREE_BYTES, _cpu_oom, _disk_full, _oom, full_volume,
)
from engine.diagnosis.result import Diagnosis
from engine.textsafe import printable

KINDS = (
    "cuda_oom", "cpu_oom", "dataset_empty_after_filter", "unknown_argument", "model_type_ambiguous",
    "template_ambiguous", "dataset_not_found", "dataset_invalid", "model_not_found", "tokenizer_load_failed",
    "not_an_adapter", "nccl_error", "killed_by_signal", "disk_full", "resume_failed", "cpu_bf16_unsupported",
    "address_in_use", "invalid_argument", "missing_package", "model_type_unknown", "template_unknown",
    "reward_function_not_found", "vllm_adapter_failed", "deepspeed_error", "unknown", "no_failure", "stopped_by_user",
)
HEAD_BYTES = 256 * 1024  # diagnose_file: the head holds `run sh:`, output_dir and the args block
TAIL_BYTES = 512 * 1024  # ... and the tail the traceback

# ---- single-line fatal signs (the live supervisor calls match_line on every console line) --------------
_SIGNS = {
    "cuda_oom": r"CUDA out of memory|OutOfMemoryError|CUDA error: out of memory|CUBLAS_STATUS_ALLOC_FAILED"
                r"|HIP out of memory",
    "cpu_oom": r"DefaultCPUAllocator: can't allocate memory|(?<![\w.])MemoryError\b|std::bad_alloc",
    "disk_full": r"No space left on device|\[Errno 28\]|StorageFull|Disk quota exceeded|\[Errno 122\]",
    "nccl_error": r"NCCL error|DistBackendError|nccl(?:UnhandledCuda|System|Internal|InvalidUsage|Remote)Error"
                  r"|Watchdog caught collective operation timeout|NCCL communicator was aborted",
    "unknown_argument": r"Error: remaining_argv: \[",
    "model_type_ambiguous": r"Failed to automatically match `model_type`",
    "template_ambiguous": r"Failed to automatically match `template_type`",
    "cpu_bf16_unsupported": r"doesn't support bf16/gpu",
    "not_an_adapter": r"is not an adapter, please try using `--model`",
    "dataset_not_found": r"The local path does not exist, dataset_id:",
    "address_in_use": r"\[Errno 98\]|[Aa]ddress already in use|EADDRINUSE",
}
_LINE_RE = re.compile("|".join(f"(?P<{k}>{v})" for k, v in _SIGNS.items()))
# Not a line sign: ms-swift also empties the dataset when every row fails preprocessing (-> dataset_invalid).
_EMPTY_AFTER_FILTER = r"filtered dataset length: 0\b"


# Every sign above contains one of these: plain `in` tests skip the regex for ordinary lines (~1 us a line).
_ANCHORS = ("emory", "ALLOC_FAILED", "bad_alloc", "No space left", "Errno 28", "StorageFull", "Disk quota",
            "Errno 122", "NCCL", "ccl", "DistBackendError", "Watchdog", "remaining_argv", "automatically match",
            "bf16/gpu", "not an adapter", "local path does not exist", "Errno 98", "already in use", "EADDRINUSE")


def match_line(line: str) -> str | None:
    """The diagnosis kind of one console line when the line alone is a fatal sign, else None (cheap)."""
    for anchor in _ANCHORS:
        if anchor in line:
            m = _LINE_RE.search(line)
            return m.lastgroup if m else None
    return None


# ---- the classifier ---------------------------------------------------------------------------------------

def _sign_lines(ctx: _Ctx, kind: str, limit: int = 3) -> list[str]:
    rx = re.compile(_SIGNS[kind])
    return list(dict.fromkeys(ln for ln in ctx.lines if rx.search(ln)))[:limit]


def _nccl(ctx: _Ctx) -> Diagnosis:
    text = ctx.chain_text + "\n" + "\n".join(ctx.lines[-400:])
    d: dict = {}
    if m := re.search(r"WorkNCCL\(SeqNum=(\d+), OpType=(\w+).*?Timeout\(ms\)=(\d+)\) ran for (\d+) milliseconds", text):
        d.update(timeout=True, op=m[2], timeout_ms=int(m[3]), seq=int(m[1]))
    else:
        d["timeout"] = bool(re.search(r"collective operation timeout|timed out|Timeout", text))
    if m := re.search(r"Last error:\s*\n?\s*(.+)", text):
        d["reason"] = m[1].strip()
    if m := re.search(r"NCCL version ([\d.]+)", text):
        d["nccl_version"] = m[1]
    summary = "NCCL (multi-GPU communication) failed"
    if d.get("op"):
        summary += f": {d['op']} timed out after {d['timeout_ms'] / 1000:g} s (a rank never joined it)"
    elif d["timeout"]:
        summary += ": a collective operation timed out"
    elif d.get("reason"):
        summary += f": {d['reason']}"
    remedies = []
    if "Duplicate GPU" in d.get("reason", ""):
        remedies.append("two ranks use the same GPU: give each rank its own (no single-GPU CUDA_VISIBLE_DEVICES "
                        "with NPROC_PER_NODE > 1; each rank uses cuda:LOCAL_RANK)")
    if d["timeout"]:
        remedies.append("one rank was stuck or much slower (dataset preprocessing, saving, an error on another "
                        "rank): look above for that rank's error; if it is just slow, raise --ddp_timeout (seconds)")
    remedies += ["rerun with NCCL_DEBUG=INFO to see which rank and link failed",
                 "on machines without working GPU peer-to-peer or InfiniBand: NCCL_P2P_DISABLE=1 / NCCL_IB_DISABLE=1"]
    return Diagnosis("nccl_error", summary, remedies, ctx.evidence(*_sign_lines(ctx, "nccl_error")), d)


def _address_in_use(ctx: _Ctx) -> Diagnosis:
    """A server (uvicorn in swift deploy/app) or torchrun's rendezvous could not bind its port: another process
    holds it. ms-swift checks --port when it parses its arguments, but a server that starts meanwhile (two deploys
    at once) takes it before uvicorn binds."""
    lines = _sign_lines(ctx, "address_in_use")
    text = "\n".join(lines) + "\n" + ctx.chain_text
    m = re.search(r"bind on address \('([^']*)', (\d+)", text) or re.search(r"()port:? (\d+)", text)
    host, port = (m[1] or None, int(m[2])) if m else (None, None)
    where = f"{host}:{port}" if host and port else f"port {port}" if port else "the port"
    server = "bind on address" in text or ctx.command in ("deploy", "app", "rollout")
    d = {"host": host, "port": port, "server": server}
    if server:
        summary = (f"{where}: address already in use (another server holds it, or a second deploy started at the "
                   "same time), so the server could not start")
        not_this = f" (not {port})" if port else ""
        listening = f"ss -ltnp 'sport = :{port}'" if port else "ss -ltnp"
        remedies = [f"deploy again on another port: leave --port out and swiftdeck picks a free one, or pass a free "
                    f"one{not_this}",
                    "or stop the server that holds it: `swiftdeck runs` lists swiftdeck's deploys (swiftdeck stop "
                    f"RUN); `{listening}` shows any process listening"]
    else:
        summary = (f"MASTER_PORT {port or ''}: address already in use: torchrun's rendezvous port is held by another "
                   "process (another multi-GPU run on this machine?)").replace("PORT :", "PORT:")
        remedies = ["start again with MASTER_PORT set to a free port (an environment variable; torchrun's default "
                    "is 29500)",
                    "or stop the other run that uses it: `swiftdeck runs` lists swiftdeck's runs"]
    return Diagnosis("address_in_use", summary, remedies, ctx.evidence(*lines), d)


def _known_flags(command: str) -> set[str]:
    """Flags of `swift <command>` from engine.swift_args' cache, only if already cached (never spawns)."""
    try:
        from engine import swift_args
        if (swift_args.cache_dir() / f"{command}.v{swift_args.SCHEMA}.json").is_file():
            return swift_args.valid_flags(command)
    except Exception:  # noqa: BLE001 - suggestions are optional
        pass
    return set()


def _renames() -> dict[str, str]:
    try:
        from engine.swift_args import RENAMES
        return dict(RENAMES)
    except Exception:  # noqa: BLE001
        return {"--train_type": "--tuner_type", "--sft_type": "--tuner_type"}


def _unknown_argument(ctx: _Ctx) -> Diagnosis:
    m = re.search(r"remaining_argv: (\[.*\])", ctx.chain_text)
    try:
        remaining = [str(x) for x in ast.literal_eval(m[1])] if m else []
    except (ValueError, SyntaxError):
        remaining = re.findall(r"'([^']*)'", m[1]) if m else []
    flags = [t for t in remaining if t.startswith("-")] or remaining
    renames, known = _renames(), None
    remedies = []
    older = {"--tuner_type": "--train_type"}  # a 4.x name refused: the swift is 3.x
    for flag in flags:
        if flag in renames:
            remedies.append(f"use {renames[flag]} instead of {flag} (renamed in ms-swift 4.x)")
            continue
        if flag in older:
            remedies.append(f"use {older[flag]} instead of {flag} (ms-swift 3.x: {flag} is the 4.x name)")
            continue
        if known is None:
            known = _known_flags(ctx.command)
        import difflib
        close = difflib.get_close_matches(flag, sorted(known), n=1, cutoff=0.75) if flag.startswith("--") else []
        remedies.append(f"{flag}: did you mean {close[0]}?" if close
                        else f"remove {flag}: `swift {ctx.command}` has no such option")
    summary = f"swift {ctx.command} does not accept " + (", ".join(flags) if flags else "some arguments")
    return Diagnosis("unknown_argument", summary, remedies, ctx.evidence(),
                     {"remaining_argv": remaining, "flags": flags})


_ARGPARSE = r"^\S+: error: (?:argument (?P<flag>\S+?)(?:/\S+)?: (?P<why>.+)|unrecognized arguments: (?P<extra>.+))$"


def _bad_argument_value(ctx: _Ctx, m: re.Match) -> Diagnosis:
    """argparse refused the command line (usage + `error:` line, exit 2): a bad value or unknown flag."""
    if m["extra"]:
        flags = m["extra"].split()
        return Diagnosis("unknown_argument", f"swift {ctx.command} does not accept {m['extra']}",
                         [f"remove {f}" for f in flags if f.startswith("-")], m.string, {"flags": flags})
    choice = re.search(r"invalid choice: '([^']*)' \(choose from (.+)\)", m["why"])
    return Diagnosis("invalid_argument", f"swift {ctx.command} refused {m['flag']}: {m['why']}",
                     [f"{m['flag']}: use one of {choice[2]} (not '{choice[1]}')" if choice
                      else f"give {m['flag']} a valid value ({m['why']})"], m.string,
                     {"flags": [m["flag"]], "reason": m["why"]})


def _candidates(text: str) -> list[str]:
    m = re.search(r"(?:Multiple possible types found|Recommended `model_types` include): (\[[^\]]*\])", text)
    try:
        return [str(x) for x in ast.literal_eval(m[1])] if m else []
    except (ValueError, SyntaxError):
        return []


def _ambiguous(ctx: _Ctx, what: str) -> Diagnosis:
    text = ctx.chain_text
    cands = _candidates(text)
    m = re.search(r"for `([^`]*)`", text)
    folder = m[1] if m else _path_like(ctx.arg("model"))
    if what == "model_type":
        flag, pick = "--model_type", next((c for c in cands if c in ("qwen2", "qwen2_5", "llama")), None)
    else:
        flag = "--template"
        mt = str(ctx.arg("model_type") or "")
        pick = "qwen2_5" if mt.startswith("qwen2") and "qwen2_5" in cands else (mt if mt in cands else None)
    pick = pick or (cands[0] if cands else None)
    summary = (f"ms-swift could not choose the {what.replace('_type', ' type')} for {folder}"
               + (f": several match ({', '.join(cands)})" if cands else ""))
    remedies = [f"add {flag} {pick}" + (f" (or another of: {', '.join(c for c in cands if c != pick)})"
                                        if len(cands) > 1 else "") if pick else f"add {flag}"]
    if what == "model_type":
        remedies.append("a folder named like the original model (e.g. Qwen2.5-7B-Instruct) is matched by name")
    kind = "model_type_ambiguous" if what == "model_type" else "template_ambiguous"
    return Diagnosis(kind, summary, remedies, ctx.evidence(), {"candidates": cands, "model": folder,
                                                                "flag": flag, "suggested": pick})


def _bf16(ctx: _Ctx) -> Diagnosis:
    return Diagnosis(
        "cpu_bf16_unsupported", "bf16 was asked for but there is no usable GPU (ms-swift refuses bf16 on CPU "
        "unless --use_cpu true)",
        ["--torch_dtype float32 (on CPU plain fp32 is also much faster than bf16 without AVX512-BF16/AMX)",
         "or --use_cpu true to keep bf16 on the CPU",
         "if a GPU was expected: torch sees none (check nvidia-smi, CUDA_VISIBLE_DEVICES, a CPU-only torch build)"],
        ctx.evidence(), {"torch_dtype": ctx.arg("torch_dtype")})


def _empty_after_filter(ctx: _Ctx) -> Diagnosis:
    m = ctx.find(r"Dataset filtered, origin length: (\d+), filtered dataset length: (\d+)")
    origin = int(m[1]) if m else None
    ml = _int(ctx.arg("max_length"))
    dataset = _path_like(ctx.arg("dataset"))
    summary = (f"all {origin} rows" if origin is not None else "every row") + " are longer than " + (
        f"--max_length {ml} tokens" if ml else "--max_length") + " and were dropped, so nothing is left to train on"
    lm = ctx.find(r"Dataset Token Length: [\d.]+±[\d.]+, min=([\d.]+), max=([\d.]+)")
    longest = int(float(lm[2])) if lm else None
    remedies = []
    if longest:
        remedies.append(f"--max_length {longest} (the longest row has {longest} tokens)")
    elif ml:
        remedies.append(f"a larger --max_length, e.g. --max_length {max(2048, ml * 4)} "
                        f"(see each row's token count with: swiftdeck check-dataset {dataset or 'FILE'}"
                        + (f" --model {ctx.arg('model')})" if ctx.arg("model") else ")"))
    else:
        remedies.append("a larger --max_length")
    remedies.append("or --truncation_strategy right (truncate long rows instead of dropping them)")
    d = {"rows_before": origin, "rows_after": 0, "dropped": origin, "max_length": ml, "dataset": dataset}
    return Diagnosis("dataset_empty_after_filter", summary, remedies,
                     ctx.evidence(m.string if m else ""), d)


_VIA_WRAPPER = (2, 6, 9, 11, 15)  # the swift wrapper exits with the child's returncode -sig, i.e. 256 - sig


def _signal_of(code: int | None) -> tuple[str, int] | None:
    """(who, signal number) for the exit code of a signalled process (negative: Popen's returncode)."""
    if code is None or code in (0, 1, 2):
        return None
    if code < 0:
        return "the swift process was", -code
    if 256 - code in _VIA_WRAPPER:
        return "the trainer (child of the swift wrapper) was", 256 - code
    if code - 128 in _VIA_WRAPPER:  # a shell reports 128 + signal (137 = SIGKILL)
        return "the process was", code - 128
    return None


def _killed(ctx: _Ctx, how: str, sig: int, torchrun: dict | None = None) -> Diagnosis:
    name = tools.signal_name(sig)
    cause, advice = tools.SIGNAL_CAUSES.get(sig, ("", []))
    summary = f"{how} killed by {name}" + (f" {cause}" if cause else "")
    ckpt = ctx.find(r"(?:Saving model checkpoint to|last_model_checkpoint:) (\S+)")
    ckpt_path = ckpt[1] if ckpt and ckpt[1] != "None" else None
    remedies = list(advice)
    if ckpt_path:
        remedies.append(f"resume with --resume_from_checkpoint {ckpt_path}")
    else:
        remedies.append("no checkpoint was saved before it stopped: rerun (lower --save_steps to save earlier)")
    last = [] if ctx.chain else [ln for ln in ctx.lines[-3:] if ln]  # no traceback: what it was doing
    if torchrun:
        last = [f"torchrun: rank {torchrun['rank'] if torchrun['rank'] is not None else '?'} exitcode {torchrun['exit_code']} (pid {torchrun['pid']})"
                + (f": {torchrun['traceback']}" if torchrun.get("traceback") else "")]
    return Diagnosis("killed_by_signal", summary, remedies, ctx.evidence(*last),
                     {"signal": sig, "signal_name": name, "exit_code": ctx.exit_code, "checkpoint": ckpt_path,
                      **({"rank": torchrun["rank"]} if torchrun else {})})


def _quoted_path(text: str) -> str | None:
    m = re.search(r"path: '([^']+)'|dataset_id: `([^`]+)`|`([^`]+)` is not an adapter", text)
    return next((g for g in m.groups() if g), None) if m else None


def _not_an_adapter(ctx: _Ctx, path: str | None) -> Diagnosis:
    missing = "not found" in ctx.chain_text
    summary = (f"--adapters {path or ''} " + ("does not exist" if missing else
               "is not a LoRA adapter folder (no adapter_config.json)")).replace("  ", " ")
    remedies = ["point --adapters at a checkpoint folder (…/vN-…/checkpoint-N) that holds adapter_config.json"]
    if not missing:
        remedies.insert(0, f"if {path or 'it'} is a merged or full-parameter model, pass it with --model "
                           "instead of --adapters")
    return Diagnosis("not_an_adapter", summary, remedies, ctx.evidence(), {"path": path, "missing": missing})


_NETWORK = r"NetworkError|Connection|NameResolution|Max retries exceeded|timed out|DeadlineError|\[E10(?:01|20)\]"


def _model_not_found(ctx: _Ctx) -> Diagnosis:
    text = ctx.chain_text
    path = _quoted_path(text)
    dl = ctx.find(r"Downloading the model from (\w+ Hub|\S+), model_id: (\S+)")
    model = path or (dl[2] if dl else None) or _path_like(ctx.arg("model"))
    network = bool(re.search(_NETWORK, text))
    d = {"model": model, "network": network}
    if path:
        summary = f"the model folder {path} does not exist"
        remedies = ["pass an existing folder to --model (an absolute path; args.json stores it as typed)"]
    elif network:
        summary = f"could not download the model {model} (no connection to the model hub)"
        remedies = [f"download {model} where there is network and pass its local folder to --model",
                    "or --use_hf true / a hub mirror if only one hub is blocked",
                    "a path that does not exist is treated as a hub id: check the spelling of a local path"]
    else:
        summary = f"the model {model} was not found (locally or on the hub)"
        remedies = ["check the model id or pass an existing local folder to --model"]
    return Diagnosis("model_not_found", summary, remedies, ctx.evidence(), d)


def _dataset_not_found(ctx: _Ctx) -> Diagnosis:
    path = _quoted_path(ctx.chain_text)
    dl = ctx.find(r"Downloading the dataset from \w+, dataset_id: (\S+)")
    failed = re.search(r"Dataset (\S+) load failed", ctx.chain_text)  # ms-swift's logged error, pasted alone
    ds = path or (dl[1] if dl else None) or _path_like(ctx.arg("dataset")) or (failed[1] if failed else None)
    network = not path and bool(re.search(_NETWORK, ctx.chain_text))
    if path:
        summary = f"the dataset file {ds} does not exist"
    elif network:
        summary = f"could not download the dataset {ds} from the hub (no connection): no local file has that name"
    else:
        summary = f"the dataset {ds} was not found (locally or on the hub)"
    remedies = [f"check that {ds} exists; pass an absolute path to a .json/.jsonl/.csv file",
                "a path that does not exist is treated as a hub dataset id and downloaded"]
    return Diagnosis("dataset_not_found", summary, remedies, ctx.evidence(), {"dataset": ds, "network": network})


def _dataset_invalid(ctx: _Ctx, row_error: str = "") -> Diagnosis:
    ds = _path_like(ctx.arg("dataset"))
    text = ctx.chain_text + "\n" + row_error
    m = re.search(r"at position (\d+)|line (\d+) column (\d+)", text)
    reason = next((e.message.splitlines()[0] for e in ctx.chain
                   if e.message and "An error occurred while generating" not in e.message), "")
    summary = f"the dataset {ds or ''} could not be read".replace("  ", " ") + (f": {reason}" if reason else "")
    remedies = [f"swiftdeck check-dataset {ds or 'FILE'} shows the line and column of each problem",
                "a .json file must hold one list of objects; a .jsonl file one object per line, UTF-8 without BOM"]
    d = {"dataset": ds, "reason": reason}
    if col := re.search(r"Column '?(\w+)'? (?:not in the dataset|doesn't exist)", text):
        rtype = ctx.arg("rlhf_type")
        summary = (f"the dataset {ds or ''} has no {col[1]} column".replace("  ", " ")
                   + (f", which --rlhf_type {rtype} needs" if rtype else ""))
        remedies = ["KTO needs a label per row (true: a good response, false: a bad one)" if col[1] == "label"
                    else f"add a {col[1]} field to every row",
                    f"swiftdeck check-dataset {ds or 'FILE'}" + (f" --rlhf-type {rtype}" if rtype else "")
                    + " names the rows without it"]
        d["missing"] = col[1]
    elif re.search(r"rejected_response|inputs\.rejected", text):
        rtype = ctx.arg("rlhf_type") or "dpo"
        summary = f"the dataset {ds or ''} has no usable rejected_response for --rlhf_type {rtype}".replace("  ", " ")
        remedies = [f"--rlhf_type {rtype} needs preference pairs: each row needs a rejected_response (a worse answer "
                    "than the response), different from the response",
                    f"swiftdeck check-dataset {ds or 'FILE'} --rlhf-type {rtype} names the rows without it "
                    "(KTO instead needs a label, true/false, per row)"]
        d["missing"] = "rejected_response"
    if m and m[1]:
        d["position"] = int(m[1])
    return Diagnosis("dataset_invalid", summary, remedies, ctx.evidence(), d)


def _rows_rejected(ctx: _Ctx, rejected: list[_Exc]) -> Diagnosis:
    """ms-swift logged a preprocessing error per row, deleted the rows, then failed on the empty dataset."""
    if re.search(r"rejected_response|inputs\.rejected", rejected[0].text()):
        return _dataset_invalid(ctx, rejected[0].text())  # a preference dataset without its rejected answers
    m = ctx.find(r"Dataset filtered, origin length: (\d+), filtered dataset length: 0")
    ds = _path_like(ctx.arg("dataset"))
    reason = rejected[0].text().splitlines()[0]
    summary = (f"ms-swift rejected every row of {ds or 'the dataset'}" + (f" ({m[1]} rows)" if m else "")
               + f" while converting it: {reason}")
    remedies = ["each row needs fields ms-swift recognises: instruction/input/output (alpaca), query/response, "
                "or messages [{role, content}, ...]",
                f"swiftdeck check-dataset {ds or 'FILE'} names the rows and fields that are wrong"]
    ev = ctx.evidence(*[e.text() for e in rejected[:1]], m.string if m else "")
    return Diagnosis("dataset_invalid", summary, remedies, ev,
                     {"dataset": ds, "reason": reason, "rows_before": int(m[1]) if m else None, "rows_after": 0})


def _tokenizer(ctx: _Ctx) -> Diagnosis:
    model = _path_like(ctx.arg("model"))
    reason = ctx.chain[-1].message.splitlines()[0] if ctx.chain and ctx.chain[-1].message else ""
    return Diagnosis(
        "tokenizer_load_failed", f"the tokenizer of {model or 'the model'} could not be loaded"
        + (f": {reason}" if reason else ""),
        [f"check the tokenizer files in {model or 'the model folder'} (tokenizer.json, tokenizer_config.json, "
         "vocab/merges): re-copy them from the original model",
         "a tokenizer saved by a newer transformers may need a newer transformers here"],
        ctx.evidence(), {"model": model})


def _resume(ctx: _Ctx) -> Diagnosis:
    ck = _path_like(ctx.arg("resume_from_checkpoint"))
    missing = bool(re.search(r"FileNotFoundError|not found|No such file|does not exist", ctx.chain_text))
    mismatch = bool(re.search(r"size mismatch|Missing key|Unexpected key|doesn't match|does not match",
                              ctx.chain_text))
    corrupt = bool(re.search(r"corrupt|failed reading zip archive|unexpected EOF|invalid load key|"
                             r"incomplete metadata|Error while deserializing", ctx.chain_text))
    part = ("optimizer/scheduler state (optimizer.pt, scheduler.pt)" if _in(ctx.frames, "_load_optimizer_and_scheduler")
            else "RNG state (rng_state.pth)" if _in(ctx.frames, "_load_rng_state")
            else "weights" if _in(ctx.frames, "_load_from_checkpoint") else None)
    reason = ctx.chain[-1].message.splitlines()[0] if ctx.chain and ctx.chain[-1].message else ""
    reason = reason if len(reason) <= 160 else reason[:157] + "..."
    summary = f"resuming from {ck or 'the checkpoint'} failed" + (
        f": its {part} could not be read" if part and corrupt else f": {reason}" if reason else "")
    remedies = []
    if missing:
        remedies.append("pass an existing checkpoint folder (…/vN-…/checkpoint-N) to --resume_from_checkpoint")
    if corrupt:
        remedies.append("a file of the checkpoint is damaged (an interrupted save or copy?): resume from the "
                        "previous checkpoint-N")
    if mismatch:
        remedies.append("resume with the same model, --tuner_type, --lora_rank/--lora_alpha and --target_modules "
                        "as the run that wrote the checkpoint (see its args.json)")
    if corrupt or mismatch or not missing:
        remedies.append("or keep only the adapter weights and restart the optimizer: --resume_only_model true")
    return Diagnosis("resume_failed", summary, remedies, ctx.evidence(),
                     {"checkpoint": ck, "missing": missing, "mismatch": mismatch, "corrupt": corrupt, "part": part})


def _unknown(ctx: _Ctx) -> Diagnosis:
    if ctx.chain:
        last = ctx.chain[-1]
        first = last.message.splitlines()[0] if last.message else ""
        summary = f"{last.short_type}: {first}"[:300]
        block = ctx.lines[last.start:last.index + 1 + last.message.count("\n")]
        evidence = "\n".join(block[:1] + block[-30:]) if len(block) > 31 else "\n".join(block)
    elif ctx.cut is not None:  # a traceback whose exception line is not in the log: its frames say where
        frames = [ln.strip() for ln in ctx.lines[ctx.cut + 1:] if _FRAME.match(ln)]
        where = _FRAME.match(" " + frames[-1]) if frames else None
        summary = ("the log ends inside a traceback, before its exception line"
                   + (f" (last frame: {Path(where['file']).name}, in {where['func']})" if where else ""))
        evidence = "\n".join(ctx.lines[ctx.cut:][-20:])
    else:
        code = f" with exit code {ctx.exit_code}" if ctx.exit_code is not None else ""
        summary = f"the process ended{code} without a recognisable error"
        evidence = "\n".join(ctx.lines[-15:])
    if len(evidence) > _EVIDENCE_CHARS:
        evidence = "..." + evidence[-_EVIDENCE_CHARS:]
    return Diagnosis("unknown", summary, ["read the evidence (the last traceback); the full log has the rest"],
                     evidence, {"exit_code": ctx.exit_code})


_BROKEN_LINK = ("ConnectionResetError", "BrokenPipeError", "EOFError", "ConnectionRefusedError")


def _aftermath(chain: list[_Exc]) -> bool:
    """A helper process lost its connection to the one that was killed (a dataloader worker's resource sharer after
    its trainer got SIGKILL): a consequence of the signal, not the cause."""
    return all(e.short_type in _BROKEN_LINK and any("multiprocessing/" in f for f in e.frames) for e in chain)


def _in(frames: str, *names: str) -> bool:
    return any(n in frames for n in names)


def _classify(ctx: _Ctx) -> Diagnosis:
    text, frames = ctx.chain_text, ctx.frames
    hard = {"cuda_oom": _oom, "cpu_oom": _cpu_oom, "disk_full": _disk_full, "nccl_error": _nccl}
    for kind, make in hard.items():
        if re.search(_SIGNS[kind], text, re.M):
            return make(ctx)
    if not ctx.chain or all(e.short_type in (*_WRAPPERS, "KeyboardInterrupt", "SignalException") for e in ctx.chain):
        # no Python error of its own: a rank aborted in C++ (NCCL watchdog) and torchrun only reports the exit
        tail = "\n".join(ctx.lines[-400:])
        for kind, make in hard.items():
            if re.search(_SIGNS[kind], tail, re.M):
                return make(ctx)
    if re.search(_SIGNS["address_in_use"], text) or (
            (not ctx.chain or all(e.short_type in _WRAPPERS for e in ctx.chain))
            and re.search(_SIGNS["address_in_use"], "\n".join(ctx.lines[-60:]))):
        return _address_in_use(ctx)  # uvicorn logs the bind error and exits 3 without a traceback
    sig = _signal_of(ctx.exit_code)
    if sig and ctx.chain and (ctx.chain[-1].index < len(ctx.lines) - 40 or _aftermath(ctx.chain)):
        return _killed(ctx, *sig)  # the traceback is old news, or a helper's: the process was signalled
    if ctx.find(_EMPTY_AFTER_FILTER) and (ctx.chain or ctx.exit_code != 0):
        # the decisive line, even when the traceback after it was cut off (or is not in the text at all)
        rejected = [g[-1] for g in ctx.groups if g[-1].logged and _in("\n".join(g[-1].frames), "preprocess")
                    and g[-1].short_type != "MaxLengthError"]  # 3.x logs each row that is too long
        return _rows_rejected(ctx, rejected) if rejected else _empty_after_filter(ctx)
    if re.search(_SIGNS["unknown_argument"], text):
        return _unknown_argument(ctx)
    if not ctx.chain and (m := ctx.find(_ARGPARSE)):
        return _bad_argument_value(ctx, m)
    if re.search(_SIGNS["model_type_ambiguous"], text):
        return _ambiguous(ctx, "model_type")
    if re.search(_SIGNS["template_ambiguous"], text):
        return _ambiguous(ctx, "template_type")
    if re.search(_SIGNS["cpu_bf16_unsupported"], text):
        return _bf16(ctx)
    if re.search(_SIGNS["not_an_adapter"], text) or (_in(frames, "_init_adapters") and "not found" in text) \
            or re.search(r"Can't find 'adapter_config\.json'", text):
        return _not_an_adapter(ctx, _quoted_path(text))
    if ctx.chain and ctx.chain[-1].short_type == "TypeError" and "NoneType" in text \
            and _in(frames, "kto.py:prepare_kto_dataset"):
        return kinds.invalid_argument(ctx)  # 4.6: KTO multiplies by a --gradient_accumulation_steps left None
    if ctx.chain and ctx.chain[-1].short_type == "KeyError" and _in(frames, "template/register.py:get_template"):
        return kinds.template_unknown(ctx)  # 3.x: TEMPLATE_MAPPING[template_type] without a check
    rule = catalog.match(text)
    if rule and rule.kind in kinds.BUILDERS:  # kinds found by ms-swift's (or a tool's) own message
        return kinds.BUILDERS[rule.kind](ctx)
    if rule and rule.kind in _BY_MESSAGE and not ctx.frames:  # a message alone: no frames for the checks below
        return _BY_MESSAGE[rule.kind](ctx)
    inner = "\n".join(ctx.chain[-1].frames[-8:]) if ctx.chain else ""  # the innermost frames + source lines
    if _in(frames, "_load_from_checkpoint", "_load_optimizer_and_scheduler", "_load_rng_state") \
            or "resume_from_checkpoint" in inner:
        return _resume(ctx)
    if re.search(_SIGNS["dataset_not_found"], text) or (
            _in(frames, "load_dataset", "_load_repo_dataset")
            and re.search(r"FileNotFoundError|DatasetNotFoundError|NotExistError|doesn't exist|" + _NETWORK, text)):
        return _dataset_not_found(ctx)
    if re.search(r"DatasetGenerationError|ArrowInvalid|JSON parse error|Unexpected character found when decoding"
                 r"|JSONDecodeError|UnicodeDecodeError", text) and _in(frames, "load_dataset", "datasets/") \
            or _in(frames, "DatasetLoader", "_load_dataset_path") and not _in(frames, "_init_model_info"):
        return _dataset_invalid(ctx)
    if _in(frames, "get_model_info_meta", "safe_snapshot_download", "download_model") or re.search(
            r"is not a local folder and is not a valid model identifier|NotExistError|RepositoryNotFoundError", text):
        return _model_not_found(ctx)
    if _in(frames, "tokenization_", "get_processor", "AutoTokenizer") or re.search(
            r"Can't load tokenizer|[Tt]okenizer[^\n]*(?:not found|could not|failed)|ModelWrapper|untagged enum", text):
        return _tokenizer(ctx)
    if sig and (not ctx.chain or ctx.chain[-1].short_type in ("KeyboardInterrupt", "SystemExit")):
        return _killed(ctx, *sig)
    if not ctx.chain or all(e.short_type in _WRAPPERS for e in ctx.chain):
        tail = "\n".join(ctx.lines[-60:])
        root = tools.torchrun_root("\n".join(ctx.lines[-200:]))  # torchrun's failure summary
        if root and root["signal_number"]:
            who = f"rank {root['rank']} was" if root["rank"] is not None else "a rank (torchrun's child) was"
            return _killed(ctx, who, root["signal_number"], root)
        m = re.search(r"Signal (\d+) \(SIG\w+\) received by PID",
                      tail[tail.rfind("Root Cause"):] if "Root Cause" in tail else tail)
        if m:
            return _killed(ctx, "a rank was", int(m[1]))
        if not ctx.chain and re.search(r"^Killed\b|\bSignals\.SIGKILL\b", tail, re.M):  # a shell's report
            return _killed(ctx, "the process was", 9)
    if ctx.chain and ctx.chain[-1].short_type == "KeyboardInterrupt":
        return _killed(ctx, "the trainer was", 2)
    if rule and rule.kind in _BY_MESSAGE:  # a message alone, without the frames the checks above look at
        return _BY_MESSAGE[rule.kind](ctx)
    if not ctx.chain and ctx.cut is None and ctx.exit_code in (None, 0):
        return Diagnosis("no_failure", "the process ended without a recognisable error"
                         + (" (exit code 0)" if ctx.exit_code == 0 else ""), [], "", {"exit_code": ctx.exit_code})
    return _unknown(ctx)


_BY_MESSAGE = {
    "dataset_not_found": _dataset_not_found, "dataset_invalid": _dataset_invalid,
    "dataset_empty_after_filter": _empty_after_filter, "model_not_found": _model_not_found,
    "tokenizer_load_failed": _tokenizer, "not_an_adapter": lambda ctx: _not_an_adapter(ctx, _quoted_path(
        ctx.chain_text)),
}


def diagnose(text: str, *, exit_code: int | None = None, command: str | None = "sft",
             args: dict | list | None = None, disk: list | None = None) -> Diagnosis:
    """Classify an ms-swift console log (stdout+stderr). `args`: args.json as a dict or the argv after
    `swift <command>`; they win over what the log itself shows (the `run sh:` line, the printed args block).
    `disk`: the free space the runner found at exit (see full_volume); a full volume explains a failure the log
    cannot."""
    lines = _clean_lines(text or "")
    log_args, log_command = _log_args(lines)
    if isinstance(args, (list, tuple)):
        args = _argv_to_dict([str(a) for a in args])
    merged = {**log_args, **{str(k).lstrip("-"): v for k, v in (args or {}).items()}}
    groups = _parse_tracebacks(lines)
    # evidence order: the last exception of a traceback; else an error line of the tail without one
    chain = _fatal_chain(groups) or evidence.bare_errors(lines, groups)[-1:]
    if not chain and exit_code != 0 and not any("End time of running main" in ln for ln in lines[-50:]):
        # else a logged error line; not where the run ended well (a retried download logs one on the way)
        chain = evidence.error_lines(lines, groups)[-1:]
    ctx = _Ctx(lines, chain, groups, merged, command or log_command or "sft", exit_code,
               evidence.cut_off(lines, groups))
    if command == "sft" and log_command and log_command != "sft":  # the default must not hide the real command
        ctx.command = log_command
    diag = _classify(ctx)
    full = full_volume(disk) if exit_code not in (None, 0) else None
    if full and diag.kind == "unknown":
        diag = _disk_full(ctx, full)
    diag.details.setdefault("exit_code", exit_code)
    diag.details.setdefault("command", ctx.command)
    out = ctx.find(r"\[INFO:swift\] output_dir: (\S+)")
    if out:
        diag.details.setdefault("output_dir", out[1])
    if ctx.chain:
        diag.details.setdefault("exception", ctx.chain[-1].type)
    from engine.ranks import add_rank_failures  # torchrun: which rank failed, and how

    add_rank_failures(diag, text or "")
    return _printable(diag)


def _printable(diag: Diagnosis) -> Diagnosis:
    """Every text of a diagnosis comes from the log: make it safe to show on a terminal (engine.textsafe)."""
    def safe(value):
        if isinstance(value, str):
            return printable(value, newlines=False)
        if isinstance(value, dict):
            return {k: safe(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [safe(v) for v in value]
        return value

    diag.summary = printable(diag.summary, newlines=False)
    diag.remedies = [printable(r, newlines=False) for r in diag.remedies]
    diag.evidence = printable(diag.evidence)
    diag.details = safe(diag.details)
    return diag


def read_bounded(path: str | os.PathLike, head: int = HEAD_BYTES, tail: int = TAIL_BYTES) -> str:
    """The whole file when small, else its first `head` and last `tail` bytes joined by a marker line."""
    with open(path, "rb") as f:
        size = f.seek(0, os.SEEK_END)
        f.seek(0)
        if size <= head + tail:
            data = f.read()
        else:
            first = f.read(head)
            f.seek(size - tail)
            data = first + b"\n[... swiftdeck: middle of the log skipped ...]\n" + f.read(tail)
    return data.decode("utf-8", errors="replace")


def diagnose_file(path: str | os.PathLike, *, exit_code: int | None = None, command: str | None = "sft",
                  args: dict | list | None = None, disk: list | None = None) -> Diagnosis:
    """diagnose() on a console log file of any size (reads at most HEAD_BYTES + TAIL_BYTES)."""
    return diagnose(read_bounded(Path(path)), exit_code=exit_code, command=command, args=args, disk=disk)


# ---- a recorded run ----------------------------------------------------------------------------------------

def diagnose_run(rec, *, recorded: bool = True) -> Diagnosis:
    """The diagnosis of a registry run (engine.runs.RunRecord): a stopped run was stopped by the user (never a
    failure), a finished run has none, otherwise the diagnosis the runner recorded (`recorded`) or the console's,
    with the exit code and the free space the runner found at exit."""
    if rec.status == "stopped" or (rec.stop_requested and not rec.active and rec.status != "finished"):
        return _stopped(rec)
    if rec.status == "finished":
        return Diagnosis("no_failure", "the run finished" + (f" (exit code {rec.exit_code})"
                                                             if rec.exit_code not in (None, 0) else ""),
                         [], "", {"exit_code": rec.exit_code})
    meta = rec.meta if isinstance(rec.meta, dict) else {}
    saved = meta.get("diagnosis")
    if recorded and isinstance(saved, dict) and isinstance(saved.get("kind"), str):
        return Diagnosis(saved["kind"], str(saved.get("summary") or ""), list(saved.get("remedies") or []),
                         str(saved.get("evidence") or ""), dict(saved.get("details") or {}))
    from engine.command import swift_args_of

    diag = diagnose_file(rec.console_log, exit_code=rec.exit_code, command=rec.kind, args=swift_args_of(rec),
                         disk=meta.get("exit_disk"))
    from engine.ranks import place_on_gpu

    place_on_gpu(diag, rec)  # the rank's node and physical GPU
    return diag


def _stopped(rec) -> Diagnosis:
    """Stopped by the user: how, and the checkpoint it can go on from."""
    how = rec.stop_requested or "graceful"
    ckpt = None
    if rec.run_dir and Path(rec.run_dir).is_dir():
        from engine import checkpoints

        try:
            folder = checkpoints.scan_run(Path(rec.run_dir), registry=False)
            ckpt = next((c for c in reversed(folder.checkpoints) if c.is_last), None)
        except (OSError, checkpoints.CheckpointError):
            ckpt = None
    summary = ("stopped by the user (force stop: the process tree was killed at once)" if how == "force"
               else "stopped with the rest of its multi-node run (the other node's side was gone)" if how == "peer"
               else "stopped by the user (graceful stop)")
    if ckpt is not None:
        summary += f"; last complete checkpoint: {ckpt.name}"
        remedies = [f"go on with --resume_from_checkpoint {ckpt.path}"]
    else:
        summary += "; no complete checkpoint was saved"
        remedies = ["start it again (a graceful stop saves a checkpoint, a force stop does not)"]
    return Diagnosis("stopped_by_user", summary, remedies, "",
                     {"stop": how, "exit_code": rec.exit_code, "checkpoint": str(ckpt.path) if ckpt else None,
                      "step": ckpt.step if ckpt else None, "command": rec.kind})
