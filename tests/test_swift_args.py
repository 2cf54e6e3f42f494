"""engine.swift_args against the installed ms-swift 4.6: the introspection subprocess runs for real (once per test
session; each test gets a copy of its cache), and the last tests hand the rewritten argv to ms-swift's own parser
and model matching."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from engine import swift_args as sa

CHATML = ("{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + "
          "'<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}")
SYSTEM = "You are a helpful assistant."


def tutorial(model: str) -> list[str]:
    """The seed tutorial's `swift sft` arguments, verbatim (as the shell hands them over)."""
    return [
        "--model", model, "--train_type", "lora", "--dataset", "self_cognition.json", "--torch_dtype", "bfloat16",
        "--num_train_epochs", "10", "--per_device_train_batch_size", "1", "--per_device_eval_batch_size", "1",
        "--learning_rate", "1e-4", "--lora_rank", "8", "--lora_alpha", "32", "--target_modules", "all-linear",
        "--gradient_accumulation_steps", "16", "--eval_steps", "50", "--save_steps", "50", "--save_total_limit", "2",
        "--logging_steps", "5", "--max_length", "2048", "--output_dir", "output", "--system", SYSTEM,
        "--warmup_ratio", "0.05", "--dataloader_num_workers", "4", "--model_author", "swift",
        "--model_name", "swift-robot",
    ]


def make_model(root: Path, name: str = "tiny-qwen2", *, model_type: str = "qwen2", dtype: str = "bfloat16") -> Path:
    """A local Qwen2-architecture folder as ms-swift sees it before loading weights."""
    folder = root / name
    folder.mkdir(parents=True)
    config = {"architectures": ["Qwen2ForCausalLM"], "model_type": model_type, "dtype": dtype}
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "chat_template.jinja").write_text(CHATML)
    return folder


@pytest.fixture(scope="session")
def swift_cache(tmp_path_factory):
    """One real cold introspection for the whole session; returns (cache dir, spawn calls it took)."""
    home = tmp_path_factory.mktemp("swift-cache-home")
    calls = []
    real_spawn = sa._spawn
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SWIFTDECK_HOME", str(home))
        mp.setattr(sa, "_spawn", lambda args, *env: calls.append(args) or real_spawn(args, *env))
        sa.introspect("sft", "infer", "registry")
        return sa.cache_dir(), calls


@pytest.fixture
def workdir(home, swift_cache, tmp_path):
    """A user's working directory with the tutorial's dataset file; the session's cache copied into `home`."""
    cache, _ = swift_cache
    shutil.copytree(cache, home / "cache" / cache.name)
    work = tmp_path / "work"
    work.mkdir()
    (work / "self_cognition.json").write_text("[]")
    return work


@pytest.fixture
def spawned(monkeypatch) -> list:
    """Every introspection subprocess started during the test (they still run for real)."""
    calls: list = []
    real_spawn = sa._spawn
    monkeypatch.setattr(sa, "_spawn", lambda args, *env: calls.append(args) or real_spawn(args, *env))
    return calls


def test_tutorial_command_is_accepted_after_fixes(workdir):
    make_model(workdir)
    check = sa.check_args(tutorial("tiny-qwen2"), command="sft", cwd=workdir, cuda=False)

    assert not check.ok
    assert {p.flag for p in check.problems} == {"--model_type", "--torch_dtype"}
    assert any("--tuner_type" in note for note in check.notes)
    fixed = check.with_fixes()
    assert fixed.ok, fixed.problems
    argv = fixed.argv
    assert "--train_type" not in argv and sa.flag_value(argv, "--tuner_type") == "lora"
    assert sa.flag_value(argv, "--torch_dtype") == "float32"
    assert sa.flag_value(argv, "--model_type") == "qwen2"
    assert sa.flag_value(argv, "--template") == "qwen2_5"
    assert sa.flag_value(argv, "--model") == str(workdir / "tiny-qwen2")
    assert sa.flag_values(argv, "--dataset") == [str(workdir / "self_cognition.json")]
    assert sa.flag_value(argv, "--output_dir") == str(workdir / "output")
    assert sa.flag_value(argv, "--check_model") == "false"
    assert argv[argv.index("--system") + 1] == SYSTEM  # one argv element, as typed
    assert argv.count(SYSTEM) == 1
    assert any(note.startswith("applied: ") for note in fixed.notes)
    # idempotent: the rewritten argv checks clean and stays as it is
    again = sa.check_args(argv, cwd=workdir, cuda=False)
    assert again.ok and again.argv == argv and again.notes == []


