"""`swiftdeck` subcommands that need no UI. `tui.cli` is the console entry point and delegates here.

Every command prints a clear one-line message for bad input (exit 2) instead of a traceback.
"""
from __future__ import annotations

from engine.errors import SwiftdeckError
import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import orjson

from engine import runs

EXIT_USAGE = 2


class UserError(SwiftdeckError):
    """A problem with the user's input: printed as one line, exit code 2."""


def _dump(data) -> None:
    sys.stdout.write(orjson.dumps(data, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY,
                                  default=_json_default).decode() + "\n")


def _json_default(obj):
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "to_json"):
        return obj.to_json()
    raise TypeError(type(obj).__name__)


# ---------------------------------------------------------------- resolving RUN arguments

def record(ref: str) -> runs.RunRecord:
    try:
        return runs.resolve(ref)
    except runs.UnknownRun as exc:
        raise UserError(str(exc)) from None


def reader_for(ref: str):
    """(record or None, RunReader) for a registry id or a run folder / console log path."""
    from engine.ingest import RunReader

    try:
        rec = runs.resolve(ref)
        return rec, RunReader(console_log=rec.console_log, run_dir=Path(rec.run_dir) if rec.run_dir else None)
    except runs.UnknownRun as exc:
        path = Path(ref).expanduser()
        if path.is_dir():
            return None, RunReader(run_dir=path.resolve())
        if path.is_file():
            return None, RunReader(console_log=path.resolve())
        raise UserError(str(exc)) from None


# ---------------------------------------------------------------- train

def _confirm(question: str) -> bool:
    if not sys.stdin.isatty():
        return False
    try:
        return input(f"{question} [Y/n] ").strip().lower() in ("", "y", "yes")
    except EOFError:
        return False


def checked_sft_argv(swift_args: list[str], *, fix: bool, cwd: Path) -> tuple[list[str], list[str]]:
    """Check against the installed ms-swift; print notes and problems; apply fixes if allowed."""
    from engine import swift_args as sa

    check = sa.check_args(swift_args, command="sft", cwd=cwd)
    for note in check.notes:
        print(f"note: {note}")
    if check.problems:
        for problem in check.problems:
            print(f"problem: {problem.message}")
            if problem.suggestions:
                print(f"         did you mean: {', '.join(problem.suggestions)}")
            if problem.fix:
                print(f"         fix: {' '.join(problem.fix)}")
        fixable = all(p.fix for p in check.problems)
        if fixable and (fix or _confirm("Apply these fixes and launch?")):
            printed = set(check.notes)
            check = check.with_fixes()
            for note in check.notes:
                if note not in printed:
                    print(f"note: {note}")
        if not check.ok:
            hint = " (re-run with --fix to apply the proposed fixes)" if fixable else ""
            raise UserError(f"not launched: {len(check.problems)} problem(s) with the swift sft arguments{hint}")
    return check.argv, check.notes


def cmd_train(ns) -> int:
    swift_args = ns.swift_args[1:] if ns.swift_args[:1] == ["--"] else ns.swift_args
    if not swift_args:
        raise UserError("usage: swiftdeck train [--wait] [--fix] -- <swift sft arguments>")
    cwd = Path.cwd()
    argv, notes = checked_sft_argv(swift_args, fix=ns.fix, cwd=cwd)
    return _launch_and_report(argv, cwd=cwd, label=ns.label or "", notes=notes, wait=ns.wait)


def _launch_and_report(argv: list[str], *, cwd: Path, label: str, notes: list[str], wait: bool) -> int:
    from engine import training

    rec = training.start(argv, cwd=cwd, label=label, notes=notes)
    print(f"started run {rec.id} (pid {rec.pid}); it keeps running if this terminal closes")
    print(f"  console: {rec.console_log}")
    print(f"  follow:  swiftdeck attach {rec.id}    stop: swiftdeck stop {rec.id}")
    return follow(rec.id) if wait else 0


def follow(run_id: str, *, out=print) -> int:
    """Print each new logged step until the run ends; exit code = the run's."""
    from engine.events import CheckpointSaved, Metrics, RunDirFound

    rec = runs.load(run_id)
    _, reader = reader_for(run_id)
    while True:
        for event in reader.poll():
            if isinstance(event, Metrics) and "loss" in event.values:
                total = f"/{event.max_steps}" if event.max_steps else ""
                shown = " ".join(f"{k}={v:.4g}" for k, v in event.values.items()
                                 if k in ("loss", "grad_norm", "learning_rate", "token_acc", "eval_loss"))
                out(f"step {event.step}{total}  {shown}")
            elif isinstance(event, CheckpointSaved):
                out(f"saved {event.path}")
            elif isinstance(event, RunDirFound):
                out(f"run folder: {event.path}")
        if not rec.active:
            break
        time.sleep(0.5)
        rec = runs.load(run_id)
    for event in reader.poll():
        if isinstance(event, CheckpointSaved):
            out(f"saved {event.path}")
    out(f"run {rec.id} {rec.status} (exit code {rec.exit_code})")
    return 0 if rec.status == "finished" else 1


