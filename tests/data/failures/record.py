"""Record real ms-swift failures on this CPU machine for tests/data/failures/<version>/ (not a test).

    flock /tmp/swiftdeck-slow.lock python tests/data/failures/record.py --version 4.6 --swift .venv/bin/swift \
        --demo /tmp/diagrec3/demo --work /tmp/diagrec3 [NAME ...]

Each scenario makes one failure happen for real with the offline demo model (engine/demo.py) and writes
<version>/<name>.log (stdout+stderr merged, as swiftdeck's runner writes a console) and <name>.json (the command, the
exit code, the expected kind). A scenario that kills a rank sends the signal itself to the trainer process once the
training loop has started: torchrun's summary then reports it as the kernel's OOM killer (9), an abort (6) or a
segfault (11) would.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).parent


def scenarios(v3: bool, demo: Path, work: Path) -> dict:
    model, data = str(demo / "tiny-qwen2"), str(demo / "self_cognition.json")
    tuner = ["--train_type" if v3 else "--tuner_type", "lora"]
    base = ["--model", model, "--model_type", "qwen2", "--template", "qwen2_5", *tuner, "--torch_dtype", "float32",
            "--check_model", "false", "--report_to", "none", "--dataloader_num_workers", "0", "--max_steps", "1"]

    def out(name):
        return ["--output_dir", str(work / "out" / name)]

    def sft(name, *extra, dataset=data):
        return ["sft", *base, "--dataset", dataset, *extra, *out(name)]

    bad_json = work / "bad.json"
    bad_json.write_text('[{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "x"}]},'
                        '\n {"messages": [{"role": "user" "content": "oops"}]}]\n', encoding="utf-8")
    mixed = work / "mixed.jsonl"  # one column, two types: a list of messages, then a string
    mixed.write_text('{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "x"}]}\n'
                     '{"messages": "user: hi / assistant: x"}\n', encoding="utf-8")
    broken = work / "broken-tok"  # the demo model with a tokenizer.json cut in the middle
    if not broken.exists():
        import shutil
        shutil.copytree(model, broken)
        tok = broken / "tokenizer.json"
        tok.write_text(tok.read_text(encoding="utf-8")[:500], encoding="utf-8")
    plugin = work / "plugin.py"
    plugin.write_text("raise RuntimeError('the plugin of this run failed on purpose')\n", encoding="utf-8")
    long_train = ["--num_train_epochs", "100", "--max_steps", "-1", "--save_steps", "2", "--logging_steps", "1",
                  "--per_device_train_batch_size", "10"]
    s = {
        "unknown_argument": (sft("unknown_argument", "--lora_ranks", "8",
                                 *(["--tuner_type", "lora"] if v3 else ["--train_type", "lora"])), {}, None),
        "invalid_argument-rlhf_type": (["rlhf", "--rlhf_type", "dpoo", *base, "--dataset", str(demo / "identity_dpo.json"),
                                        *out("rlhf_type")], {}, None),
        "dataset_not_found": (sft("dataset_not_found", dataset=str(work / "nope" / "train.json")), {}, None),
        "model_not_found": (["sft", *base[:0], "--model", str(work / "no-such-model"), *tuner, "--dataset", data,
                             "--max_steps", "1", *out("model_not_found")], {}, None),
        "dataset_invalid": (sft("dataset_invalid", dataset=str(bad_json)), {}, None),
        "dataset_empty_after_filter": (sft("dataset_empty_after_filter", "--max_length", "16"), {}, None),
        "not_an_adapter": (sft("not_an_adapter", "--adapters", model), {}, None),
        "resume_failed": (sft("resume_failed", "--resume_from_checkpoint", str(work / "out" / "gone" / "checkpoint-4")),
                          {}, None),
        "dataset_invalid-dpo_no_rejected": (["rlhf", "--rlhf_type", "dpo", *base, "--dataset", data,
                                             *out("dpo_no_rejected")], {}, None),
        "reward_function_not_found": (["rlhf", "--rlhf_type", "grpo", "--reward_funcs", "no_such_reward", *base,
                                       "--dataset", str(demo / "identity_prompts.json"), "--num_generations", "2",
                                       "--per_device_train_batch_size", "2", "--max_completion_length", "8",
                                       *out("grpo_reward")], {}, None),
        "missing_package-deepspeed": (sft("deepspeed", "--deepspeed", "zero2"), {}, None),
        "model_type_unknown": (["sft", "--model", model, "--model_type", "no_such_type",
                               "--template", "qwen2_5", *tuner, "--dataset", data, "--max_steps", "1",
                               *out("model_type_unknown")], {}, None),
        "template_unknown": (["sft", "--model", model, "--model_type", "qwen2", "--template", "no_such_template", *tuner,
                              "--dataset", data, "--max_steps", "1", *out("template_unknown")], {}, None),
        "invalid_argument-target_modules": (sft("target_modules", "--target_modules", "no_such_proj"), {}, None),
        "reward_function_not_found-none": (["rlhf", "--rlhf_type", "grpo", *base,
                                            "--dataset", str(demo / "identity_prompts.json"), "--num_generations", "2",
                                            "--per_device_train_batch_size", "2", "--max_completion_length", "8",
                                            *out("grpo_none")], {}, None),
        "model_type_ambiguous": (["sft", "--model", model, *tuner, "--dataset", data, "--torch_dtype", "float32",
                                  "--max_steps", "1", *out("mt_ambiguous")], {}, None),
        "tokenizer_load_failed": (["sft", "--model", str(broken), *base[2:], "--dataset", data, *out("tok")], {}, None),
        "unknown": (sft("unknown", "--external_plugins", str(plugin)), {}, None),
        "no_failure-row_of_another_type": (sft("schema", dataset=str(mixed)), {}, None),
        "dataset_invalid-kto_no_label": (["rlhf", "--rlhf_type", "kto", *base, "--dataset", data,
                                          "--per_device_train_batch_size", "2", "--gradient_accumulation_steps", "1",
                                          *out("kto_no_label")], {}, None),
        "invalid_argument-kto_no_accumulation": (["rlhf", "--rlhf_type", "kto", *base, "--dataset", data,
                                                  "--per_device_train_batch_size", "2", *out("kto_no_ga")], {}, None),
        "cpu_bf16_unsupported": (sft("bf16") + ["--torch_dtype", "bfloat16"], {}, None),
        "killed_by_signal-torchrun-9": (sft("tr9", *long_train), {"NPROC_PER_NODE": "1"}, 9),
        "killed_by_signal-torchrun-6": (sft("tr6", *long_train), {"NPROC_PER_NODE": "1"}, 6),
        "killed_by_signal-torchrun-11": (sft("tr11", *long_train), {"NPROC_PER_NODE": "1"}, 11),
    }
    return s


def _trainer_pid(root: int) -> int | None:
    """The deepest descendant of root whose command line runs swift's cli (the rank under torchrun)."""
    out = subprocess.run(["ps", "-eo", "pid=,ppid=,args="], capture_output=True, text=True).stdout
    kids: dict[int, list[tuple[int, str]]] = {}
    for line in out.splitlines():
        pid, ppid, cmd = line.split(None, 2) + [""] * (3 - len(line.split(None, 2)))
        kids.setdefault(int(ppid), []).append((int(pid), cmd))
    found, todo = None, [root]
    while todo:
        p = todo.pop()
        for c, cmd in kids.get(p, []):
            if "swift/cli/" in cmd and "torchrun" not in cmd and "torch.distributed.run" not in cmd:
                found = c
            todo.append(c)
    return found


