"""Issue 11, launch: `swift rlhf` and `swift pt` checked against the installed ms-swift before a launch (the
--rlhf_type value, renamed and unknown flags, the packages a type imports, GRPO's reward functions, the dataset
columns a type needs), through engine.ops.launch.check_launch; `swiftdeck train --kind` and a pasted `swift rlhf`
line."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from engine import kinds
from engine.command import Command, CommandError, pasted_kind
from engine.dataset_check import check_dataset
from engine.ops.launch import LaunchRefused, check_launch, start

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def rlhf_introspection(tmp_path_factory) -> Path:
    """engine.swift_args' cache for rlhf, pt, sft and the registry, asked from the installed ms-swift once."""
    from engine import swift_args

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SWIFTDECK_HOME", str(tmp_path_factory.mktemp("rlhf-introspected")))
        swift_args.introspect("rlhf", "pt", "sft", "registry")
        return swift_args.cache_dir()


@pytest.fixture
def rlhf_home(home, rlhf_introspection) -> Path:
    shutil.copytree(rlhf_introspection, home / "cache" / rlhf_introspection.name)
    return home


def write(path: Path, rows) -> Path:
    path.write_text(json.dumps(rows, ensure_ascii=False), encoding="utf-8")
    return path


def sft_rows(n: int = 3) -> list[dict]:
    return [{"messages": [{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": f"a{i}"}]}
            for i in range(n)]


def rlhf(line: str, cwd: Path, **kw):
    return check_launch(Command.parse(line, kind="rlhf", cwd=cwd), **kw)


def model_args(demo_assets) -> str:
    return f"--model {demo_assets.model} --model_type qwen2 --template qwen2_5 --torch_dtype float32"


# ---------------------------------------------------------------- arguments


def test_rlhf_type_value_renamed_and_unknown_flags(rlhf_home, demo_assets, tmp_path):
    pairs = write(tmp_path / "pairs.json", [{**r, "rejected_response": "no"} for r in sft_rows()])
    check = rlhf(f"swift rlhf --rlhf_type dpoo {model_args(demo_assets)} --train_type lora --lora_rnk 8 "
                 f"--dataset {pairs}", tmp_path)
    messages = [p.message for p in check.args.problems]
    bad_type = next(p for p in check.args.problems if p.flag == "--rlhf_type")
    assert "'dpoo' is not one of: dpo, orpo, simpo, kto, cpo, rm, ppo, grpo, gkd" in bad_type.message
    assert bad_type.suggestions[0] == "dpo"
    assert any(m.startswith("--lora_rnk is not a `swift rlhf` option") and "--lora_rank" in m for m in messages)
    assert "--train_type is called --tuner_type since ms-swift 4.0; rewrote it" in check.args.notes
    assert not check.ok and "problem(s) with the swift rlhf arguments" in check.blocker
    with pytest.raises(LaunchRefused):
        start(check)

    ok = rlhf(f"swift rlhf {model_args(demo_assets)} --dataset {pairs}", tmp_path)
    assert ok.ok, ok.blocker
    assert "no --rlhf_type: ms-swift trains dpo" in ok.args.notes


def test_rlhf_flags_on_sft_point_to_kind_rlhf(rlhf_home, demo_assets, tmp_path):
    data = write(tmp_path / "rows.json", sft_rows())
    check = check_launch(Command.parse(f"--rlhf_type dpo {model_args(demo_assets)} --dataset {data}", cwd=tmp_path))
    (problem,) = check.args.problems
    assert problem.message.startswith("--rlhf_type is not a `swift sft` option")
    assert "it belongs to `swift rlhf` (swiftdeck train --kind rlhf)" in problem.message
    pt = check_launch(Command.parse(f"{model_args(demo_assets)} --dataset {data}", kind="pt", cwd=tmp_path))
    assert pt.ok, pt.blocker


def test_grpo_reward_functions_are_ms_swifts_own(rlhf_home, demo_assets, tmp_path):
    prompts = write(tmp_path / "prompts.json", [{"messages": [{"role": "user", "content": "2+2?"}]}])
    base = f"swift rlhf --rlhf_type grpo {model_args(demo_assets)} --dataset {prompts}"

    none = rlhf(base, tmp_path)
    assert [p.flag for p in none.args.problems] == ["--reward_funcs"]
    assert "--rlhf_type grpo needs --reward_funcs (built in: accuracy, cosine, format, math" in \
        none.args.problems[0].message

    typo = rlhf(f"{base} --reward_funcs formt", tmp_path)
    (problem,) = typo.args.problems
    assert "--reward_funcs 'formt' is not a reward function of ms-swift" in problem.message
    assert problem.suggestions[0] == "format"

    plugin = tmp_path / "plugin.py"
    plugin.write_text("# registers my_reward\n")
    custom = rlhf(f"{base} --reward_funcs my_reward --external_plugins {plugin}", tmp_path)
    assert custom.ok, custom.blocker
    assert "--reward_funcs my_reward: not built into ms-swift; --external_plugins must register it" in \
        custom.args.notes

    accuracy = rlhf(f"{base} --reward_funcs accuracy format", tmp_path)
    needs = [p.message for p in accuracy.args.problems]
    if kinds.missing_packages(["math_verify"]):  # ms-swift's MathAccuracy asserts it at trainer start
        assert needs == ["--reward_funcs accuracy needs the Python package math_verify, which is not installed: "
                         "pip install math-verify"]
    else:
        assert needs == []

    dpo = rlhf(f"swift rlhf --rlhf_type dpo {model_args(demo_assets)} --reward_funcs format "
               f"--dataset {write(tmp_path / 'p.json', [{**r, 'rejected_response': 'x'} for r in sft_rows()])}",
               tmp_path)
    assert dpo.ok and "--reward_funcs is only used by --rlhf_type grpo; dpo ignores it" in dpo.args.notes


BLOCK_MSGSPEC = """
import sys
from pathlib import Path

class NoMsgspec:  # this Python without msgspec, as after `pip install ms-swift`
    def find_spec(self, name, path=None, target=None):
        if name == "msgspec" or name.startswith("msgspec."):
            raise ModuleNotFoundError("No module named 'msgspec'")

sys.meta_path.insert(0, NoMsgspec())
from engine.command import Command
from engine.ops.launch import check_launch

line, cwd = sys.argv[1], Path(sys.argv[2])
check = check_launch(Command.parse(line, kind="rlhf", cwd=cwd), datasets=False)
print("\\n".join(p.message for p in check.args.problems))
"""


def test_a_missing_package_is_named_before_the_launch(rlhf_home, demo_assets, tmp_path):
    """GRPO's trainer imports msgspec (swift/rlhf_trainers/utils.py), which `pip install ms-swift` does not bring:
    without it the check names the package; DPO does not need it."""
    env = {**os.environ, "SWIFTDECK_HOME": str(rlhf_home), "PYTHONPATH": str(REPO)}

    def problems(line: str) -> list[str]:
        proc = subprocess.run([sys.executable, "-c", BLOCK_MSGSPEC, line, str(tmp_path)], capture_output=True,
                              text=True, env=env, cwd=REPO, timeout=120)
        assert proc.returncode == 0, proc.stderr
        return [x for x in proc.stdout.splitlines() if x]

    grpo = problems(f"--rlhf_type grpo {model_args(demo_assets)} --reward_funcs format")
    assert grpo == ["--rlhf_type grpo needs the Python package msgspec, which is not installed (ms-swift's install "
                    "does not bring it): pip install msgspec"]
    assert problems(f"--rlhf_type dpo {model_args(demo_assets)}") == []
    # here it is installed (swiftdeck's own dependency), and the same command passes
    assert rlhf(f"swift rlhf --rlhf_type grpo {model_args(demo_assets)} --reward_funcs format", tmp_path,
                datasets=False).ok


def test_msgspec_is_a_dependency_of_swiftdeck():
    import tomllib

    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    assert any(d.split(">")[0].split("=")[0].strip() == "msgspec" for d in deps)


# ---------------------------------------------------------------- dataset columns


def test_dataset_columns_each_type_needs(tmp_path):
    plain = write(tmp_path / "plain.json", sft_rows(2))
    report = check_dataset(plain, rlhf_type="dpo")
    assert not report.ok
    assert [i.message for i in report.errors] == [
        f"row {n} (line 1): missing field 'rejected_response' (the rejected answer): --rlhf_type dpo trains on "
        "preference pairs" for n in (1, 2)]
    assert check_dataset(plain).ok and check_dataset(plain, rlhf_type="grpo").ok

    trl_style = write(tmp_path / "trl.json", [{**r, "rejected": "x"} for r in sft_rows(1)])
    trl_error = check_dataset(trl_style, rlhf_type="orpo").errors[0].message
    assert "(ms-swift 4.6 reads 'rejected_response', not 'rejected')" in trl_error
    same = write(tmp_path / "same.json", [{**r, "rejected_response": r["messages"][-1]["content"]}
                                          for r in sft_rows(1)])
    assert check_dataset(same, rlhf_type="simpo").errors[0].code == "rejected_is_chosen"
    alpaca = write(tmp_path / "alpaca.json", [{"instruction": "q", "input": "", "output": "a",
                                               "rejected_response": "b"}])
    assert check_dataset(alpaca, rlhf_type="dpo").ok

    kto = write(tmp_path / "kto.json", [{**sft_rows(1)[0], "label": True}, {**sft_rows(1)[0], "label": 0},
                                         sft_rows(1)[0], {**sft_rows(1)[0], "label": "yes"}])
    errors = [(i.row, i.code) for i in check_dataset(kto, rlhf_type="kto").errors]
    assert errors == [(3, "missing_field"), (4, "bad_label")]

    prompts = write(tmp_path / "prompts.jsonl", [])
    prompts.write_text('{"messages": [{"role": "user", "content": "2+3=?"}], "solution": "5"}\n'
                       '{"messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "1+1=?"}]}\n',
                       encoding="utf-8")
    queries = write(tmp_path / "queries.json", [{"query": "1+1=?"}])
    for path in (prompts, queries):
        assert check_dataset(path, rlhf_type="grpo").ok, check_dataset(path, rlhf_type="grpo").issues
        assert not check_dataset(path).ok  # sft needs the answers
        assert not check_dataset(path, rlhf_type="dpo").ok


def test_check_launch_runs_the_column_check_for_the_type(rlhf_home, demo_assets, tmp_path):
    plain = write(tmp_path / "plain.json", sft_rows())
    check = rlhf(f"swift rlhf --rlhf_type kto {model_args(demo_assets)} --dataset {plain}", tmp_path)
    assert check.args.ok and not check.datasets_ok
    assert "missing field 'label'" in check.blocker
    assert check.blocker.startswith("error: plain.json row 1")
    sft = check_launch(Command.parse(f"{model_args(demo_assets)} --dataset {plain}", cwd=tmp_path))
    assert sft.ok, sft.blocker


# ---------------------------------------------------------------- train --kind, pasted lines


def test_pasted_kind():
    assert pasted_kind(["CUDA_VISIBLE_DEVICES=0", "swift", "rlhf", "--rlhf_type", "dpo"]) == "rlhf"
    assert pasted_kind(["--", "/opt/bin/swift", "pt", "--model", "m"]) == "pt"
    assert pasted_kind(["--model", "m"]) is None
    with pytest.raises(CommandError, match="this is `swift rlhf`, not `swift sft`"):
        Command.parse("swift rlhf --model m", kind="sft", cwd=".")


def swiftdeck(*args: str, home: Path, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "SWIFTDECK_HOME": str(home), "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "tui.cli", *args], env=env, capture_output=True, text=True,
                          timeout=300, cwd=cwd)


def test_train_infers_the_kind_from_a_pasted_swift_rlhf_line(rlhf_home, demo_assets, tmp_path):
    plain = write(tmp_path / "plain.json", sft_rows())
    args = ["swift", "rlhf", "--rlhf_type", "dpo", *model_args(demo_assets).split(), "--dataset", str(plain)]
    proc = swiftdeck("train", "--", *args, home=rlhf_home, cwd=tmp_path)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 2, out
    assert "missing field 'rejected_response'" in out and "not launched" in proc.stderr
    assert "Traceback" not in out
    assert not list((rlhf_home / "runs").glob("*/record.json"))

    wrong = swiftdeck("train", "--kind", "sft", "--", *args, home=rlhf_home, cwd=tmp_path)
    assert wrong.returncode == 2 and wrong.stderr.strip() == "swiftdeck: this is `swift rlhf`, not `swift sft`"
    flags_only = swiftdeck("train", "--kind", "rlhf", "--", "--rlhf_type", "dpoo", *model_args(demo_assets).split(),
                           "--dataset", str(plain), home=rlhf_home, cwd=tmp_path)
    assert flags_only.returncode == 2 and "--rlhf_type 'dpoo' is not one of" in flags_only.stdout


def test_check_dataset_takes_the_rlhf_type(home, tmp_path):
    plain = write(tmp_path / "plain.json", sft_rows(1))
    proc = swiftdeck("check-dataset", str(plain), "--rlhf-type", "dpo", home=home, cwd=tmp_path)
    assert proc.returncode == 1 and "row 1 (line 1): missing field 'rejected_response'" in proc.stdout
    assert swiftdeck("check-dataset", str(plain), home=home, cwd=tmp_path).returncode == 0
    bad = swiftdeck("check-dataset", str(plain), "--rlhf-type", "dpoo", home=home, cwd=tmp_path)
    assert bad.returncode == 2 and "invalid choice: 'dpoo'" in bad.stderr


def test_adapters_must_be_a_checkpoint_not_its_run_folder(rlhf_home, demo_assets, tmp_path):
    """DPO after SFT takes the SFT checkpoint (--adapters and --ref_adapters); its run folder, or a folder that is
    no adapter, stops ms-swift ("is not an adapter"): refused before the launch, with the checkpoint to take."""
    pairs = write(tmp_path / "pairs.json", [{**r, "rejected_response": "no"} for r in sft_rows()])
    run = tmp_path / "sft" / "v0-20261130-000000"
    for step in (50, 100):
        (run / f"checkpoint-{step}").mkdir(parents=True)
        (run / f"checkpoint-{step}" / "adapter_config.json").write_text("{}")
    line = f"swift rlhf --rlhf_type dpo {model_args(demo_assets)} --dataset {pairs}"
    check = rlhf(f"{line} --adapters {run} --ref_adapters {run}", tmp_path)
    messages = {p.flag: p.message for p in check.args.problems}
    for flag in ("--adapters", "--ref_adapters"):
        assert messages[flag] == (f"{run} is a run folder, not a LoRA checkpoint: pick one of its checkpoint-N "
                                  f"folders (the last: {run / 'checkpoint-100'})")
    assert not check.ok
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "is not a LoRA checkpoint (no adapter_config.json)" in \
        rlhf(f"{line} --adapters {empty}", tmp_path).args.problems[0].message
    ok = rlhf(f"{line} --adapters sft/v0-20261130-000000/checkpoint-100 --ref_adapters {run / 'checkpoint-100'}",
              tmp_path)
    assert ok.ok, ok.blocker
    assert ok.command.flag("--adapters") == str(run / "checkpoint-100")  # made absolute


def test_pt_with_a_system_prompt_is_refused(rlhf_home, demo_assets, tmp_path):
    """`swift pt` uses the template without its chat format: a --system there stops ms-swift at the template
    ("The template does not support `system`", seen on a real `swift pt` of the demo); refused before the launch."""
    data = write(tmp_path / "rows.json", sft_rows())
    line = f"{model_args(demo_assets)} --dataset {data}"
    check = check_launch(Command.parse(f"{line} --system 'You are a helpful assistant.'", kind="pt", cwd=tmp_path))
    (problem,) = check.args.problems
    assert problem.flag == "--system" and "The template does not support `system`" in problem.message
    assert not check.ok
    chat = check_launch(Command.parse(f"{line} --system hi --use_chat_template true", kind="pt", cwd=tmp_path))
    assert chat.ok, chat.blocker
    sft = check_launch(Command.parse(f"{line} --system hi", kind="sft", cwd=tmp_path))
    assert sft.ok, sft.blocker


def test_launch_form_pt_has_no_system_prompt(rlhf_home, demo_assets, tmp_path):
    """The new-run form's preset adds the tutorial's --system; for kind pt it would be refused (see above)."""
    from tui.actions import LaunchForm, build_launch

    data = write(tmp_path / "rows.json", sft_rows())
    form = LaunchForm(kind="pt", model=str(demo_assets.model), dataset=str(data))
    pt = build_launch(form, gpu=False, cwd=tmp_path)
    assert "--system" not in pt.args and "--warmup_ratio" in pt.args
    assert "--system" in build_launch(LaunchForm(kind="sft", model="/m", dataset="/d.json"), gpu=False).args
    check = check_launch(pt)
    assert not [p for p in check.args.problems if p.flag == "--system"], check.blocker
