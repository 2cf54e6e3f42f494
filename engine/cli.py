"""The `swiftdeck` command tree: one parser for every command, the dashboard's own options included, so that
`swiftdeck --help` and `swiftdeck CMD --help` are complete. The commands that need no UI run here, each through
engine.ops; `tui.cli` (the console entry point) opens the dashboard for the ones that show it.

Every command prints a clear one-line message for bad input (exit 2) instead of a traceback.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import orjson

from engine import runs
from engine.command import Command
from engine.errors import SwiftdeckError
from engine.kinds import RLHF_TYPES
from engine.redact import redact_data, redact_text

EXIT_USAGE = 2
THEMES_HELP = "swiftdeck-dark | swiftdeck-light | swiftdeck-contrast | any Textual theme"


class UserError(SwiftdeckError):
    """A problem with the user's input: printed as one line, exit code 2."""


class Parser(argparse.ArgumentParser):
    """argparse, with its errors as one line through the error base instead of usage text and exit."""

    def error(self, message: str):
        if message.startswith("unrecognized arguments: "):
            message = "unexpected argument(s): " + message.split(": ", 1)[1]
        raise UserError(f"{message} (see `{self.prog} --help`)")


def _dump(data) -> None:
    sys.stdout.write(orjson.dumps(data, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY,
                                  default=_json_default).decode() + "\n")


def _json_default(obj):
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "to_json"):
        return obj.to_json()
    raise TypeError(type(obj).__name__)


def _confirm(question: str, default: bool = True) -> bool:
    if not sys.stdin.isatty():
        return False
    try:
        answer = input(f"{question} {'[Y/n]' if default else '[y/N]'} ").strip().lower()
    except EOFError:
        return False
    return answer in ("y", "yes") or (default and answer == "")


# ---------------------------------------------------------------- resolving RUN arguments

def record(ref: str) -> runs.RunRecord:
    try:
        return runs.resolve(ref)
    except runs.UnknownRun as exc:
        raise UserError(str(exc)) from None


def reader_for(ref: str):
    """(record or None, RunReader) for a registry id or a run folder / console log path."""
    from engine.ingest import RunReader
    from engine.ops.runs import resolve

    src = resolve(ref)
    return src.record, RunReader(console_log=src.console_log, run_dir=src.run_dir)


# ---------------------------------------------------------------- train

def _print_check(check) -> None:
    for note in check.args.notes:
        print(f"note: {note}")
    for problem in check.args.problems:
        print(f"problem: {problem.message}")
        if problem.suggestions:
            print(f"         did you mean: {', '.join(problem.suggestions)}")
        if problem.fix:
            print(f"         fix: {' '.join(problem.fix)}")
    for level, line in check.datasets:
        print(f"dataset: {line.strip()}" if level in ("ok", "fail", "info") else f"dataset {line.strip()}")
    if check.preflight is not None:
        _print_preflight(check.preflight)


def _print_preflight(pre) -> None:
    for level, line in pre.lines():
        print(f"preflight: {line}" if level == "info" else f"preflight {level}: {line}")


def checked_command(cmd, *, fix: bool, share_gpus: bool = False):
    """engine.ops.launch.check_launch, printed; fixes applied when allowed (or confirmed on a terminal); one process
    on several GPUs offered a pinned GPU, and GPUs other processes fill used only when confirmed."""
    from engine.ops import launch

    check = launch.check_launch(cmd)
    _print_check(check)
    if check.fixable and (fix or _confirm("Apply these fixes and launch?")):
        printed = set(check.args.notes)
        check = check.with_fixes()
        for note in check.args.notes:
            if note not in printed:
                print(f"note: {note}")
    pin = check.preflight.pin if check.preflight else None
    if pin is not None and _confirm(f"Pin the run to GPU {pin} (CUDA_VISIBLE_DEVICES={pin})?", default=False):
        pinned, _ = launch.plan_devices(check.command, gpus=pin)
        print(f"environment: CUDA_VISIBLE_DEVICES={pin}")
        check = launch.check_launch(pinned)
        _print_preflight(check.preflight)
    if check.preflight and check.preflight.busy and not check.preflight.problems and check.args.ok \
            and check.datasets_ok and (share_gpus or _confirm("Launch onto it anyway?", default=False)):
        check = check.confirmed()
    if not check.ok:
        hint = " (re-run with --fix to apply the proposed fixes)" if check.fixable else ""
        raise UserError(f"not launched: {check.blocker}{hint}")
    return check


def cmd_train(ns) -> int:
    from engine.command import TRAINING_KINDS, Command, pasted_kind

    if not ns.swift_args or ns.swift_args == ["--"]:
        raise UserError("usage: swiftdeck train [--kind sft|pt|rlhf] [--wait] [--fix] -- <swift arguments>")
    pasted = pasted_kind(ns.swift_args)
    kind = ns.kind or (pasted if pasted in TRAINING_KINDS else "sft")
    from engine.ops import launch

    cmd = Command.parse(ns.swift_args, kind=kind, cwd=Path.cwd(), label=ns.label or "")
    cmd, _ = launch.plan_devices(cmd, gpus=ns.gpus, nproc=ns.nproc, deepspeed=ns.deepspeed, nnodes=ns.nnodes,
                                 node_rank=ns.node_rank, master_addr=ns.master_addr, master_port=ns.master_port)
    if cmd.env:
        print("environment: " + " ".join(f"{k}={v}" for k, v in sorted(cmd.env.items())))
    if ns.preflight:
        check = launch.check_launch(cmd)
        _print_check(check)
        blocker = check.blocker
        print(f"would not launch: {blocker}" if blocker else "nothing blocks this launch (not launched: --preflight)")
        return 1 if blocker else 0
    check = checked_command(cmd, fix=ns.fix, share_gpus=ns.share_gpus)
    return _launch_and_report(check, wait=ns.wait)


def cmd_resume(ns) -> int:
    """Resume a training run from one of its checkpoints (default: the newest resumable): the plan of the dashboard's
    R (engine.ops.launch.plan_resume), with --set's `--flag value` pairs applied."""
    from engine import checkpoints
    from engine.ops import launch

    rec = record(ns.run)
    found = checkpoints.scan_run(Path(rec.run_dir)).checkpoints if rec.run_dir and Path(rec.run_dir).is_dir() else []
    if ns.checkpoint:
        wanted = Path(ns.checkpoint).name
        ckpt = next((c for c in found if c.name == wanted), None)
        if ckpt is None:
            raise UserError(f"run {rec.id} has no {wanted} (it has: {', '.join(c.name for c in found) or 'none'})")
    else:
        ready = [c for c in found if c.resumable and c.step is not None]
        if not ready:
            raise UserError(f"run {rec.id} has no resumable checkpoint")
        ckpt = max(ready, key=lambda c: c.step)
    try:
        cmd, changes = launch.plan_resume(rec, ckpt, ns.set)
    except launch.AtMaxSteps as exc:
        raise UserError(f"not resumed: {exc} (swiftdeck resume {rec.id} {ckpt.name} --set '{exc.flags}')") from None
    for change in changes:
        print(f"change: {change}")
    check = checked_command(cmd, fix=ns.fix)
    check.changes = changes
    return _launch_and_report(check, wait=ns.wait)


def _launch_and_report(check, *, wait: bool) -> int:
    from engine.ops import launch

    rec = launch.start(check)
    print(f"started run {rec.id} (pid {rec.pid}); it keeps running if this terminal closes")
    print(f"  console: {rec.console_log}")
    print(f"  follow:  swiftdeck attach {rec.id}    stop: swiftdeck stop {rec.id}")
    return follow(rec.id) if wait else 0