def test_misspelled_flag_is_refused_with_the_closest_name(workdir):
    check = sa.check_args(["--model", "Qwen/Qwen2.5-0.5B-Instruct", "--learning_rat", "1e-4"], cwd=workdir,
                          cuda=False)
    [problem] = check.problems
    assert problem.flag == "--learning_rat" and problem.fix is None
    assert problem.suggestions[0] == "--learning_rate"
    assert "--learning_rate" in problem.message
    assert not check.with_fixes().ok  # nothing to apply: the user must choose


def test_local_qwen2_folder_gets_model_type_and_template_proposed(workdir):
    make_model(workdir, "my-model")
    base = ["--model", "my-model", "--dataset", "self_cognition.json", "--torch_dtype", "float32"]

    [both] = sa.check_args(base, cwd=workdir, cuda=False).problems
    assert both.fix == ["--model_type", "qwen2", "--template", "qwen2_5"]
    assert "qwen2_gte" in both.message and "Failed to automatically match" in both.message
    assert "--model_type qwen2_gte" in both.suggestions and "--template qwen" in both.suggestions

    [template] = sa.check_args([*base, "--model_type", "qwen2"], cwd=workdir, cuda=False).problems
    assert template.fix == ["--template", "qwen2_5"]

    user_chose = sa.check_args([*base, "--model_type", "qwen2", "--template", "qwen"], cwd=workdir, cuda=False)
    assert user_chose.ok and sa.flag_value(user_chose.argv, "--template") == "qwen"


def test_unclear_folder_gets_a_question_not_a_guess(workdir):
    make_model(workdir, "odd", model_type="something_else")
    [problem] = sa.check_args(["--model", "odd", "--torch_dtype", "float32"], cwd=workdir, cuda=False).problems
    assert problem.fix is None
    assert problem.suggestions == ["--model_type qwen2", "--model_type qwen2_gte"]
    assert "which one" in problem.message


def test_folder_named_like_a_known_model_needs_nothing(workdir):
    make_model(workdir, "Qwen2.5-0.5B-Instruct")  # ms-swift matches it by name (model group qwen2.5)
    check = sa.check_args(["--model", "Qwen2.5-0.5B-Instruct", "--torch_dtype", "float32"], cwd=workdir, cuda=False)
    assert check.ok, check.problems


def test_missing_dataset_file_names_its_absolute_path(workdir):
    check = sa.check_args(["--model", "Qwen/Qwen2.5-0.5B-Instruct", "--dataset", "data/missing.json",
                           "self_cognition.json#20", "AI-ModelScope/alpaca-gpt4-data-zh#500"], cwd=workdir)
    [problem] = check.problems
    assert problem.message == f"dataset file not found: {workdir / 'data' / 'missing.json'}"
    assert sa.flag_values(check.argv, "--dataset") == [
        "data/missing.json", f"{workdir / 'self_cognition.json'}#20", "AI-ModelScope/alpaca-gpt4-data-zh#500"]


