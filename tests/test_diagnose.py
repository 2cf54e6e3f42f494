"""engine.diagnose on real ms-swift console logs: tests/data/failures/*.log were recorded from real failing runs on
the CPU machine (each .json sidecar holds the command, the exit code and the expected kind); the CUDA OOM is the
real H200 recording in tests/data/ms-swift-4.6. No ms-swift runs here."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine import diagnose as dg

FAILURES = Path(__file__).parent / "data" / "failures"
RECORDED = sorted(FAILURES.glob("*.json"))


@pytest.fixture(autouse=True)
def _isolated_home(home):
    """diagnose may read engine.swift_args' cache under the data dir: never the real user's."""


def _meta(name: str) -> dict:
    return json.loads((FAILURES / f"{name}.json").read_text(encoding="utf-8"))


def _log(name: str) -> str:
    return (FAILURES / f"{name}.log").read_text(encoding="utf-8")


def _diag(name: str, **kw) -> dg.Diagnosis:
    meta = _meta(name)
    kw.setdefault("exit_code", meta["exit_code"])
    return dg.diagnose_file(FAILURES / f"{name}.log", **kw)


@pytest.fixture
def oom_text(swift_fixtures) -> str:
    return (swift_fixtures / "oom-h200.stdout").read_text() + (swift_fixtures / "oom-h200.stderr").read_text()


# ---- every recorded log gets its kind ---------------------------------------------------------------

def test_recordings_cover_the_kinds():
    kinds = {json.loads(p.read_text())["kind"] for p in RECORDED}
    assert kinds >= {"unknown_argument", "model_type_ambiguous", "template_ambiguous", "dataset_not_found",
                     "dataset_invalid", "dataset_empty_after_filter", "model_not_found", "tokenizer_load_failed",
                     "not_an_adapter", "resume_failed", "cpu_bf16_unsupported", "killed_by_signal", "unknown",
                     "address_in_use"}
    assert kinds <= set(dg.KINDS)
    assert sum(p.stat().st_size for p in FAILURES.iterdir()) < 1_000_000


@pytest.mark.parametrize("sidecar", RECORDED, ids=lambda p: p.stem)
def test_recorded_failure_is_classified(sidecar):
    meta = json.loads(sidecar.read_text(encoding="utf-8"))
    d = dg.diagnose_file(sidecar.with_suffix(".log"), exit_code=meta["exit_code"])
    assert d.kind == meta["kind"], d.format()
    assert d.summary and "\n" not in d.summary
    assert d.remedies or d.kind == "unknown"
    js = d.to_json()
    assert {"kind", "summary", "remedies", "evidence"} <= set(js)
    json.dumps(js)  # serialisable


@pytest.mark.parametrize("sidecar", RECORDED, ids=lambda p: p.stem)
def test_same_log_without_exit_code(sidecar):
    """The live supervisor may diagnose before it knows the exit code: a traceback alone must suffice."""
    meta = json.loads(sidecar.read_text(encoding="utf-8"))
    if meta["kind"] == "killed_by_signal":
        pytest.skip("a signal leaves no traceback: the exit code is the evidence")
    assert dg.diagnose_file(sidecar.with_suffix(".log")).kind == meta["kind"]


# ---- the GPU OOM fixture --------------------------------------------------------------------------------

def test_cuda_oom_numbers_and_remedies(oom_text):
    d = dg.diagnose(oom_text, exit_code=1)
    assert d.kind == "cuda_oom"
    det = d.details
    assert (det["requested"], det["free"], det["total"], det["gpu"]) == ("886.00 MiB", "353.56 MiB", "139.80 GiB", 0)
    assert det["other_processes"] == [{"pid": 2727, "used": "133.79 GiB"}]
    assert det["this_process"] == "5.65 GiB"
    assert "process 2727 holds 133.79 GiB" in d.summary and "886.00 MiB" in d.summary
    text = "\n".join(d.remedies)
    assert "process 2727 holds 133.8 GiB" in d.remedies[0]  # the other process is the real culprit: first
    # args come from the log itself: bs 32, GA 1 ("Setting args.gradient_accumulation_steps: 1"), max_length 4096
    assert "--per_device_train_batch_size 16 --gradient_accumulation_steps 2" in text
    assert "--max_length 2048" in text and "--lora_rank 4" in text
    assert "--gradient_checkpointing" not in text  # already on in that run (gradient_checkpointing=True)
    assert d.details["output_dir"] == "/tmp/w/oom/v2-20261127-174354"
    assert "torch.OutOfMemoryError: CUDA out of memory" in d.evidence


def test_cuda_oom_args_from_args_json_or_argv(oom_text):
    d = dg.diagnose(oom_text, args={"per_device_train_batch_size": 6, "gradient_accumulation_steps": 4,
                                    "gradient_checkpointing": False, "max_length": 1024, "lora_rank": 16})
    text = "\n".join(d.remedies)
    assert "--per_device_train_batch_size 3 --gradient_accumulation_steps 8" in text  # 6x4 == 3x8
    assert "--gradient_checkpointing true" in text and "--max_length 512" in text and "--lora_rank 8" in text
    d = dg.diagnose(oom_text, args=["--per_device_train_batch_size", "3", "--gradient_accumulation_steps", "2"])
    assert "--per_device_train_batch_size 1 --gradient_accumulation_steps 6" in "\n".join(d.remedies)


def test_cuda_oom_in_export_suggests_cpu_merge(oom_text):
    d = dg.diagnose(oom_text, command="export", args={"merge_lora": True})
    assert d.kind == "cuda_oom" and d.remedies[0].startswith("--device_map cpu")
    assert not any("per_device_train_batch_size" in r for r in d.remedies)


def test_oom_with_rank_prefixes_crlf_and_glued_tqdm(oom_text):
    lines = oom_text.splitlines()
    exc = next(i for i, ln in enumerate(lines) if ln.startswith("torch.OutOfMemoryError"))
    # torchrun prefixes every line; a tqdm bar redraw (\r) is glued in front of the exception line
    lines[exc] = "Train:   0%|          | 0/2 [00:11<?, ?it/s]\rTrain:   0%|          | 0/2 [00:11<?, ?it/s]" + lines[exc]
    mangled = "\r\n".join(f"[rank0]: {ln}" for ln in lines)
    d = dg.diagnose(mangled, exit_code=1)
    assert d.kind == "cuda_oom" and d.details["other_processes"][0]["pid"] == 2727
    assert "--per_device_train_batch_size 16 --gradient_accumulation_steps 2" in "\n".join(d.remedies)


def test_huge_log_is_read_bounded(tmp_path, oom_text):
    head, tail = oom_text[:20000], oom_text[20000:]
    filler = "Train:  50%|#####     | 1/2 [00:01<00:01, 1.0it/s]\r" * 20000 + "\n"
    path = tmp_path / "console.log"
    path.write_text(head + filler * 10 + tail, encoding="utf-8")
    assert path.stat().st_size > 5 * (dg.HEAD_BYTES + dg.TAIL_BYTES)
    assert len(dg.read_bounded(path).encode()) < dg.HEAD_BYTES + dg.TAIL_BYTES + 200
    d = dg.diagnose_file(path, exit_code=1)
    assert d.kind == "cuda_oom" and d.details["output_dir"] == "/tmp/w/oom/v2-20261127-174354"


# ---- kind-specific details ------------------------------------------------------------------------------

def test_unknown_argument_names_flags_and_renames():
    d = _diag("unknown_argument")
    assert d.details["flags"] == ["--train_type", "--lora_ranks"]
    assert "--train_type" in d.summary and "--lora_ranks" in d.summary
    assert d.remedies[0] == "use --tuner_type instead of --train_type (renamed in ms-swift 4.x)"
    # no cached introspection of ms-swift's flags in a fresh home: diagnose never spawns it
    assert d.remedies[1] == "remove --lora_ranks: `swift sft` has no such option"


@pytest.mark.slow
def test_unknown_argument_suggests_the_close_flag(home):
    """Once engine.swift_args has asked the installed ms-swift for its flags (one real subprocess)."""
    from engine import swift_args

    assert "--lora_rank" in swift_args.valid_flags("sft")
    assert _diag("unknown_argument").remedies[1] == "--lora_ranks: did you mean --lora_rank?"


@pytest.mark.parametrize("name,flag,cands,pick", [
    ("model_type_ambiguous", "--model_type", ["qwen2", "qwen2_gte"], "qwen2"),
    ("template_ambiguous", "--template",
     ["qwen", "qwen2_5", "qwen2_5_math", "marco_o1", "qwq_preview", "qwq", "deepseek_r1"], "qwen2_5"),
])
def test_ambiguous_lists_candidates(name, flag, cands, pick):
    d = _diag(name)
    assert d.details["candidates"] == cands
    assert d.remedies[0].startswith(f"add {flag} {pick}")
    assert all(c in d.summary for c in cands)


def test_dataset_empty_after_filter_counts_rows():
    d = _diag("dataset_empty_after_filter")
    assert d.details["dropped"] == 50 and d.details["max_length"] == 16
    assert "all 50 rows" in d.summary and "--max_length 16" in d.summary
    assert "Dataset filtered, origin length: 50, filtered dataset length: 0" in d.evidence
    assert "TypeError" in d.evidence  # the unrelated error ms-swift dies with is shown, not blamed
    assert any("--max_length 2048" in r for r in d.remedies)


def test_rows_rejected_by_preprocessing_is_dataset_invalid():
    """Unknown columns: ms-swift logs an error per row, deletes them all, then dies of ZeroDivisionError."""
    d = _diag("dataset_invalid-columns")
    assert d.kind == "dataset_invalid"
    assert "AssertionError: messages: []" in d.summary and "(2 rows)" in d.summary


def test_dataset_invalid_json_points_to_check_dataset():
    d = _diag("dataset_invalid")
    assert d.details["dataset"] == "/tmp/diagrec/bad.json" and d.details["position"] == 74
    assert "Unexpected character found when decoding array value" in d.summary
    assert "swiftdeck check-dataset /tmp/diagrec/bad.json" in d.remedies[0]


def test_not_found_paths():
    assert _diag("model_not_found").details["model"] == "/tmp/diagrec/no-such-model"
    hub = _diag("model_not_found-hub")
    assert hub.details["network"] and "Qwen/Qwen9-0.5B-Nonexistent" in hub.summary
    assert _diag("dataset_not_found").details["dataset"] == "/tmp/diagrec/data/train.json"


def test_not_an_adapter_variants():
    merged = _diag("not_an_adapter")
    assert merged.details["path"].endswith("checkpoint-4-merged")
    assert "--model" in merged.remedies[0]
    missing = _diag("not_an_adapter-missing")
    assert missing.details["missing"] and "does not exist" in missing.summary


def test_tokenizer_failure_names_the_model():
    d = _diag("tokenizer_load_failed")
    assert d.details["model"] == "/tmp/diagrec/broken-tok"
    assert "Unterminated string" in d.summary


def test_resume_failed_missing_checkpoint():
    d = _diag("resume_failed")
    assert d.details["missing"] and d.details["checkpoint"] == "/tmp/diagrec/train/v0-missing/checkpoint-4"


def test_bf16_on_cpu():
    d = _diag("cpu_bf16_unsupported")
    assert d.remedies[0].startswith("--torch_dtype float32")


def test_killed_by_sigkill_and_sigint():
    d = _diag("killed_by_signal")
    assert d.details["signal_name"] == "SIGKILL" and "out-of-memory killer" in d.summary
    assert d.details["checkpoint"] and "--resume_from_checkpoint" in d.remedies[-1]
    text = _log("killed_by_signal")
    for code in (-9, 137, 247):  # wrapper signalled, shell-reported, child killed through the wrapper
        assert dg.diagnose(text, exit_code=code).details["signal"] == 9
    assert dg.diagnose(text, exit_code=254).details["signal_name"] == "SIGINT"
    assert dg.diagnose(text, exit_code=241).details["signal_name"] == "SIGTERM"
    assert _diag("killed_by_signal-sigint").details["signal_name"] == "SIGINT"


def test_unknown_shows_last_traceback():
    d = _diag("unknown")
    assert "Traceback (most recent call last):" in d.evidence
    assert d.summary.startswith(d.details["exception"].rsplit(".", 1)[-1])


def test_success_is_not_a_failure(swift_fixtures):
    text = (swift_fixtures / "sft-tiny-h200.stdout").read_text() + (swift_fixtures / "sft-tiny-h200.stderr").read_text()
    assert dg.diagnose(text, exit_code=0).kind == "no_failure"


# ---- match_line -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("sidecar", RECORDED, ids=lambda p: p.stem)
def test_match_line_never_names_a_wrong_kind(sidecar):
    kind = json.loads(sidecar.read_text())["kind"]
    found = {dg.match_line(ln) for ln in sidecar.with_suffix(".log").read_text().splitlines()} - {None}
    assert found <= {kind}
    if sidecar.stem in ("unknown_argument", "model_type_ambiguous", "template_ambiguous", "cpu_bf16_unsupported",
                        "dataset_not_found", "dataset_not_found-torchrun", "disk_full", "cpu_oom", "nccl_error",
                        "nccl_error-timeout", "not_an_adapter", "not_an_adapter-model", "address_in_use"):
        assert found == {kind}  # the supervisor sees these within a line of the failure


def test_match_line_on_real_lines(swift_fixtures):
    oom = [ln for ln in (swift_fixtures / "oom-h200.stderr").read_text().splitlines() if dg.match_line(ln)]
    assert len(oom) == 1 and oom[0].startswith("torch.OutOfMemoryError")
    assert dg.match_line("[rank0]: " + oom[0]) == "cuda_oom"
    for name in ("sft-tiny-h200.stderr", "sft-tiny-h200.stdout", "infer-tiny.stderr", "infer-tiny.stdout"):
        assert not any(dg.match_line(ln) for ln in (swift_fixtures / name).read_text().splitlines()), name
    # remaining_argv tolerated by --ignore_args_error is only a warning
    assert dg.match_line("[WARNING:swift] remaining_argv: ['--foo', '1']") is None


# ---- garbage in -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("text", ["", "\n\n", "\x00\x01\x02" * 1000, "Traceback (most recent call last):",
                                  "Traceback (most recent call last):\n  File \"x\", line 1, in y\n",
                                  "x" * 2_000_000, "\r" * 10000], ids=lambda t: f"{len(t)}-chars-{t[:1]!r}")
def test_garbage_never_crashes(text):
    d = dg.diagnose(text, exit_code=1)
    assert d.kind == "unknown" and isinstance(d.summary, str)


def test_binary_file(tmp_path):
    path = tmp_path / "console.log"
    path.write_bytes(bytes(range(256)) * 4000)
    assert dg.diagnose_file(path, exit_code=-9).kind == "killed_by_signal"


def test_match_line_prefilter_agrees_with_the_regex(swift_fixtures):
    """match_line skips the regex unless an anchor substring is present: it must never skip a real sign."""
    paths = [*FAILURES.glob("*.log"), *(swift_fixtures / n for n in ("oom-h200.stderr", "sft-tiny-h200.stderr"))]
    for path in paths:
        for ln in path.read_text().replace("\r", "\n").splitlines():
            m = dg._LINE_RE.search(ln)
            assert dg.match_line(ln) == (m.lastgroup if m else None), (path.name, ln)


def test_more_recorded_details():
    corrupt = _diag("resume_failed-corrupt")
    assert corrupt.details["corrupt"] and "optimizer.pt" in corrupt.summary
    hub = _diag("dataset_not_found-hub")
    assert hub.details["network"] and hub.details["dataset"] == "data/train.json"
    disk = _diag("disk_full")
    assert disk.details["path"].endswith("/args.json") and "No space left on device" in disk.evidence
    assert disk.details["output_dir"] in disk.remedies[0]
    cpu = _diag("cpu_oom")
    assert cpu.details["requested_bytes"] == 16427036224 and "--max_length 20000 (was 40000" in cpu.remedies[0]
    assert _diag("killed_by_signal-sigterm").details["signal_name"] == "SIGTERM"
    torchrun = _diag("dataset_not_found-torchrun")  # [rank0]: prefixes, then torchrun's ChildFailedError
    assert torchrun.details["exception"] == "ValueError"


def test_nccl_details():
    dup = _diag("nccl_error")
    assert "Duplicate GPU detected" in dup.details["reason"] and dup.details["nccl_version"] == "2.28.9"
    assert "same GPU" in dup.remedies[0]
    hang = _diag("nccl_error-timeout")  # the rank aborted in C++: only torchrun's ChildFailedError is a traceback
    assert (hang.details["op"], hang.details["timeout_ms"]) == ("ALLREDUCE", 20000)
    assert "Watchdog caught collective operation timeout" in hang.evidence
    assert "--ddp_timeout" in hang.remedies[0]


def test_an_old_traceback_does_not_hide_a_later_kill():
    """A traceback followed by 40+ lines of training, then SIGKILL (exit 247): the kill is what ended the run."""
    text = _log("unknown") + "\n" + "\n".join(_log("killed_by_signal").splitlines()[-60:])
    assert dg.diagnose(text, exit_code=247).kind == "killed_by_signal"
    assert dg.diagnose(_log("unknown"), exit_code=247).kind == "unknown"  # a fresh traceback still counts


def test_torchrun_summary_alone_names_the_signal():
    """Without the rank's own lines (only torchrun's summary is left), the root cause's signal is reported."""
    kept = [ln for ln in _log("nccl_error-timeout").splitlines() if not ln.startswith(("[rank", "terminate", "  what"))
            and "NCCL" not in ln and "Watchdog" not in ln]
    d = dg.diagnose("\n".join(kept), exit_code=1)
    assert d.kind == "killed_by_signal" and d.details["signal_name"] == "SIGABRT"


