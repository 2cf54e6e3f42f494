"""engine.diagnose across ms-swift versions and the tools around it: real failures recorded on the CPU machine with
ms-swift 3.12.6 and 4.6 (tests/data/failures/<version>/, made by tests/data/failures/record.py), the same failures
pasted as one line, logs cut off mid-traceback, and logs with no failure. No ms-swift runs here."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from engine import diagnose as dg

DATA = Path(__file__).parent / "data"
FAILURES = DATA / "failures"
BY_VERSION = sorted(FAILURES.glob("*/*.json"))


@pytest.fixture(autouse=True)
def _isolated_home(home):
    """diagnose may read engine.swift_args' cache under the data dir: never the real user's."""


def _meta(rel: str) -> dict:
    return json.loads((FAILURES / f"{rel}.json").read_text(encoding="utf-8"))


def _diag(rel: str, **kw) -> dg.Diagnosis:
    kw.setdefault("exit_code", _meta(rel)["exit_code"])
    return dg.diagnose_file(FAILURES / f"{rel}.log", **kw)


def _log(rel: str) -> str:
    return (FAILURES / f"{rel}.log").read_text(encoding="utf-8")


# ---- every recording of each version ------------------------------------------------------------------------

def test_each_version_has_its_recordings():
    kinds = {}
    for p in BY_VERSION:
        meta = json.loads(p.read_text())
        assert meta["version"] == p.parent.name and meta["kind"] in dg.KINDS
        kinds.setdefault(p.parent.name, set()).add(meta["kind"])
    assert kinds["3.12.6"] >= {"unknown_argument", "invalid_argument", "dataset_not_found", "model_not_found",
                               "dataset_invalid", "dataset_empty_after_filter", "not_an_adapter", "resume_failed",
                               "missing_package", "killed_by_signal", "model_type_unknown", "template_unknown",
                               "model_type_ambiguous", "tokenizer_load_failed", "cpu_bf16_unsupported"}
    assert kinds["4.6"] >= {"invalid_argument", "dataset_invalid", "reward_function_not_found", "missing_package",
                            "killed_by_signal", "model_type_unknown", "template_unknown"}
    assert sum(p.stat().st_size for d in FAILURES.iterdir() if d.is_dir() for p in d.iterdir()) < 3_000_000


@pytest.mark.parametrize("sidecar", BY_VERSION, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_recorded_failure_is_classified(sidecar):
    meta = json.loads(sidecar.read_text(encoding="utf-8"))
    d = dg.diagnose_file(sidecar.with_suffix(".log"), exit_code=meta["exit_code"])
    assert d.kind == meta["kind"], d.format()
    assert d.summary and "\n" not in d.summary and (d.remedies and d.evidence or d.kind == "no_failure")
    # the live supervisor may diagnose before it knows the exit code: the log alone must suffice (torchrun's
    # summary names the signal)
    assert dg.diagnose_file(sidecar.with_suffix(".log")).kind == meta["kind"]


# ---- what each recording says ----------------------------------------------------------------------------------

def test_3x_refuses_the_4x_flag_name():
    d = _diag("3.12.6/unknown_argument")
    assert d.details["flags"] == ["--lora_ranks", "--tuner_type"]
    assert "use --train_type instead of --tuner_type (ms-swift 3.x: --tuner_type is the 4.x name)" in d.remedies


@pytest.mark.parametrize("version", ["3.12.6", "4.6"])
def test_bad_rlhf_type_lists_the_choices(version):
    d = _diag(f"{version}/invalid_argument-rlhf_type")
    assert d.details["flags"] == ["--rlhf_type"] and "'dpoo'" in d.summary
    assert d.remedies[0].startswith("--rlhf_type: use one of 'dpo', 'orpo'") and "(not 'dpoo')" in d.remedies[0]


@pytest.mark.parametrize("version", ["3.12.6", "4.6"])
def test_dpo_dataset_without_rejected_response(version):
    d = _diag(f"{version}/dataset_invalid-dpo_no_rejected")
    assert d.details["missing"] == "rejected_response" and "--rlhf_type dpo" in d.summary
    assert "rejected_response" in d.remedies[0]


@pytest.mark.parametrize("version, sig, name, cause", [
    ("3.12.6", 9, "SIGKILL", "out-of-memory killer"), ("3.12.6", 6, "SIGABRT", "abort in native code"),
    ("3.12.6", 11, "SIGSEGV", "segmentation fault"), ("4.6", 9, "SIGKILL", "out-of-memory killer"),
    ("4.6", 6, "SIGABRT", "abort in native code"), ("4.6", 11, "SIGSEGV", "segmentation fault"),
])
def test_torchrun_child_failed_names_signal_and_cause(version, sig, name, cause):
    """torchrun exits 1 and prints its ChildFailedError summary: the rank's exitcode -N is the evidence."""
    rel = f"{version}/killed_by_signal-torchrun-{sig}"
    assert _meta(rel)["exit_code"] == 1
    d = _diag(rel)
    assert (d.details["signal"], d.details["signal_name"], d.details["rank"]) == (sig, name, 0)
    assert d.summary.startswith(f"rank 0 was killed by {name}") and cause in d.summary
    assert d.summary.count(name) == 1 and d.details["rank_failures"][0]["exit_code"] == -sig
    assert f"exitcode -{sig}" in d.evidence
    assert "--resume_from_checkpoint" in d.remedies[-1] and "checkpoint-" in d.remedies[-1]