# ---------------------------------------------------------------- runs / stop / metrics / checkpoints

def _run_summary(rec: runs.RunRecord) -> dict:
    from engine.ingest import RunReader

    reader = RunReader(console_log=rec.console_log, run_dir=Path(rec.run_dir) if rec.run_dir else None)
    reader.poll()
    state = reader.state
    last = state.metrics[-1] if state.metrics else None
    progress = state.progress
    return {
        **rec.to_json(),
        "step": progress.step if progress else (last.step if last else None),
        "max_steps": progress.max_steps if progress else (last.max_steps if last else None),
        "last_loss": next((m.values["loss"] for m in reversed(state.metrics) if "loss" in m.values), None),
    }


def cmd_runs(ns) -> int:
    rows = [_run_summary(r) for r in runs.all_runs()]
    if ns.json:
        _dump(rows)
        return 0
    if not rows:
        print("no runs yet: start one with `swiftdeck train -- ...` or `swiftdeck demo`")
        return 0
    print(f"{'RUN':32} {'KIND':6} {'STATUS':9} {'STEP':>11} {'LOSS':>8}  {'STARTED':16} RUN FOLDER")
    for r in rows:
        step = f"{r['step']}/{r['max_steps'] or '?'}" if r["step"] is not None else "-"
        loss = f"{r['last_loss']:.4g}" if r["last_loss"] is not None else "-"
        started = time.strftime("%Y-%m-%d %H:%M", time.localtime(r["started_at"]))
        print(f"{r['id']:32} {r['kind']:6} {r['status']:9} {step:>11} {loss:>8}  {started:16} {r['run_dir'] or '-'}")
    return 0


def cmd_stop(ns) -> int:
    from engine import supervisor

    rec = record(ns.run)
    if not rec.active:
        print(f"run {rec.id} is not running ({rec.status})")
        return 0
    how = "force-stopping" if ns.force else "stopping (saves a checkpoint at the next step, then exits)"
    print(f"{how} run {rec.id} ...")
    report = supervisor.stop(rec, force=ns.force, timeout_s=ns.timeout)
    for step in report.steps:
        print(f"  {step}")
    rec = runs.load(rec.id)
    if report.clean:
        print(f"run {rec.id} {rec.status} in {report.seconds:.1f}s; no process of its tree is left")
        return 0
    print(f"run {rec.id}: processes still alive: {report.left}")
    return 1


def cmd_metrics(ns) -> int:
    from engine.ingest import metrics_table

    _, reader = reader_for(ns.run)
    reader.poll()
    state = reader.state
    rows = metrics_table(state)
    summary = state.finished.summary if state.finished else {}
    if ns.json:
        _dump({"metrics": rows, "summary": summary, "finished": state.finished})
        return 0
    keys = [k for k in ("loss", "eval_loss", "learning_rate", "grad_norm", "token_acc", "epoch")
            if any(k in r for r in rows)]
    print(f"{'step':>7} " + " ".join(f"{k:>13}" for k in keys))
    for r in rows:
        print(f"{r['step']:>7} " + " ".join(f"{r[k]:>13.5g}" if k in r else f"{'':>13}" for k in keys))
    if summary:
        print("summary: " + ", ".join(f"{k}={v:.5g}" if isinstance(v, float) else f"{k}={v}"
                                      for k, v in summary.items()))
    return 0


def cmd_checkpoints(ns) -> int:
    from engine import checkpoints

    root = Path(ns.output_dir).expanduser().resolve()
    if not root.exists():
        raise UserError(f"no such folder: {root}")
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


def start_demo(*, epochs: int | None = None):
    from engine import demo, paths, training

    assets_json = build_demo_assets()
    assets = demo.DemoAssets(model=Path(assets_json["model"]), dataset=Path(assets_json["dataset"]))
    out = paths.data_dir() / "demo-output"
    kwargs = {"epochs": epochs} if epochs else {}
    argv = demo.demo_sft_args(assets, out, **kwargs)
    return training.start(argv, cwd=out.parent, label="demo",
                          notes=["offline demo: tiny Qwen2 built locally, self-cognition dataset, LoRA on CPU/GPU"])