def test_argparse_refusal_without_traceback():
    d = _diag("invalid_argument-value")  # exit 2, usage text, then "sft.py: error: argument --lora_rank/..."
    assert d.kind == "invalid_argument" and "invalid int value: 'abc'" in d.summary
    assert d.details["flags"] == ["--lora_rank"]


def test_deploy_that_lost_its_port_says_address_already_in_use():
    """A real `swift deploy` whose port a listener took after ms-swift checked it (as a second deploy started at
    the same time does): uvicorn logs [Errno 98] and exits 3, no traceback. It used to be 'unknown'."""
    meta = _meta("address_in_use")
    port = int(meta["command"][meta["command"].index("--port") + 1])
    d = _diag("address_in_use")
    assert (d.kind, d.details["port"], d.details["host"], d.details["command"]) == (
        "address_in_use", port, "127.0.0.1", "deploy")
    assert d.summary.startswith(f"127.0.0.1:{port}: address already in use")
    assert "another port" in d.remedies[0] and f"(not {port})" in d.remedies[0]
    assert "swiftdeck stop" in d.remedies[1] and f"sport = :{port}" in d.remedies[1]
    assert f"[Errno 98] error while attempting to bind on address ('127.0.0.1', {port})" in d.evidence
    line = next(ln for ln in _log("address_in_use").splitlines() if "Errno 98" in ln)
    assert dg.match_line(line) == "address_in_use"


def test_torchrun_master_port_in_use():
    """A real `swift sft` under torchrun (NPROC_PER_NODE=2) whose MASTER_PORT another process listened on."""
    port = int(_meta("address_in_use-master_port")["env"]["MASTER_PORT"])
    d = _diag("address_in_use-master_port")
    assert (d.kind, d.details["port"], d.details["server"]) == ("address_in_use", port, False)
    assert d.summary.startswith(f"MASTER_PORT {port}: address already in use")
    assert "MASTER_PORT" in d.remedies[0] and "EADDRINUSE" in d.evidence