def ended_words(rec: runs.RunRecord) -> str:
    """"finished", "failed (exit code 1)", "stopped by you (SIGINT)": never a bare "exit code -2"."""
    from engine.status import exit_words

    words = exit_words(rec.status, rec.exit_code, bool(rec.stop_requested))
    return words if words.startswith(rec.status) else f"{rec.status} ({words})" if words else rec.status


def follow(run_id: str, *, out=print) -> int:
    """Print each new logged step until the run ends; exit code = the run's."""
    from engine import kinds
    from engine.events import CheckpointSaved, Metrics, RunDirFound
    from engine.textsafe import printable  # paths and values come from the log: nothing may reach the terminal raw

    rec = runs.load(run_id)
    _, reader = reader_for(run_id)
    while True:
        for event in reader.poll():
            if isinstance(event, Metrics) and "loss" in event.values:
                total = f"/{event.max_steps}" if event.max_steps else ""
                keys = ("loss", *kinds.HEADLINE[kinds.family(event.values)])
                shown = " ".join(f"{k}={event.values[k]:.4g}" for k in keys if k in event.values)
                out(printable(f"step {event.step}{total}  {shown}", newlines=False))
            elif isinstance(event, CheckpointSaved):
                out(f"saved {printable(event.path, newlines=False)}")
            elif isinstance(event, RunDirFound):
                out(f"run folder: {printable(event.path, newlines=False)}")
        if not rec.active:
            break
        time.sleep(0.5)
        rec = runs.load(run_id)
    for event in reader.poll():
        if isinstance(event, CheckpointSaved):
            out(f"saved {printable(event.path, newlines=False)}")
    out(f"run {rec.id} {ended_words(rec)}")
    from engine.ops.wait import exit_status

    return exit_status(rec)


# ---------------------------------------------------------------- runs / stop / metrics / checkpoints

def _job_what(rec: runs.RunRecord) -> str:
    """One line on what a chat worker, deploy or merge job serves or writes."""
    if rec.meta.get("url"):
        return f"{rec.meta['url']}/v1 " + " ".join(rec.meta.get("models", []))
    loaded = rec.meta.get("loaded") or rec.meta.get("adapters")
    if loaded:
        return " ".join(map(str, loaded))
    return rec.notes[-1] if rec.notes else " ".join(Command.of_record(rec).args)[:80]


def _warn_unreadable(bad: list[runs.Unreadable], as_json: bool = False) -> None:
    note = runs.describe_unreadable(bad)
    if note and as_json:  # stderr stays JSON for a --json caller
        sys.stderr.write(orjson.dumps({"warning": note}).decode() + "\n")
    elif note:
        print(f"swiftdeck: {note}", file=sys.stderr)


def cmd_runs(ns) -> int:
    """Training runs (sft/pt/rlhf); with --all, chat workers, deploys and merges in a jobs section after them."""
    from engine.command import TRAINING_KINDS
    from engine.ops.runs import RunSource, quick_summary

    records, bad = runs.scan()
    _warn_unreadable(bad, as_json=ns.json)
    training = [r for r in records if r.kind in TRAINING_KINDS]
    jobs = [r for r in records if r.kind not in TRAINING_KINDS]
    rows = []
    for rec in training:
        src = RunSource.of_record(rec)
        s = quick_summary(src)
        rows.append({**rec.to_json(), "group": "run", "training": src.kind, "step": s.step,
                     "max_steps": s.max_steps, "last_loss": s.last_loss})
    job_rows = [{**rec.to_json(), "group": "job", "what": _job_what(rec)} for rec in jobs] if ns.all else []
    if ns.json:
        _dump(rows + job_rows)
        return 0
    if not rows:
        print("no training runs yet: start one with `swiftdeck train -- ...` or `swiftdeck demo`"
              + (f" ({len(jobs)} other job(s): swiftdeck runs --all)" if jobs and not ns.all else ""))
    else:
        width = max([5, *(len(r["label"]) for r in rows)])
        width = min(width, 24)
        print(f"{'RUN':32} {'LABEL':{width}} {'KIND':9} {'STATUS':9} {'STEP':>11} {'LOSS':>8}  {'STARTED':16} "
              "RUN FOLDER")
        for r in rows:
            step = f"{r['step']}/{r['max_steps'] or '?'}" if r["step"] is not None else "-"
            loss = f"{r['last_loss']:.4g}" if r["last_loss"] is not None else "-"
            started = time.strftime("%Y-%m-%d %H:%M", time.localtime(r["started_at"]))
            label = (r["label"] or "-")[:width]
            print(f"{r['id']:32} {label:{width}} {r['training']:9} {r['status']:9} {step:>11} {loss:>8}  {started:16} "
                  f"{r['run_dir'] or '-'}")
        if jobs and not ns.all:
            print(f"({len(jobs)} chat/deploy/merge job(s) not shown: swiftdeck runs --all)")
    if job_rows:
        print("\njobs (chat workers, deploys, merges):")
        print(f"{'JOB':32} {'KIND':7} {'STATUS':9} {'STARTED':16} WHAT")
        for r in job_rows:
            started = time.strftime("%Y-%m-%d %H:%M", time.localtime(r["started_at"]))
            print(f"{r['id']:32} {r['kind']:7} {r['status']:9} {started:16} {r['what']}")
    return 0


def cmd_stop(ns) -> int:
    from engine.ops import jobs

    rec = record(ns.run)
    name = jobs.named(rec)
    if not rec.active:
        print(f"{name} is not running ({rec.status})")
        return 0
    print(f"{'force-stopping' if ns.force else 'stopping'} {name}: {jobs.stop_words(rec, ns.force)} ...")
    report = jobs.stop(rec, force=ns.force, timeout_s=ns.timeout)
    for step in report.steps:
        print(f"  {step}")
    rec = runs.load(rec.id)
    if report.clean:
        print(f"{name} {rec.status} in {report.seconds:.1f}s; no process of its tree is left"
              + ("" if not report.gpu_checked else " and NVML lists no GPU memory of it"))
        return 0
    if report.left:
        print(f"{name}: processes still alive: {report.left}")
    if report.gpu_mem_left:
        print(f"{name}: NVML still lists {report.gpu_mem_left / 2**20:.0f} MiB of GPU memory for its processes")
    return 1