def test_3x_rows_too_long_are_not_rows_it_could_not_convert():
    """3.x logs a MaxLengthError traceback per row before the dataset is found empty."""
    d = _diag("3.12.6/dataset_empty_after_filter")
    assert d.details["rows_before"] == 50 and "--max_length 16" in d.summary


def test_3x_paths():
    assert _diag("3.12.6/model_not_found").details["model"].endswith("/no-such-model")
    assert _diag("3.12.6/dataset_not_found").details["dataset"].endswith("/nope/train.json")
    assert _diag("3.12.6/resume_failed").details["missing"]
    assert _diag("3.12.6/not_an_adapter").details["path"].endswith("/tiny-qwen2")
    assert _diag("3.12.6/tokenizer_load_failed").details["model"].endswith("/broken-tok")


def test_missing_packages_are_named():
    assert _diag("3.12.6/missing_package-grpo-msgspec").details["package"] == "msgspec"
    assert _diag("3.12.6/missing_package-deepspeed").details["package"] == "deepspeed"
    assert "pip install deepspeed" in _diag("4.6/missing_package-deepspeed").remedies[0]


@pytest.mark.parametrize("version", ["3.12.6", "4.6"])
def test_unknown_model_type_and_template(version):
    assert _diag(f"{version}/model_type_unknown").details["model_type"] == "no_such_type"
    assert _diag(f"{version}/template_unknown").details["template"] == "no_such_template"


def test_grpo_reward_functions():
    named = _diag("4.6/reward_function_not_found")
    assert named.details["reward_function"] == "no_such_reward" and "--external_plugins" in named.remedies[0]
    # without --reward_funcs, 4.6 trains anyway (every reward 0): a real log without a failure
    none = FAILURES / "4.6" / "no_failure-grpo_without_reward.log"
    assert dg.diagnose_file(none).kind == dg.diagnose_file(none, exit_code=0).kind == "no_failure"
    for line in ("ValueError: You must specify reward_funcs or reward_model",):  # its message, pasted
        d = dg.diagnose(line, command="rlhf", args=["--rlhf_type", "grpo"])
        assert d.kind == "reward_function_not_found" and "--reward_funcs NAME" in d.remedies[0]


# ---- one pasted line ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("line, kind", [
    ("ValueError: The local path does not exist, dataset_id: `/d/train.json`. os.path.exists(dataset_id): False",
     "dataset_not_found"),
    ("[rank0]: ValueError: remaining_argv: ['--tuner_type', 'lora']", "unknown_argument"),
    ("\x1b[31m[ERROR:swift] ModuleNotFoundError: No module named 'deepspeed'\x1b[0m", "missing_package"),
    ("torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total capacity of "
     "79.10 GiB of which 1.2 GiB is free.", "cuda_oom"),
    ("ValueError: path: '/ckpt/checkpoint-9' not found", "unknown"),  # a missing model, adapter or checkpoint?
    ("[INFO:swift] Dataset filtered, origin length: 50, filtered dataset length: 0", "dataset_empty_after_filter"),
    ("  exitcode  : -9 (pid: 977)", "killed_by_signal"),  # one line of torchrun's summary
    ("  exitcode  : 1 (pid: 977)", "no_failure"),  # a rank's own error is elsewhere: nothing here says which
])
def test_one_pasted_line(line, kind):
    d = dg.diagnose(line)
    assert d.kind == kind, d.format()