def cmd_demo(ns) -> int:
    if ns.build_only:
        assets = build_demo_assets()
        if ns.json:
            _dump(assets)
        else:
            print(f"model:   {assets['model']}\ndataset: {assets['dataset']}")
        return 0
    print("building the offline demo model (cached after the first time) ...")
    rec = start_demo(epochs=ns.epochs)
    print(f"started demo run {rec.id} (pid {rec.pid}); it keeps running if this terminal closes")
    return follow(rec.id)


def cmd_attach(ns) -> int:
    rec = record(ns.run)
    return follow(rec.id)


# ---------------------------------------------------------------- deploy / merge / leftovers

def _adapter_map(items: list[str]) -> dict[str, str]:
    out = {}
    for item in items:
        name, _, path = item.rpartition("=")
        out[name] = path
    return out


def cmd_deploy(ns) -> int:
    from engine import deploy

    try:
        rec = deploy.start(_adapter_map(ns.adapters or []), model=ns.model, host=ns.host, port=ns.port,
                           extra=ns.extra[1:] if ns.extra[:1] == ["--"] else ns.extra, cwd=Path.cwd())
    except deploy.DeployError as exc:
        raise UserError(str(exc)) from None
    for note in rec.notes:
        print(f"warning: {note}")
    print(f"started swift deploy as run {rec.id} (pid {rec.pid}); waiting for /health ...")
    try:
        url = deploy.wait_ready(rec, timeout_s=ns.timeout)
    except deploy.DeployError as exc:
        raise UserError(str(exc)) from None
    models = runs.load(rec.id).meta.get("models", [])
    print(f"ready: {url}/v1  models: {', '.join(models)}   stop: swiftdeck stop {rec.id}")
    return 0


def cmd_merge(ns) -> int:
    from engine import merge

    try:
        rec = merge.start(Path(ns.checkpoint), device_map_cpu=ns.device_map_cpu)
    except merge.MergeError as exc:
        raise UserError(str(exc)) from None
    print(f"merging as run {rec.id} (pid {rec.pid}): {rec.notes[-1]}")
    if not ns.wait:
        return 0
    while (rec := runs.load(rec.id)).active:
        time.sleep(0.5)
    print(f"merge {rec.status} (exit code {rec.exit_code})")
    return 0 if rec.status == "finished" else 1


def cmd_leftovers(ns) -> int:
    from engine import gpu, leftovers

    sampler = gpu.GpuSampler()
    try:
        found = leftovers.find(sampler.sample())
    finally:
        sampler.close()
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
        left = leftovers.stop(found)
        print("stopped" if not left else f"still alive: {left}")
        return 0 if not left else 1
    return 0


# ---------------------------------------------------------------- diagnose / check-dataset

def cmd_diagnose(ns) -> int:
    from engine import diagnose

    try:
        rec = runs.resolve(ns.target)
    except runs.UnknownRun:
        rec = None
    if rec is not None:
        if not rec.console_log.exists():
            raise UserError(f"run {rec.id} has no console log")
        result = diagnose.diagnose_run(rec)  # stopped by the user, finished, or why it failed
    else:
        path = Path(ns.target).expanduser()
        if not path.is_file():
            raise UserError(f"'{ns.target}' is neither a swiftdeck run nor a log file")
        result = diagnose.diagnose_file(path, exit_code=ns.exit_code)
    if ns.json:
        _dump(result.to_json())
    else:
        if rec is not None:
            print(f"run {rec.id}: {rec.status} (exit code {rec.exit_code})")
        print(result.format())
    return 0


def cmd_check_dataset(ns) -> int:
    from engine import dataset_check

    path = Path(ns.file).expanduser()
    if not path.exists():
        raise UserError(f"dataset file not found: {path.resolve()}")
    report = dataset_check.check_dataset(path, model=ns.model, max_length=ns.max_length, system=ns.system)
    if ns.json:
        _dump(report.to_json())
    else:
        print(report.format())
    return 0 if report.ok else 1


# ---------------------------------------------------------------- chat / identity

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


# ---------------------------------------------------------------- parser

