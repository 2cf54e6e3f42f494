"""engine.ops.launch.plan_relaunch on recorded runs: which remedies apply, and what the resume line says."""
from engine import relaunch
from engine.ops.launch import plan_relaunch
from engine.runs import RunRecord


def _rec(args: list[str]) -> RunRecord:
    return RunRecord(id="sft-x", kind="sft", argv=["swift", "sft", *args], cwd="/tmp", run_dir=None,
                     env={"CUDA_VISIBLE_DEVICES": "3"}, status="failed")


def test_remedy_flags_take_only_leading_flag_value_pairs():
    assert relaunch.remedy_flags("--per_device_train_batch_size 16 --gradient_accumulation_steps 2 (was 32 x 1)") \
        == [("--per_device_train_batch_size", "16"), ("--gradient_accumulation_steps", "2")]
    assert relaunch.remedy_flags("free the card: process 2727 holds 133.8 GiB") == []
    assert relaunch.remedy_flags("put --output_dir on a larger disk") == []


def test_plan_applies_the_remedy_and_says_what_changes():
    cmd, changes = plan_relaunch(_rec(["--model", "m", "--max_length", "4096"]), "--max_length 2048 (was 4096)")
    assert list(cmd.args) == ["--model", "m", "--max_length", "2048"]
    assert cmd.env == {"CUDA_VISIBLE_DEVICES": "3"} and cmd.cwd == "/tmp"  # the run's environment is kept
    assert changes == ["--max_length 4096 → 2048",
                            "starts from scratch: the failed run left no resumable checkpoint"]


def test_plan_keeps_an_earlier_resume_and_says_so():
    cmd, changes = plan_relaunch(_rec(["--resume_from_checkpoint", "/o/v0/checkpoint-50"]), None)
    assert list(cmd.args) == ["--resume_from_checkpoint", "/o/v0/checkpoint-50"]
    assert changes == ["resumes from /o/v0/checkpoint-50 again: the failed run saved no newer checkpoint"]