@pytest.mark.parametrize("rel", ["3.12.6/dataset_not_found", "3.12.6/unknown_argument", "4.6/reward_function_not_found",
                                 "3.12.6/invalid_argument-rlhf_type", "dataset_not_found", "model_type_ambiguous"])
def test_the_last_error_line_of_a_recording_alone(rel):
    """What a user pastes: only the exception line (or argparse's error line) of a real failure."""
    line = [ln for ln in _log(rel).splitlines() if ln.strip()][-1]
    assert dg.diagnose(line).kind == _meta(rel)["kind"]


# ---- cut off mid-traceback ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("rel", ["3.12.6/dataset_empty_after_filter", "dataset_empty_after_filter"])
def test_cut_before_the_exception_the_filter_line_decides(rel):
    text = _log(rel)
    cut = text[:text.rfind("Traceback (most recent call last):")] + "Traceback (most recent call last):\n" \
        '  File "/venv/lib/python3.11/site-packages/swift/cli/sft.py", line 10, in <module>\n'
    for code in (None, 1):
        d = dg.diagnose(cut, exit_code=code)
        assert d.kind == "dataset_empty_after_filter" and "filtered dataset length: 0" in d.evidence


@pytest.mark.parametrize("sidecar", [p for p in BY_VERSION if "killed" not in p.stem],
                         ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_any_recording_cut_mid_traceback_is_a_failure(sidecar):
    """Cut inside its last traceback: never no_failure; unknown says the log ends inside a traceback."""
    text = sidecar.with_suffix(".log").read_text(encoding="utf-8")
    at = text.rfind("Traceback (most recent call last):")
    if at < 0:
        pytest.skip("argparse refusals print no traceback")
    cut = text[:at] + "\n".join(text[at:].splitlines()[:3])
    d = dg.diagnose(cut)
    assert d.kind != "no_failure", d.format()
    if d.kind == "unknown" and "exception" not in d.details:
        assert d.summary.startswith("the log ends inside a traceback, before its exception line")


# ---- no failure -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("names", [("ms-swift-3.12", "sft-demo"), ("ms-swift-4.6", "sft-tiny-h200"),
                                   ("ms-swift-4.6", "infer-tiny")], ids=lambda n: "/".join(n))
def test_a_log_without_error_is_no_failure_even_without_exit_code(names):
    folder, stem = DATA / names[0], names[1]
    text = (folder / f"{stem}.stdout").read_text() + (folder / f"{stem}.stderr").read_text()
    d = dg.diagnose(text)
    assert (d.kind, d.summary) == ("no_failure", "the process ended without a recognisable error")
    assert dg.diagnose(text, exit_code=0).kind == "no_failure"
    assert dg.diagnose(text, exit_code=1).kind == "unknown"  # the exit code points to a failure


# ---- OOM in swift rlhf (issue 11: OOM handling and diagnosis as for sft) -----------------------------------------

def test_cuda_oom_of_grpo_names_its_own_memory_knobs(swift_fixtures):
    """The real H200 OOM console, diagnosed as the console of a GRPO run: the remedies add GRPO's knobs, with the
    run's numbers; the SFT remedies stay."""
    text = (swift_fixtures / "oom-h200.stdout").read_text() + (swift_fixtures / "oom-h200.stderr").read_text()
    grpo = dg.diagnose(text, exit_code=1, command="rlhf",
                       args=["--rlhf_type", "grpo", "--num_generations", "8", "--max_completion_length", "1024"])
    assert grpo.kind == "cuda_oom"
    assert "--num_generations 4 (was 8" in "\n".join(grpo.remedies)
    assert "--max_completion_length 512 (was 1024)" in grpo.remedies
    dpo = dg.diagnose(text, exit_code=1, command="rlhf", args=["--rlhf_type", "dpo"])
    assert any("chosen and rejected" in r for r in dpo.remedies)
    sft = dg.diagnose(text, exit_code=1)
    assert not any("num_generations" in r or "chosen" in r for r in sft.remedies)


# ---- KTO and rows of another type ---------------------------------------------------------------------------------

@pytest.mark.parametrize("version", ["3.12.6", "4.6"])
def test_kto_without_label(version):
    """3.x: KeyError "Column label not in the dataset"; 4.6: ValueError "Column 'label' doesn't exist."."""
    d = _diag(f"{version}/dataset_invalid-kto_no_label")
    assert d.details["missing"] == "label" and "--rlhf_type kto" in d.summary
    assert d.remedies[0].startswith("KTO needs a label per row")
    assert "--rlhf-type kto" in d.remedies[1]