def cmd_metrics(ns) -> int:
    from engine import kinds
    from engine.textsafe import printable
    from engine.ingest import iter_metrics_rows, metrics_keys
    from engine.ops.runs import resolve

    _, reader = reader_for(ns.run)
    src = resolve(ns.run)
    kind = src.kind
    reader.emit_metrics = False  # the steps are read from the state's columns
    fmt = "json" if ns.json else ns.format
    if fmt in ("json", "jsonl", "csv"):
        return _stream_rows(fmt, kind, src, reader, ns.run)
    reader.poll_all()
    state = reader.state
    summary = state.finished.summary if state.finished else {}
    if not state.metrics and not summary:
        raise UserError(_no_step(ns.run))
    memory = _memory_vs_estimate(src, _peak_memory(state))
    rows = iter_metrics_rows(state)
    logged = set(metrics_keys(state))
    family = kinds.family(logged)
    funcs = [f"rewards/{f}/mean" for f in kinds.reward_functions(sorted(logged))]
    keys = [k for k in dict.fromkeys(("loss", "eval_loss", *kinds.HEADLINE[family], *funcs, "learning_rate",
                                      "grad_norm", "token_acc", "epoch")) if k in logged]
    widths = {k: max(13, len(k)) for k in keys}
    print(printable(f"kind: {kind}" + (f" (charts: {family})" if family != "sft" else ""), newlines=False))
    print(printable(f"{'step':>7} " + " ".join(f"{k:>{widths[k]}}" for k in keys), newlines=False))
    for r in rows:
        print(f"{r['step']:>7} " + " ".join(f"{r[k]:>{widths[k]}.5g}" if r.get(k) is not None else
                                            f"{'':>{widths[k]}}" for k in keys))
    if summary:
        print("summary: " + ", ".join(f"{k}={v:.5g}" if isinstance(v, float) else f"{k}={v}"
                                      for k, v in summary.items()))
    if memory and (memory["measured_gib"] is not None or memory["estimate_gib"] is not None):
        measured = f"{memory['measured_gib']:.2f} GiB" if memory["measured_gib"] is not None else "not logged"
        estimated = (f"~{memory['estimate_gib']:.2f} GiB per GPU ({memory['layout']})"
                     if memory["estimate_gib"] is not None else memory["note"])
        ratio = f"; measured/estimate {memory['ratio']}" if memory["ratio"] else ""
        print(f"memory: ms-swift measured {measured} (memory(GiB): peak reserved on rank 0); preflight estimate "
              f"{estimated}{ratio}")
    return 0


def _no_step(run: str) -> str:
    return f"no logged step in {run}: not an ms-swift run folder or console log (or nothing was logged yet)"


def _stream_rows(fmt: str, kind: str, src, reader, run: str) -> int:
    """`metrics --json|--format jsonl|csv` written while the file is read (engine.ingest.stream_states): memory flat
    in the number of steps. json: one object {kind, metrics: [...], summary, finished, memory}, a row per line;
    jsonl: one row per line; csv: a header of every logged key, empty cells where a step did not log one (a key can
    first appear at the last line, so the rows wait in a temporary file as raw columns until the header is known).
    A step logged again or late within the last 65,536 steps is placed (the later line wins); a line later than that
    is left out, and stderr says which steps."""
    from engine.ingest import STREAM_WINDOW, metrics_json_text
    from engine.read_ahead import read_ahead_states

    if fmt == "csv":
        spool = _ColumnSpool()
    out = _BytesOut(sys.stdout)
    head = b'{"kind": ' + orjson.dumps(kind) + b', "metrics": ['
    sep = b"\n" if fmt == "jsonl" else b",\n"
    late: list[int] = []
    rows, peak = 0, None
    for part in read_ahead_states(reader, late):
        part_peak = _peak_memory(part)
        peak = part_peak if peak is None or (part_peak is not None and part_peak > peak) else peak
        if fmt == "csv":
            rows += spool.add(part)
            continue
        for block in metrics_json_text(part, sep):
            if fmt == "jsonl":
                out.write(block + b"\n")
            else:
                out.write((b",\n" if rows else head + b"\n") + block)
            rows += 1  # blocks: only whether there was one counts
    state = reader.state
    summary = state.finished.summary if state.finished else {}
    if not rows and not summary:
        raise UserError(_no_step(run))
    if fmt == "csv":
        spool.write_csv(out)
    elif fmt == "json":
        memory = _memory_vs_estimate(src, peak)
        opt = orjson.OPT_SERIALIZE_NUMPY
        out.write((head if not rows else b"") + b'\n], "summary": '
                  + orjson.dumps(summary, option=opt, default=_json_default)
                  + b', "finished": ' + orjson.dumps(state.finished, option=opt, default=_json_default)
                  + b', "memory": ' + orjson.dumps(memory, option=opt, default=_json_default) + b"}\n")
    out.close()
    if late:
        shown = ", ".join(map(str, late[:5])) + (f" and {len(late) - 5} more" if len(late) > 5 else "")
        print(f"swiftdeck: {len(late)} line(s) for steps already written came more than {STREAM_WINDOW:,} steps late "
              f"and were left out (step {shown})", file=sys.stderr)
    return 0


class _BytesOut:
    """Bytes for a text stream, gathered and written about a megabyte at a time: through its binary buffer where
    it has one (stdout), decoded otherwise."""

    def __init__(self, out, size: int = 1 << 20):
        self.out, self.size = out, size
        self.parts: list[bytes] = []
        self.held = 0

    def write(self, data: bytes) -> None:
        self.parts.append(data)
        self.held += len(data)
        if self.held >= self.size:
            self.flush()

    def flush(self) -> None:
        data = b"".join(self.parts)
        self.parts, self.held = [], 0
        buffer = getattr(self.out, "buffer", None)
        if buffer is None:
            self.out.write(data.decode())
        else:
            self.out.flush()
            buffer.write(data)

    def close(self) -> None:
        self.flush()
        if getattr(self.out, "buffer", None) is not None:
            self.out.buffer.flush()


class _ColumnSpool:
    """The parts of a streamed read kept in a temporary file as raw columns (engine.column_cache), then written as
    CSV under a header of every key: memory flat in the number of steps. Each part is also written as CSV text
    at once (into a second temporary file) under the keys known so far; when no later part brings a new key (the
    usual case) that text is the CSV, and only a run whose keys grow is formatted again from the columns."""

    def __init__(self):
        import tempfile

        self.file = tempfile.TemporaryFile()
        self.text = tempfile.TemporaryFile()
        self.metas: list[tuple[dict, dict]] = []
        self.train_keys: dict[str, None] = {}
        self.eval_keys: dict[str, None] = {}
        self.text_keys: list[str] | None = None  # the keys of the text so far; None once a part brought a new one

    def keys(self) -> list[str]:
        return list(dict.fromkeys(("step", *self.train_keys, *self.eval_keys)))

    def add(self, part) -> int:
        from engine.column_cache import columns_meta, write_columns
        from engine.ingest import metrics_csv_text

        self.metas.append((columns_meta(part.train), columns_meta(part.eval)))
        write_columns(self.file, part.train)
        write_columns(self.file, part.eval)
        self.train_keys.update(dict.fromkeys(part.train.cols))
        self.eval_keys.update(dict.fromkeys(part.eval.cols))
        keys = self.keys()
        if len(self.metas) == 1:
            self.text_keys = keys
        elif keys != self.text_keys:
            self.text_keys = None
        if self.text_keys is not None:
            self.text.write(b"".join(metrics_csv_text(part, keys)))
        return len(part.train) + len(part.eval)

    def write_csv(self, out) -> None:
        """The CSV to `out`: a text stream, or a _BytesOut (left open)."""
        import csv
        import io

        from engine.column_cache import read_columns
        from engine.ingest import RunState, metrics_csv_text

        into = out if isinstance(out, _BytesOut) else _BytesOut(out)
        keys = self.keys()
        header = io.StringIO()
        csv.writer(header, lineterminator="\n").writerow(keys)
        into.write(header.getvalue().encode())
        with self.file, self.text:
            if self.text_keys == keys:
                self.text.seek(0)
                while data := self.text.read(1 << 20):
                    into.write(data)
            else:
                self.file.seek(0)
                for train, eval_ in self.metas:
                    part = RunState(train=read_columns(self.file, train), eval=read_columns(self.file, eval_))
                    for block in metrics_csv_text(part, keys):
                        into.write(block)
        if into is not out:
            into.close()


def _peak_memory(state) -> float | None:
    """The largest finite `memory(GiB)` ms-swift logged in `state`."""
    import math

    peaks = []
    for cols in (state.train, state.eval):
        values = cols.series("memory(GiB)")[1]
        finite = values if math.isfinite(sum(values)) else [v for v in values if math.isfinite(v)]  # C speed first
        if len(finite):
            peaks.append(max(finite))
    return max(peaks, default=None)