def test_relative_paths_are_recorded_absolute(workdir):
    (workdir / "ckpt").mkdir()
    (workdir / "ds.json").write_text("{}")
    check = sa.check_args(["--model", "Qwen/Qwen2.5-0.5B-Instruct", "--dataset", "self_cognition.json",
                           "--val_dataset", "./self_cognition.json", "--output_dir", "out", "--logging_dir", "../tb",
                           "--resume_from_checkpoint", "ckpt", "--deepspeed", "ds.json"], cwd=workdir, cuda=True)
    assert check.ok, check.problems
    for flag, expected in [("--val_dataset", workdir / "self_cognition.json"), ("--output_dir", workdir / "out"),
                           ("--logging_dir", workdir.parent / "tb"), ("--resume_from_checkpoint", workdir / "ckpt"),
                           ("--deepspeed", workdir / "ds.json")]:
        assert sa.flag_value(check.argv, flag) == str(expected), flag
    assert sa.flag_value(check.argv, "--model") == "Qwen/Qwen2.5-0.5B-Instruct"  # a hub id stays
    assert "--check_model" not in check.argv  # only added for a local model folder
    missing = sa.check_args(["--resume_from_checkpoint", "nope", "--deepspeed", "zero2"], cwd=workdir)
    assert [p.message for p in missing.problems] == [f"resume_from_checkpoint not found: {workdir / 'nope'}"]

    (workdir / "ckpt" / "adapter_config.json").write_text("{}")  # --adapters must be a LoRA checkpoint
    infer = sa.check_args(["--adapters", "robot=ckpt", "--stream", "true"], command="infer", cwd=workdir)
    assert infer.ok and sa.flag_value(infer.argv, "--adapters") == f"robot={workdir / 'ckpt'}"


def test_bf16_without_cuda(workdir):
    make_model(workdir, dtype="bfloat16")
    argv = ["--model", "tiny-qwen2", "--model_type", "qwen2", "--template", "qwen2_5"]
    [problem] = sa.check_args([*argv, "--torch_dtype", "bfloat16"], cwd=workdir, cuda=False).problems
    assert problem.fix == ["--torch_dtype", "float32"] and "use_cpu" in problem.message
    # ms-swift's default dtype is config.json's: bf16 here, so leaving it out fails the same way
    [implicit] = sa.check_args(argv, cwd=workdir, cuda=False).problems
    assert implicit.fix == ["--torch_dtype", "float32"] and "config.json" in implicit.message
    [explicit] = sa.check_args([*argv, "--bf16", "true"], cwd=workdir, cuda=False).problems
    assert explicit.fix == ["--torch_dtype", "float32", "--bf16", "false"]
    assert sa.check_args([*argv, "--torch_dtype", "bfloat16", "--use_cpu", "true"], cwd=workdir, cuda=False).ok
    assert sa.check_args([*argv, "--torch_dtype", "bfloat16"], cwd=workdir, cuda=True).ok
    fp16 = sa.check_args([*argv, "--torch_dtype", "float16"], cwd=workdir, cuda=False)
    assert fp16.ok and any("float16" in note for note in fp16.notes)


def test_bad_values_and_stray_words(workdir):
    check = sa.check_args(["--lora_rank", "eight", "--torch_dtype", "bf16", "--use_cpu", "maybe",
                           "--system", "You", "are", "helpful"], cwd=workdir, cuda=False)
    messages = {p.flag: p for p in check.problems}
    assert set(messages) == {"--lora_rank", "--torch_dtype", "--use_cpu", "--system"}
    assert "integer" in messages["--lora_rank"].message
    assert "bfloat16" in messages["--torch_dtype"].message
    assert "'are helpful'" in messages["--system"].message


def test_valid_flags_come_from_the_installed_ms_swift(workdir):
    sft = sa.valid_flags("sft")
    assert {"--tuner_type", "--learning_rate", "--tuner-type", "--check_model", "--use_cpu"} <= sft
    assert "--train_type" not in sft
    infer = sa.valid_flags("infer")
    assert "--adapters" in infer and "--learning_rate" not in infer
    with pytest.raises(ValueError):
        sa.valid_flags("no-such-command")