def test_kto_without_gradient_accumulation_4x():
    """ms-swift 4.6 multiplies by --gradient_accumulation_steps before giving it its default: a TypeError."""
    d = _diag("4.6/invalid_argument-kto_no_accumulation")
    assert d.details["flag"] == "--gradient_accumulation_steps"
    assert d.remedies[0].startswith("--gradient_accumulation_steps 1")


def test_a_row_dropped_by_ms_swift_is_not_the_failure():
    """4.6 logs the traceback of a row whose messages is a string (a chain: JSONDecodeError, then SyntaxError),
    deletes it and trains on: exit 0, no failure; the chained part is not taken for a fatal error."""
    rel = "4.6/no_failure-row_of_another_type"
    assert "SyntaxError: invalid syntax" in _log(rel) and "the data will be deleted" in _log(rel)
    assert _diag(rel).kind == "no_failure" and dg.diagnose_file(FAILURES / f"{rel}.log").kind == "no_failure"
    # the same file in 3.12.6 (datasets 3.6): the file cannot be read at all
    d = _diag("3.12.6/dataset_invalid-schema")
    assert d.kind == "dataset_invalid" and "Trailing data" in d.summary and d.details["dataset"].endswith("mixed.jsonl")


# ---- the CLI: a pasted line on stdin --------------------------------------------------------------------------------

def test_cli_diagnoses_pasted_text_from_stdin(home):
    """`swiftdeck diagnose -` reads what the user pastes: one error line, or nothing recognisable."""
    def cli(text: str, *args: str) -> subprocess.CompletedProcess:
        env = {**os.environ, "SWIFTDECK_HOME": str(home)}
        return subprocess.run([sys.executable, "-m", "tui.cli", "diagnose", "-", *args], input=text, env=env,
                              capture_output=True, text=True, timeout=120, cwd=Path(__file__).resolve().parents[1])

    line = [ln for ln in _log("3.12.6/model_type_unknown").splitlines() if ln.strip()][-1]
    out = cli(line + "\n")
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("model_type_unknown: --model_type no_such_type is not a model type")
    js = json.loads(cli("ValueError: LoRA rank 64 is greater than max_lora_rank 16.\n", "--json").stdout)
    assert js["kind"] == "vllm_adapter_failed" and js["remedies"][0].startswith("--vllm_max_lora_rank 64")
    assert cli("[INFO:swift] Start time of running main\n").stdout.startswith(
        "no_failure: the process ended without a recognisable error")
    assert cli("[INFO:swift] Start time of running main\n", "--exit-code", "1").stdout.startswith("unknown:")


def test_3x_model_type_wording_lists_its_recommended_types():
    """3.x: "Failed to automatically match `model_type`. Please explicitly pass the `model_type` for `DIR`.
    Recommended `model_types` include: [...]" (4.x: "... for `DIR`. Multiple possible types found: [...]")."""
    d = _diag("3.12.6/model_type_ambiguous")
    assert d.details["candidates"][:2] == ["qwen2", "qwen2_5"] and len(d.details["candidates"]) == 8
    assert d.details["model"].endswith("/tiny-qwen2") and d.remedies[0].startswith("add --model_type qwen2 ")


def test_a_logged_error_line_alone_is_evidence_not_no_failure():
    """What a user pastes from a run whose hub dataset kept failing: the logged [ERROR:swift] line, no traceback."""
    from engine import diagnose as dg

    line = ("[ERROR:swift] Dataset data/train.json load failed: subset_name=default,split=train with error: "
            "[E1001] 下载总时限已耗尽；已保存可继续下载的临时文件")
    d = dg.diagnose(line, exit_code=None)
    assert d.kind == "dataset_not_found" and d.details["dataset"] == "data/train.json", d
    other = dg.diagnose("[ERROR:swift] something odd happened", exit_code=1)
    assert other.kind == "unknown" and "something odd happened" in other.summary, other
    # a run that ended well may log an error line on the way (a retried download): not a failure
    assert dg.diagnose("[ERROR:swift] something odd happened\n", exit_code=0).kind == "no_failure"
    ended = "[ERROR:swift] something odd happened\n[INFO:swift] End time of running main: 2026-11-30 14:56:40\n"
    assert dg.diagnose(ended).kind == "no_failure"  # a bare log whose main returned: it ended well