def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="swiftdeck", description="Dashboard and engine for ms-swift LoRA fine-tuning.")
    sub = p.add_subparsers(dest="cmd", metavar="COMMAND")

    s = sub.add_parser("train", help="check and launch `swift sft ARGS` detached (swiftdeck train -- ARGS)")
    s.add_argument("--wait", action="store_true", help="follow the run until it ends")
    s.add_argument("--fix", action="store_true", help="apply the proposed fixes without asking")
    s.add_argument("--label", help="a name for the run")
    s.add_argument("swift_args", nargs=argparse.REMAINDER)
    s.set_defaults(func=cmd_train)

    s = sub.add_parser("runs", help="list every known run")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_runs)

    s = sub.add_parser("stop", help="stop a run (graceful: checkpoint at the next step), confirm its tree is gone")
    s.add_argument("run", metavar="RUN", help="registry id or run folder")
    s.add_argument("--force", action="store_true", help="kill the whole process tree now")
    s.add_argument("--timeout", type=float, default=120.0, help="seconds to wait before escalating (default 120)")
    s.set_defaults(func=cmd_stop)

    s = sub.add_parser("metrics", help="per-step metrics and the final summary of a run")
    s.add_argument("run", metavar="RUN", help="registry id, run folder or console log")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_metrics)

    s = sub.add_parser("checkpoints", help="run folders and checkpoints with their metadata")
    s.add_argument("output_dir", nargs="?", default="output", metavar="OUTPUT_DIR")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_checkpoints)

    s = sub.add_parser("demo", help="build the tiny offline model and dataset, train a real LoRA on it")
    s.add_argument("--build-only", action="store_true", help="only build (cached) and print the paths")
    s.add_argument("--json", action="store_true")
    s.add_argument("--epochs", type=int, help=argparse.SUPPRESS)
    s.set_defaults(func=cmd_demo)

    s = sub.add_parser("deploy", help="swift deploy as a managed job on 127.0.0.1 (OpenAI-compatible API)")
    s.add_argument("--adapters", nargs="+", metavar="[NAME=]CKPT", help="LoRA checkpoints to serve")
    s.add_argument("--model", help="base model (default: from the adapter's args.json)")
    s.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    s.add_argument("--port", type=int, help="port (default: the first free one from 8000)")
    s.add_argument("--timeout", type=float, default=300.0, help="seconds to wait for /health")
    s.add_argument("extra", nargs=argparse.REMAINDER, help="-- more swift deploy arguments")
    s.set_defaults(func=cmd_deploy)

    s = sub.add_parser("merge", help="swift export --merge_lora as a background job: CKPT-merged/")
    s.add_argument("checkpoint", metavar="CKPT")
    s.add_argument("--device-map-cpu", action="store_true", help="merge on the CPU (avoids CUDA OOM)")
    s.add_argument("--wait", action="store_true")
    s.set_defaults(func=cmd_merge)

    s = sub.add_parser("leftovers", help="live processes of ended swiftdeck runs; offer to stop them")
    s.add_argument("--stop", action="store_true", help="stop them without asking")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_leftovers)

    s = sub.add_parser("diagnose", help="why a run (or any ms-swift console log) failed, with remedies")
    s.add_argument("target", metavar="RUN|LOGFILE")
    s.add_argument("--exit-code", type=int, help="the process exit code, for a bare log file")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_diagnose)

    s = sub.add_parser("check-dataset", help="check a dataset file: syntax, fields, duplicates, identity, lengths")
    s.add_argument("file", metavar="FILE")
    s.add_argument("--model", help="tokenize with this model's tokenizer and chat template")
    s.add_argument("--max-length", type=int, help="count the rows ms-swift would drop at this max_length")
    s.add_argument("--system", help="the run's --system prompt (it counts towards the length)")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_check_dataset)

    s = sub.add_parser("check-identity", help="the seed's three questions + dataset questions: base vs adapter")
    s.add_argument("checkpoint", metavar="CKPT")
    s.add_argument("--dataset", metavar="FILE", help="expected answers (default: the dataset in CKPT/args.json)")
    s.add_argument("--sample", type=int, default=5, help="dataset questions to add to the three (default 5)")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_check_identity)

    sub.add_parser("chat", help="chat with a base model or checkpoint in the terminal (--once PROMPT)",
                   add_help=False)  # handled by engine.chat_cli (see main)

    s = sub.add_parser("attach", help="follow a run")
    s.add_argument("run", metavar="RUN")
    s.set_defaults(func=cmd_attach)
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["chat"]:
        from engine import chat_cli

        return chat_cli.main(argv[1:])
    parser = build_parser()
    ns = parser.parse_args(argv)
    if not getattr(ns, "func", None):
        ns = parser.parse_args(["runs"])
    try:
        return ns.func(ns)
    except SwiftdeckError as exc:
        print(f"swiftdeck: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `swiftdeck ... | head`
        sys.stderr.close()
        return 0


if __name__ == "__main__":
    sys.exit(main())