def test_the_cache_is_reused(workdir, swift_cache, spawned):
    _, cold_calls = swift_cache
    assert cold_calls == [["dump", "sft", "infer", "registry"]]  # one subprocess for everything
    sa._MEMO.clear()  # as in a new process: only the disk cache is left
    sa.check_args(tutorial("Qwen/Qwen2.5-0.5B-Instruct"), cwd=workdir, cuda=False)
    sa.valid_flags("sft")
    assert spawned == []
    cached = json.loads((sa.cache_dir() / f"sft.v{sa.SCHEMA}.json").read_text())
    assert cached["class"] == "SftArguments" and "--tuner_type" in cached["options"]
    assert sa.cache_dir().name == f"ms-swift-{sa.swift_version()}"


def test_checking_never_imports_heavy_packages(workdir, home, python):
    """The TUI calls check_args in its own process: no swift, torch or transformers may come along."""
    code = ("import sys, pathlib; from engine import swift_args as sa; "
            f"c = sa.check_args(['--model', 'Qwen/Qwen2.5-0.5B-Instruct', '--train_type', 'lora'], "
            f"cwd=pathlib.Path({str(workdir)!r})); assert c.ok, c.problems; "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'swift', 'torch', 'transformers'}))")
    proc = subprocess.run([python, "-c", code], capture_output=True, text=True, cwd=sa.__file__.rsplit("/", 2)[0],
                          env={**os.environ, "SWIFTDECK_HOME": str(home)}, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def test_flag_helpers():
    argv = ["--a-b=3", "--x", "1", "2", "--flag", "--y", "z"]
    assert sa.flag_value(argv, "--a_b") == "3"
    assert sa.flag_values(argv, "--x") == ["1", "2"]
    assert sa.flag_value(argv, "--flag") == "" and sa.flag_value(argv, "--nope") is None
    assert sa.set_flag(argv, "--x", ["9"]) == ["--a-b=3", "--x", "9", "--flag", "--y", "z"]
    assert sa.set_flag(["--y", "1", "--y", "2"], "--y", ["3"]) == ["--y", "3"]
    assert sa.set_flag([], "--z", ["1"]) == ["--z", "1"]


@pytest.mark.slow
def test_ms_swift_itself_accepts_the_rewritten_tutorial_argv_and_matches_alike(workdir):
    plain, named = make_model(workdir), make_model(workdir, "Qwen2.5-0.5B-Instruct")
    fixed = sa.check_args(tutorial("tiny-qwen2"), cwd=workdir, cuda=False).with_fixes()
    assert fixed.ok
    # one ms-swift process: HfArgumentParser([SftArguments]).parse_known_args + its model matching functions
    swift = sa.swift_parse(fixed.argv, "sft", match=(plain, named))
    assert swift["remaining"] == []
    values = swift["values"]
    assert values["tuner_type"] == "lora" and values["torch_dtype"] == "float32"
    assert values["system"] == SYSTEM and values["dataset"] == [str(workdir / "self_cognition.json")]
    assert values["model_type"] == "qwen2" and values["template"] == "qwen2_5"

    registry = sa.introspect("registry")["registry"]  # the cached data swift_args matches with
    folders = swift["folders"]
    assert folders[str(plain)]["name_match"] is None
    assert folders[str(plain)]["arch_model_types"] == registry["arch_mapping"]["Qwen2ForCausalLM"]
    assert folders[str(plain)]["arch_model_types"] == ["qwen2", "qwen2_gte"]
    assert folders[str(plain)]["candidate_templates"]["qwen2"] == registry["model_types"]["qwen2"][
        "candidate_templates"]
    assert folders[str(named)]["name_match"] == ["qwen2", "qwen2_5"]
    assert registry["model_names"]["qwen2.5-0.5b-instruct"] == ["qwen2", "qwen2_5"]


@pytest.mark.slow
def test_demo_model_folder_gets_the_proposal(workdir, demo_assets):
    argv = tutorial(str(demo_assets.model))
    argv[argv.index("self_cognition.json")] = str(demo_assets.dataset)
    check = sa.check_args(argv, cwd=workdir, cuda=False)
    assert {tuple(p.fix) for p in check.problems} == {("--model_type", "qwen2", "--template", "qwen2_5"),
                                                      ("--torch_dtype", "float32")}
    assert check.with_fixes().ok