def _memory_vs_estimate(src, peak: float | None) -> dict | None:
    """The preflight's memory estimate (from the run folder's args.json) beside ms-swift's `memory(GiB)` (its
    largest value, `peak`)."""
    from engine import preflight

    if src.run_dir is None:
        return None
    env = dict(src.record.env) if src.record else None
    return preflight.compare(src.run_dir, peak, env)


def cmd_checkpoints(ns) -> int:
    from engine import checkpoints

    root = Path(ns.output_dir).expanduser().resolve()
    if not root.exists():
        raise UserError(f"no such folder: {root}")
    if not root.is_dir():
        raise UserError(f"{root} is a file: give the output folder (or one vN-… run folder) of an ms-swift run")
    found = checkpoints.scan(root)
    if ns.json:
        _dump([r.to_json() for r in found])
    elif not found:
        print(f"no ms-swift run folders (vN-YYYYMMDD-HHMMSS) under {root}")
    else:
        print(checkpoints.format_table(found))
    return 0


# ---------------------------------------------------------------- demo

def build_demo_assets() -> dict:
    """Build (or reuse) the offline demo in a subprocess: callers may be the UI process, which never imports torch."""
    proc = subprocess.run([sys.executable, "-m", "engine.demo", "--json"], capture_output=True, text=True)
    if proc.returncode != 0:
        lines = proc.stderr.strip().splitlines()
        raise UserError(f"could not build the demo model: {lines[-1] if lines else f'exit code {proc.returncode}'}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


DEMO_KINDS = ("sft", "dpo", "grpo")


def start_demo(*, epochs: int | None = None, kind: str = "sft", adapter: str | Path | None = None):
    """Start the offline demo run: `sft` (the self-cognition LoRA), `dpo` (`swift rlhf --rlhf_type dpo` on the
    identity preference pairs) or `grpo` (a few GRPO steps with built-in rewards and logged completions); the rlhf
    ones from the base model or from the SFT LoRA checkpoint `adapter`."""
    from engine import demo, paths
    from engine.ops import launch

    if kind not in DEMO_KINDS:
        raise UserError(f"unknown demo kind {kind!r}; known: {', '.join(DEMO_KINDS)}")
    if adapter is not None:
        adapter = Path(adapter).expanduser().resolve()
        if kind == "sft":
            raise UserError("--adapter is for `swiftdeck demo --kind dpo|grpo` (from an SFT LoRA checkpoint)")
        if not (adapter / "adapter_config.json").is_file():
            raise UserError(f"{adapter} is not a LoRA checkpoint (no adapter_config.json)")
    assets_json = build_demo_assets()
    assets = demo.DemoAssets(model=Path(assets_json["model"]), dataset=Path(assets_json["dataset"]))
    kwargs = {"epochs": epochs} if epochs else {}
    start = f"the SFT adapter {adapter}" if adapter else "the base model"
    if kind == "grpo":
        out = paths.data_dir() / "demo-grpo-output"
        steps = {"steps": epochs} if epochs else {}
        cmd = Command("rlhf", tuple(demo.demo_grpo_args(assets, out, adapter=adapter, **steps)), str(out.parent),
                      label="demo grpo")
        note = (f"offline GRPO demo: the identity questions, rewards format + repetition, completions logged; "
                f"LoRA from {start}")
    elif kind == "dpo":
        out = paths.data_dir() / "demo-dpo-output"
        cmd = Command("rlhf", tuple(demo.demo_dpo_args(assets, out, adapter=adapter, **kwargs)), str(out.parent),
                      label="demo dpo")
        note = ("offline DPO demo: identity preference pairs (chosen: the dataset's answer, rejected: a wrong "
                f"identity), LoRA from {start}")
    else:
        out = paths.data_dir() / "demo-output"
        cmd = Command("sft", tuple(demo.demo_sft_args(assets, out, **kwargs)), str(out.parent), label="demo")
        note = "offline demo: tiny Qwen2 built locally, self-cognition dataset, LoRA on CPU/GPU"
    check = launch.check_launch(cmd, datasets=False)  # the demo's own dataset: built and checked by its builder
    return launch.start(check, notes=[note])


def cmd_demo(ns) -> int:
    if ns.build_only:
        assets = build_demo_assets()
        if ns.json:
            _dump(assets)
        else:
            print(f"model:   {assets['model']}\ndataset: {assets['dataset']}")
        return 0
    print("building the offline demo model (cached after the first time) ...")
    rec = start_demo(epochs=ns.epochs, kind=ns.kind, adapter=ns.adapter)
    print(f"started demo run {rec.id} (pid {rec.pid}); it keeps running if this terminal closes")
    code = follow(rec.id)
    if code == 0 and ns.kind == "dpo":
        print_dpo_outcome(rec.id)
    return code


def print_dpo_outcome(run_id: str) -> None:
    """What the DPO demo learned: the logged reward margin and accuracy, first and last step; then whether the
    final adapter prefers the chosen answers over the rejected ones (engine.preference, in a subprocess)."""
    from engine import preference

    rec, reader = reader_for(run_id)
    state = reader.read_all()
    logged = [m for m in state.metrics if "rewards/margins" in m.values]
    if logged:
        first, last = logged[0], logged[-1]
        print(f"reward margin: {first.values['rewards/margins']:.3f} at step {first.step} → "
              f"{last.values['rewards/margins']:.3f} at step {last.step}; accuracy "
              f"{first.values.get('rewards/accuracies', float('nan')):.2f} → "
              f"{last.values.get('rewards/accuracies', float('nan')):.2f}")
    ckpt = state.finished.last_checkpoint if state.finished else None
    if not ckpt:
        return
    print("scoring the preference pairs under the reference and the adapter ...")
    try:
        print(preference.run_subprocess(Path(ckpt)).format())
    except preference.PreferenceError as exc:
        print(f"could not score the pairs: {exc}")


def cmd_attach(ns) -> int:
    rec = record(ns.run)
    return follow(rec.id)


def cmd_dashboard(ns) -> int:
    raise UserError("the dashboard opens through the `swiftdeck` command (tui.cli); here: `swiftdeck runs`")


# ---------------------------------------------------------------- deploy / merge / leftovers

def _adapter_map(items: list[str]) -> dict[str, str]:
    out = {}
    for item in items:
        name, _, path = item.rpartition("=")
        out[name] = path
    return out


def cmd_deploy(ns) -> int:
    from engine.ops import jobs

    def started(rec):
        for note in rec.notes:
            print(f"warning: {note}")
        print(f"started swift deploy as run {rec.id} (pid {rec.pid}); waiting for /health ...")

    done = jobs.deploy(_adapter_map(ns.adapters or []), model=ns.model, host=ns.host, port=ns.port,
                       extra=ns.extra[1:] if ns.extra[:1] == ["--"] else ns.extra, cwd=Path.cwd(),
                       timeout_s=ns.timeout, started=started)
    models = done.rec.meta.get("models", [])
    print(f"ready: {done.url}/v1  models: {', '.join(models)}   stop: swiftdeck stop {done.rec.id}")
    return 0


def cmd_merge(ns) -> int:
    from engine.ops import jobs

    rec = jobs.merge(Path(ns.checkpoint), device_map_cpu=ns.device_map_cpu, wait=ns.wait,
                     started=lambda r: print(f"merging as run {r.id} (pid {r.pid}): {r.notes[-1]}"))
    if not ns.wait:
        return 0
    print(f"merge {ended_words(rec)}")
    return 0 if rec.status == "finished" else 1


def cmd_leftovers(ns) -> int:
    from engine.ops import jobs

    _warn_unreadable(runs.scan()[1], as_json=ns.json)
    found = jobs.find_leftovers()
    if ns.json:
        _dump([f.to_json() for f in found])
        return 0
    if not found:
        print("no leftover processes of swiftdeck runs")
        return 0
    for f in found:
        gmem = f"{f.gpu_mem / 2**20:.0f} MiB GPU" if f.gpu_mem else "no GPU memory"
        print(f"{f.pid:>8} {f.name:16} {f.rss / 2**20:8.0f} MiB RAM  {gmem:16} run {f.run_id} ({f.run_status})")
    if ns.stop or _confirm(f"Stop these {len(found)} process(es)? (only swiftdeck's own)"):
        left = jobs.stop_leftovers(found)
        print("stopped" if not left else f"still alive: {left}")
        return 0 if not left else 1
    return 0
# ---------------------------------------------------------------- diagnose / check-dataset

def cmd_diagnose(ns) -> int:
    from engine import diagnose

    try:
        rec = None if ns.target == "-" else runs.resolve(ns.target)
    except runs.UnknownRun:
        rec = None
    if ns.target == "-":  # pasted text: one error line, or a piece of a console
        result = diagnose.diagnose(sys.stdin.read(), exit_code=ns.exit_code)
    elif rec is not None:
        if not rec.console_log.exists():
            raise UserError(f"run {rec.id} has no console log")
        result = diagnose.diagnose_run(rec)  # stopped by the user, finished, or why it failed
    else:
        path = Path(ns.target).expanduser()
        if not path.is_file():
            raise UserError(f"'{ns.target}' is neither a swiftdeck run nor a log file")
        why = not_a_console_log(path)
        if why:
            raise UserError(why)
        result = diagnose.diagnose_file(path, exit_code=ns.exit_code)
    if ns.json:  # log text is shown with its secrets masked (engine.redact)
        _dump(redact_data(result.to_json()))
    else:
        if rec is not None:
            print(f"run {rec.id}: {ended_words(rec)}")
        print("\n".join(redact_text(line) for line in result.format().splitlines()))
    return 0


LOG_SIGNS = (b"[INFO:swift]", b"[WARNING:swift]", b"[ERROR:swift]", b"Traceback (most recent call last)", b"Error",
             b"error", b"it/s]", b"s/it]", b"torch", b"swift")


def not_a_console_log(path: Path, head: int = 64 * 1024) -> str | None:
    """Why `path` is not an ms-swift console log (a dataset of JSON rows, or text without a sign of a Python
    program), else None."""
    try:
        with open(path, "rb") as fh:
            data = fh.read(head)
    except OSError as exc:
        return f"cannot read {path}: {exc.strerror or exc}"
    first = next((line.strip() for line in data.splitlines() if line.strip()), b"")
    if first[:1] in (b"{", b"["):
        try:
            json.loads(first)
            rows = True
        except ValueError:
            rows = first[:1] == b"[" and path.suffix == ".json"  # a JSON array over several lines
        if rows:
            return (f"{path} holds JSON rows (a dataset?), not a console log: `swiftdeck check-dataset {path}` checks "
                    "a dataset; `swiftdeck diagnose` takes a run or its console.log")
    if not data.strip():
        return f"{path} is empty: not a console log"
    if not any(sign in data for sign in LOG_SIGNS):
        return f"{path} shows no sign of an ms-swift or Python run: not a console log"
    return None


def cmd_check_dataset(ns) -> int:
    from engine import dataset_check

    path = Path(ns.file).expanduser()
    if not path.exists():
        raise UserError(f"dataset file not found: {path.resolve()}")
    report = dataset_check.check_dataset(path, model=ns.model, max_length=ns.max_length, system=ns.system,
                                         rlhf_type=ns.rlhf_type)
    if report.refusal:  # a folder, /dev/zero, a fifo: not read at all
        raise UserError(report.refusal)
    if ns.json:
        _dump(report.to_json())
    else:
        print(report.format())
    return 0 if report.ok else 1


def cmd_check_preference(ns) -> int:
    from engine import preference

    ckpt = Path(ns.checkpoint).expanduser()
    if not (ckpt / "adapter_config.json").is_file():
        raise UserError(f"{ckpt.resolve()} is not a LoRA checkpoint (no adapter_config.json)")
    if ns.dataset and not Path(ns.dataset).expanduser().is_file():
        raise UserError(f"dataset file not found: {Path(ns.dataset).expanduser().resolve()}")
    try:
        report = preference.run_subprocess(ckpt.resolve(), dataset=Path(ns.dataset).expanduser().resolve()
                                           if ns.dataset else None, sample=ns.sample)
    except preference.PreferenceError as exc:
        raise UserError(str(exc)) from None
    if ns.json:
        _dump(report.to_json())
    else:
        print(report.format())
    return 0 if report.moved == len(report.pairs) else 1


# ---------------------------------------------------------------- identity

def cmd_check_identity(ns) -> int:
    from engine import identity
    from engine.chat_client import ChatClientError

    ckpt = Path(ns.checkpoint).expanduser()
    if not (ckpt / "adapter_config.json").is_file():
        raise UserError(f"{ckpt.resolve()} is not a LoRA checkpoint (no adapter_config.json)")
    if ns.dataset and not Path(ns.dataset).expanduser().is_file():
        raise UserError(f"dataset file not found: {Path(ns.dataset).expanduser().resolve()}")
    if not ns.json:
        print("loading the base model once in a chat worker ...", file=sys.stderr)
    try:
        report = identity.check_identity(ckpt, dataset=Path(ns.dataset) if ns.dataset else None, sample=ns.sample)
    except ChatClientError as exc:
        raise UserError(str(exc)) from None
    if ns.json:
        _dump(report.to_json())
    else:
        print(report.format())
    return 0 if report.adapter_passed == len(report.rows) else 1


# ---------------------------------------------------------------- chat

def cmd_chat(ns) -> int:
    from engine import chat_cli

    return chat_cli.run(ns)


# ---------------------------------------------------------------- many runs: compare / wait / prune / strip / disk

def _cell(value, width: int = 26) -> str:
    """A compare table cell: numbers short, long paths cut from the left (their end names them)."""
    if value is None:
        return "-"
    if isinstance(value, float):
        text = f"{value:.4g}"
    elif isinstance(value, (list, tuple)):
        text = ",".join(_cell(v, 10**6) for v in value) or "[]"
    elif isinstance(value, dict):
        text = orjson.dumps(value).decode()
    else:
        text = str(value)
    text = " ".join(text.split())
    return text if len(text) <= width else "…" + text[-(width - 1):]


def cmd_compare(ns) -> int:
    from engine.ops import compare
    from engine.ops.runs import resolve

    if len(ns.runs) < 2:
        raise UserError("give two or more runs to compare: swiftdeck compare RUN RUN ...")
    result = compare.compare([resolve(ref) for ref in ns.runs])
    if ns.json:
        _dump(result.to_json(series=not ns.no_series))
        return 0
    rs = result.runs
    width = 26
    names = {r.key: f"#{i}" for i, r in enumerate(rs, 1)}

    def row(title: str, values) -> None:
        print(f"{title:20} " + " ".join(f"{_cell(v, width):{width}}" for v in values))

    def at(value, step) -> str | None:
        return None if value is None else f"{value:.4g} @ {step}"

    def name(path) -> str | None:
        return Path(path).name if path else None

    row("", [names[r.key] for r in rs])
    row("run", [r.key if r.key.startswith(("sft-", "pt-", "rlhf-")) else Path(r.key).name for r in rs])
    row("label", [r.label or None for r in rs])
    row("status", [r.status for r in rs])
    row("steps", [None if r.step is None else f"{r.step}/{r.max_steps or '?'}" for r in rs])
    row("final loss", [r.final_loss for r in rs])
    row("best loss", [at(r.best_loss, r.best_loss_step) for r in rs])
    row("eval loss", [r.eval_loss for r in rs])
    row("best eval loss", [at(r.best_eval_loss, r.best_eval_step) for r in rs])
    row("best checkpoint", [name(r.best_checkpoint) for r in rs])
    row("last checkpoint", [name(r.last_checkpoint) for r in rs])
    row("resumed from", [None if r.resumed_from is None else
                         f"{names.get(r.parent) or name(r.parent)}/{name(r.resumed_from)}" for r in rs])
    if result.differing:
        print("\narguments that differ (args.json):")
        for key, values in result.differing.items():
            row(key, values)
    elif sum(1 for r in rs if r.args) >= 2:
        print("\nno argument differs (args.json)")
    notes: dict[str, list[str]] = {}
    for r in rs:
        for note in r.notes:
            notes.setdefault(note, []).append(names[r.key])
    for note, who in notes.items():
        print(f"{', '.join(who)}: {note}")
    for r in rs:
        if r.best_checkpoint:
            print(f"{names[r.key]}: best checkpoint {r.best_checkpoint}: {r.best_checkpoint_reason}")
    return 0


def cmd_wait(ns) -> int:
    from engine.ops import notify, wait

    rec = record(ns.run)
    if ns.timeout is not None and ns.timeout < 0:
        raise UserError("--timeout must be 0 or more seconds")
    if rec.active:
        print(f"waiting for run {rec.id} ({rec.status}) ...", file=sys.stderr)
    waited = wait.wait(rec, timeout_s=ns.timeout)
    if waited.timed_out:
        print(f"run {rec.id} is still {waited.record.status} after {ns.timeout:g}s", file=sys.stderr)
    else:
        print(notify.notice(waited.record).text)
    return waited.exit_status


def _run_dir_of(ref: str) -> Path:
    from engine.ops.runs import resolve

    src = resolve(ref)
    if src.run_dir is None:
        what = f"run {src.record.id} ({src.record.status})" if src.record else ref
        raise UserError(f"{what} has no run folder yet: nothing to prune or strip")
    return Path(src.run_dir)


def _print_plan(plan, verb: str) -> None:
    from engine.ops.disk import fmt_bytes

    print(f"run folder: {plan.run_dir}")
    for item in plan.items:
        what = f"{verb}, frees {fmt_bytes(item.freed_bytes)}" if item.action != "keep" else \
            "keep: " + "; ".join(item.reasons)
        print(f"  {item.name:18} {fmt_bytes(item.size_bytes):>9}  {what}")
    if not plan.items:
        print("  no checkpoint")


def _apply_plan(ns, plan, verb: str, question: str) -> int:
    from engine.ops import checkpoints as ckpt_ops
    from engine.ops.disk import fmt_bytes

    chosen = plan.chosen
    if not ns.json:
        _print_plan(plan, verb)
        print(f"{verb} {len(chosen)} checkpoint(s), {len(plan.kept)} kept: frees {fmt_bytes(plan.freed_bytes)}")
    if ns.dry_run or not chosen:
        if ns.json:
            _dump({"plan": plan.to_json(), "applied": None})
        elif not chosen:
            print(f"nothing to {verb}")
        return 0
    if not ns.yes and not _confirm(question.format(n=len(chosen), size=fmt_bytes(plan.freed_bytes)), default=False):
        why = "not confirmed" if sys.stdin.isatty() else "no terminal to confirm on: add --yes"
        raise UserError(f"nothing changed: {why}")
    done = ckpt_ops.apply(plan)
    if ns.json:
        _dump({"plan": plan.to_json(), "applied": done.to_json()})
    else:
        for path, why in done.refused:
            print(f"refused: {why}")
        print(f"{ {'delete': 'deleted', 'strip': 'stripped'}[verb]} {len(done.done)} checkpoint(s), freed "
              f"{fmt_bytes(done.freed_bytes)}")
    return 0 if not done.refused else 1


def cmd_prune(ns) -> int:
    from engine.ops import checkpoints as ckpt_ops

    plan = ckpt_ops.plan_prune(_run_dir_of(ns.run), keep_last=ns.keep_last, keep_best=ns.keep_best)
    return _apply_plan(ns, plan, "delete", "Delete these {n} checkpoint(s) ({size})?")


def cmd_strip(ns) -> int:
    from engine.ops import checkpoints as ckpt_ops

    plan = ckpt_ops.plan_strip(_run_dir_of(ns.run), keep_last=ns.keep_last)
    return _apply_plan(ns, plan, "strip", "Strip the optimizer state of these {n} checkpoint(s) ({size})? They "
                                          "can no longer be resumed")


def cmd_disk(ns) -> int:
    from engine.ops.disk import disk_summary, fmt_bytes

    summary = disk_summary(Path(ns.output_dir))
    if ns.json:
        _dump(summary.to_json())
        return 0
    print(f"{summary.output_dir}: {fmt_bytes(summary.size_bytes)} in {len(summary.runs)} run folder(s); "
          f"{fmt_bytes(summary.volume_free)} free of {fmt_bytes(summary.volume_total)} on its volume")
    for r in summary.runs:
        who = " ".join(x for x in (r.label, r.run_id and f"({r.run_id})") if x)
        print(f"  {r.name:24} {fmt_bytes(r.size_bytes):>9}  {r.status:9} {who}".rstrip())
        for c in r.checkpoints:
            flags = [f for f, on in (("last", c.is_last), ("best", c.is_best), ("resumable", c.resumable)) if on]
            opt = f"optimizer {fmt_bytes(c.optimizer_bytes)}" if c.optimizer_bytes else "no optimizer state"
            print(f"    {c.name:22} {fmt_bytes(c.size_bytes):>9}  {opt:22} {' '.join(flags)}".rstrip())
    strippable = sum(r.optimizer_bytes for r in summary.runs)
    if strippable:
        print(f"optimizer states: {fmt_bytes(strippable)} (swiftdeck strip RUN frees those of checkpoints that "
              "won't be resumed; swiftdeck prune RUN --keep-last N deletes old checkpoints)")
    return 0


# ---------------------------------------------------------------- parser

def _dashboard_options(p: argparse.ArgumentParser, *, top: bool) -> None:
    """--output-dir, --theme and --readonly: on the top level and again after a dashboard command."""
    default = None if top else argparse.SUPPRESS
    p.add_argument("--output-dir", type=Path, default=default, metavar="DIR",
                   help="where to look for ms-swift run folders (default: ./output); the dashboard opens the "
                        "newest run under it")
    p.add_argument("--theme", default=default, metavar="NAME", help=THEMES_HELP)
    p.add_argument("--readonly", action="store_true", default=False if top else argparse.SUPPRESS,
                   help="watch only: every action that starts, stops, deletes or merges is refused")


SWIFT_HELP = ("the `swift` command of the ms-swift environment to drive (a venv or conda env with its own torch; "
              "ms-swift 3.x or 4.x), e.g. ~/venv-swift3/bin/swift; also $SWIFTDECK_SWIFT. Default: the `swift` "
              "installed with swiftdeck")


def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog="swiftdeck", description=(
        "Dashboard and engine for ms-swift LoRA fine-tuning. Without a command: the dashboard on the newest run "
        "(in a terminal; `swiftdeck runs` otherwise)."))
    _dashboard_options(p, top=True)
    p.add_argument("--swift", metavar="PATH", default=None, help=SWIFT_HELP)
    p.set_defaults(func=cmd_dashboard, face="dashboard")
    sub = p.add_subparsers(dest="cmd", metavar="COMMAND")

    def command(name: str, help_text: str, func, face: str | None = None, dashboard: bool = False):
        s = sub.add_parser(name, help=help_text, description=help_text[:1].upper() + help_text[1:] + ".")
        s.set_defaults(func=func, face=face)
        s.add_argument("--swift", metavar="PATH", default=argparse.SUPPRESS, help=SWIFT_HELP)
        if dashboard:
            _dashboard_options(s, top=False)
        return s

    s = command("attach", "open a run in the dashboard (in a terminal); elsewhere print its steps until it ends",
                cmd_attach, face="attach", dashboard=True)
    s.add_argument("run", metavar="RUN", help="registry id (or a unique prefix), run folder or console log")

    s = command("demo", "build the tiny offline model and dataset, train a real LoRA on it, show it live", cmd_demo,
                face="demo", dashboard=True)
    s.add_argument("--build-only", action="store_true", help="only build (cached) and print the paths")
    s.add_argument("--json", action="store_true", help="with --build-only: print {\"model\", \"dataset\"}")
    s.add_argument("--epochs", type=int, help="training epochs (default: the demo's own, enough to learn its answers; "
                   "for --kind grpo: steps)")
    s.add_argument("--kind", choices=DEMO_KINDS, default="sft", help="sft: the self-cognition LoRA (default); dpo: "
                   "`swift rlhf --rlhf_type dpo` on identity preference pairs, then a check that the adapter "
                   "prefers the chosen answers; grpo: a few GRPO steps with built-in rewards, completions shown")
    s.add_argument("--adapter", metavar="CKPT", help="with --kind dpo|grpo: start from this SFT LoRA checkpoint "
                   "(e.g. the SFT demo's last one) instead of the base model")

    s = command("serve", "the same dashboard in a browser (127.0.0.1 unless --host is given)", cmd_dashboard,
                face="serve", dashboard=True)
    s.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    s.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    s.add_argument("--run", default=None, metavar="RUN", help="open this run (default: the newest)")

    s = command("train", "check and launch `swift sft|pt|rlhf ARGS` detached (swiftdeck train [--kind K] -- ARGS)",
                cmd_train)
    s.add_argument("--kind", choices=("sft", "pt", "rlhf"), help="which ms-swift training command (default: the "
                   "pasted line's `swift <kind>`, else sft); rlhf takes --rlhf_type dpo|kto|orpo|simpo|grpo|…")
    s.add_argument("--wait", action="store_true", help="follow the run until it ends; exit code = the run's")
    s.add_argument("--fix", action="store_true", help="apply the proposed fixes without asking")
    s.add_argument("--label", help="a name for the run")
    g = s.add_argument_group("GPUs, processes and nodes (kept in the run's command: stop, resume and relaunch keep "
                             "them)")
    g.add_argument("--gpus", metavar="0,1", help="the GPUs to use (CUDA_VISIBLE_DEVICES)")
    g.add_argument("--nproc", type=int, metavar="N", help="processes per node, one per GPU (NPROC_PER_NODE: "
                   "ms-swift runs torchrun, DDP)")
    g.add_argument("--deepspeed", metavar="PRESET", help="zero0|zero1|zero2|zero3|zero2_offload|zero3_offload or a "
                   "json file (needs the deepspeed package)")
    g.add_argument("--nnodes", type=int, metavar="N", help="nodes of a multi-node run (NNODES); each node runs its "
                   "own `swiftdeck train` with the same arguments and its --node-rank")
    g.add_argument("--node-rank", type=int, metavar="R", help="this node's rank, 0 on the master (NODE_RANK)")
    g.add_argument("--master-addr", metavar="HOST", help="address of the node with rank 0 (MASTER_ADDR)")
    g.add_argument("--master-port", type=int, metavar="PORT", help="torchrun's port on the master (MASTER_PORT, "
                   "default 29500)")
    g.add_argument("--preflight", action="store_true", help="only check: the arguments, the dataset, each selected "
                   "GPU's free memory and other processes, free disk, a memory estimate; exit 0 if nothing blocks")
    g.add_argument("--share-gpus", action="store_true", help="launch even onto GPUs that other processes fill "
                   "(otherwise asked on a terminal, refused elsewhere)")
    s.add_argument("swift_args", nargs=argparse.REMAINDER, metavar="-- ARGS",
                   help="the swift arguments; a pasted `[VAR=value ...] swift sft|pt|rlhf ...` line works too")

    s = command("resume", "resume a training run from a checkpoint (the dashboard's R), optionally with changed flags",
                cmd_resume)
    s.add_argument("run", metavar="RUN", help="registry id of the run")
    s.add_argument("checkpoint", nargs="?", metavar="CHECKPOINT", help="checkpoint-N (default: the newest resumable)")
    s.add_argument("--set", metavar="'--FLAG VALUE ...'", help="flags to change, e.g. --set '--num_train_epochs 6'")
    s.add_argument("--fix", action="store_true", help="apply the proposed fixes without asking")
    s.add_argument("--wait", action="store_true", help="follow the run until it ends; exit code = the run's")

    s = command("runs", "list the training runs (--all: chat workers, deploys and merges too)", cmd_runs)
    s.add_argument("--all", action="store_true", help="also list chat workers, deploys and merges (jobs)")
    s.add_argument("--json", action="store_true", help="one object per run (with --all: jobs too, \"group\": "
                                                        "\"job\")")

    s = command("stop", "stop a run (training: a checkpoint at the next step) and confirm its tree is gone", cmd_stop)
    s.add_argument("run", metavar="RUN", help="registry id or run folder")
    s.add_argument("--force", action="store_true", help="kill the whole process tree now")
    s.add_argument("--timeout", type=float, default=120.0, help="seconds to wait before escalating (default 120)")

    s = command("metrics", "per-step metrics and the final summary of a run", cmd_metrics)
    s.add_argument("run", metavar="RUN", help="registry id, run folder or console log")
    s.add_argument("--json", action="store_true", help="one JSON object (streamed: same as --format json)")
    s.add_argument("--format", choices=("table", "json", "jsonl", "csv"), default="table",
                   help="jsonl: one JSON object per step; csv: a header of every logged key (default: table)")

    s = command("checkpoints", "run folders and checkpoints with their metadata", cmd_checkpoints)
    s.add_argument("output_dir", nargs="?", default="output", metavar="OUTPUT_DIR")
    s.add_argument("--json", action="store_true")

    s = command("chat", "chat with a base model or checkpoint in the terminal (--once PROMPT)", cmd_chat)
    from engine import chat_cli

    chat_cli.add_arguments(s)

    s = command("check-identity", "ask the identity questions (你是谁? …) and the dataset's own: base vs adapter",
                cmd_check_identity)
    s.add_argument("checkpoint", metavar="CKPT")
    s.add_argument("--dataset", metavar="FILE", help="expected answers (default: the dataset in CKPT/args.json)")
    s.add_argument("--sample", type=int, default=5, help="dataset questions to add to the three (default 5)")
    s.add_argument("--json", action="store_true")

    s = command("check-preference", "does a DPO/ORPO/SimPO LoRA checkpoint prefer its pairs' chosen answers? "
                "(log-probs under the reference and the adapter)", cmd_check_preference)
    s.add_argument("checkpoint", metavar="CKPT")
    s.add_argument("--dataset", metavar="FILE", help="preference pairs (default: the dataset in CKPT's args.json)")
    s.add_argument("--sample", type=int, help="only the first N pairs")
    s.add_argument("--json", action="store_true")

    s = command("deploy", "swift deploy as a managed job on 127.0.0.1 (OpenAI-compatible API)", cmd_deploy)
    s.add_argument("--adapters", nargs="+", metavar="[NAME=]CKPT", help="LoRA checkpoints to serve")
    s.add_argument("--model", help="base model (default: from the adapter's args.json)")
    s.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    s.add_argument("--port", type=int, help="port (default: the first free one from 8000)")
    s.add_argument("--timeout", type=float, default=300.0, help="seconds to wait for /health")
    s.add_argument("extra", nargs=argparse.REMAINDER, help="-- more swift deploy arguments")

    s = command("merge", "swift export --merge_lora as a background job: CKPT-merged/", cmd_merge)
    s.add_argument("checkpoint", metavar="CKPT")
    s.add_argument("--device-map-cpu", action="store_true", help="merge on the CPU (avoids CUDA OOM)")
    s.add_argument("--wait", action="store_true", help="wait until it is written")

    s = command("leftovers", "live processes of ended swiftdeck runs; offer to stop them", cmd_leftovers)
    s.add_argument("--stop", action="store_true", help="stop them without asking")
    s.add_argument("--json", action="store_true")

    s = command("diagnose", "why a run (or any ms-swift console log) failed, with remedies", cmd_diagnose)
    s.add_argument("target", metavar="RUN|LOGFILE|-", help="-: read pasted text from stdin")
    s.add_argument("--exit-code", type=int, help="the process exit code, for a bare log file")
    s.add_argument("--json", action="store_true")

    s = command("check-dataset", "check a dataset file: syntax, fields, duplicates, identity, lengths",
                cmd_check_dataset)
    s.add_argument("file", metavar="FILE")
    s.add_argument("--model", help="tokenize with this model's tokenizer and chat template")
    s.add_argument("--max-length", type=int, help="count the rows ms-swift would drop at this max_length")
    s.add_argument("--system", help="the run's --system prompt (it counts towards the length)")
    s.add_argument("--rlhf-type", choices=RLHF_TYPES, help="also check the columns `swift rlhf --rlhf_type T` "
                   "needs (rejected_response for dpo/orpo/simpo/cpo/rm, label for kto; prompts alone are fine "
                   "for grpo)")
    s.add_argument("--json", action="store_true")

    s = command("compare", "compare runs: final/best loss, eval loss, best checkpoint, the arguments that differ, a "
                "resumed run joined to its parent", cmd_compare)
    s.add_argument("runs", nargs="+", metavar="RUN", help="registry id (or a unique prefix) or run folder")
    s.add_argument("--json", action="store_true", help="the table and each run's loss curve (joined_loss: a resumed "
                                                        "run continues its parent's)")
    s.add_argument("--no-series", action="store_true", help="with --json: leave the loss curves out")

    s = command("wait", "wait until a run ends: exit 0 finished, 1 failed/stopped/lost, 124 timed out", cmd_wait)
    s.add_argument("run", metavar="RUN", help="registry id (or a unique prefix) or run folder")
    s.add_argument("--timeout", type=float, metavar="S", help="give up after S seconds (exit 124)")

    s = command("prune", "delete old checkpoints of a run: keep the best and the last N, and any a live process "
                "needs", cmd_prune)
    s.add_argument("run", metavar="RUN", help="registry id or run folder")
    s.add_argument("--keep-last", type=int, required=True, metavar="N", help="keep the N newest checkpoints")
    s.add_argument("--keep-best", action=argparse.BooleanOptionalAction, default=True,
                   help="keep the best checkpoint too (ms-swift's best, else lowest eval loss, else lowest train "
                        "loss; default: on)")
    s.add_argument("--dry-run", action="store_true", help="only show what would be deleted and the bytes freed")
    s.add_argument("--yes", "-y", action="store_true", help="do not ask (needed without a terminal)")
    s.add_argument("--json", action="store_true")

    s = command("strip", "remove the optimizer states of a run's checkpoints that won't be resumed (all but the "
                "last N)", cmd_strip)
    s.add_argument("run", metavar="RUN", help="registry id or run folder")
    s.add_argument("--keep-last", type=int, default=1, metavar="N",
                   help="leave the N newest checkpoints resumable (default 1)")
    s.add_argument("--dry-run", action="store_true", help="only show what would be stripped and the bytes freed")
    s.add_argument("--yes", "-y", action="store_true", help="do not ask (needed without a terminal)")
    s.add_argument("--json", action="store_true")

    s = command("disk", "disk use of an output dir: each run and checkpoint, optimizer states, free space",
                cmd_disk)
    s.add_argument("output_dir", nargs="?", default="output", metavar="OUTPUT_DIR")
    s.add_argument("--json", action="store_true")
    return p