def record(name, argv, env_extra, sig, swift, version, dest: Path):
    env = {**os.environ, **env_extra, "PYTHONUNBUFFERED": "1"}
    cmd = [swift, *argv]
    log = dest / f"{name}.log"
    t0 = time.time()
    note = ""
    with open(log, "wb") as f:
        p = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        if sig:
            deadline = time.time() + 400
            while time.time() < deadline and p.poll() is None:
                text = log.read_bytes().decode("utf-8", "replace")
                if re.search(r"Saving model checkpoint to", text):
                    pid = _trainer_pid(p.pid)
                    if pid:
                        os.kill(pid, sig)
                        note = f"signal {sig} sent to the rank's trainer process (pid {pid}) after its first checkpoint"
                        break
                time.sleep(0.5)
        try:
            code = p.wait(timeout=600)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, 9)
            code = p.wait()
    kind = name.split("-")[0]
    meta = {"kind": kind, "version": version, "command": cmd, "exit_code": code, "wall_s": round(time.time() - t0, 1),
            "env": env_extra or None,
            "recorded": f"real run on the 2-core CPU machine, ms-swift {version}, stdout+stderr merged",
            "note": note}
    (dest / f"{name}.json").write_text(json.dumps(meta, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"{name}: exit {code} in {meta['wall_s']} s", flush=True)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--version", required=True)
    ap.add_argument("--swift", required=True)
    ap.add_argument("--demo", type=Path, required=True)
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("names", nargs="*")
    a = ap.parse_args()
    dest = HERE / a.version
    dest.mkdir(exist_ok=True)
    a.work.mkdir(parents=True, exist_ok=True)
    todo = scenarios(a.version.startswith("3"), a.demo, a.work)
    for name, (argv, env, sig) in todo.items():
        if a.names and name not in a.names:
            continue
        record(name, argv, env, sig, a.swift, a.version, dest)
    return 0


if __name__ == "__main__":
    sys.exit(main())