def parse(argv: list[str]) -> argparse.Namespace:
    """The parsed command line; `face` says which dashboard it opens (None: a plain command). A `--swift PATH` is
    checked and selected here (engine.swift_env.select), for this process and every process it starts."""
    ns = build_parser().parse_args(argv)
    if ns.face == "demo" and ns.build_only:
        ns.face = None
    if ns.swift is not None:
        from engine import swift_env

        try:
            swift_env.select(ns.swift)
        except swift_env.SwiftEnvError as exc:
            raise UserError(f"--swift {ns.swift}: {exc}") from None
    return ns


def wants_json(argv_or_ns) -> bool:
    """The command asked for JSON output (`--json`, `--format json|jsonl`): its errors are JSON too."""
    if isinstance(argv_or_ns, argparse.Namespace):
        return bool(getattr(argv_or_ns, "json", False)) or getattr(argv_or_ns, "format", None) in ("json", "jsonl")
    argv = list(argv_or_ns)
    return "--json" in argv or any(a in ("--format=json", "--format=jsonl") for a in argv) or any(
        a == "--format" and b in ("json", "jsonl") for a, b in zip(argv, argv[1:]))


def report_error(message: str, *, as_json: bool, code: int = EXIT_USAGE) -> int:
    """One line on stderr: `swiftdeck: MESSAGE`, or with --json `{"error": MESSAGE, "exit_code": N}`; returns N."""
    if as_json:
        sys.stderr.write(orjson.dumps({"error": message, "exit_code": code}).decode() + "\n")
    else:
        print(f"swiftdeck: {message}", file=sys.stderr)
    return code


def run(ns: argparse.Namespace) -> int:
    """Run a parsed plain command; every SwiftdeckError is one line on stderr (JSON with --json), exit code 2."""
    try:
        return ns.func(ns)
    except SwiftdeckError as exc:
        return report_error(str(exc), as_json=wants_json(ns))
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `swiftdeck ... | head`
        sys.stderr.close()
        return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        ns = parse(argv)
    except SwiftdeckError as exc:
        return report_error(str(exc), as_json=wants_json(argv))
    if ns.face == "dashboard" and ns.cmd is None:
        ns.func = cmd_runs
        ns.json = ns.all = False
    return run(ns)


if __name__ == "__main__":
    sys.exit(main())
