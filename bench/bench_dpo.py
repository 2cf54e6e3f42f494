"""The DPO demo, measured: does the reward margin grow, and does the adapter prefer (and say) the chosen answers?

    .venv/bin/python -m bench.bench_dpo [--adapter SFT_CKPT] [--work DIR]

Runs the demo's real `swift rlhf --rlhf_type dpo` (engine.demo.demo_dpo_args) from the base model and, with
--adapter (e.g. the SFT demo's checkpoint-250), from that SFT adapter, once as the demo does it (with the SFT loss on
the chosen answers, --rpo_alpha 1) and once plain DPO. For each run: rewards/margins and rewards/accuracies over the
steps from its logging.jsonl, then engine.preference on the last checkpoint (log p(chosen) - log p(rejected) under
the reference and the adapter, and the greedy answers). One JSON line per run; numbers go into docs/BENCHMARKS.md
by hand. Real training: run it alone (`flock /tmp/swiftdeck-slow.lock ...` on a shared machine).
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def run_one(name: str, args: list[str], work: Path) -> dict:
    from engine import checkpoints, preference
    from engine.ingest import RunReader

    swift = Path(sys.executable).with_name("swift")
    log = work / f"{name}.log"
    t0 = time.time()
    with log.open("w") as f:
        code = subprocess.run([str(swift), "rlhf", *args], stdout=f, stderr=subprocess.STDOUT,
                              stdin=subprocess.DEVNULL).returncode
    wall = time.time() - t0
    if code != 0:
        return {"run": name, "exit_code": code, "log": str(log)}
    (folder,) = checkpoints.scan(Path(args[args.index("--output_dir") + 1]))
    reader = RunReader(run_dir=folder.path)
    reader.poll()
    rows = [m for m in reader.state.metrics if "rewards/margins" in m.values]
    margins = {m.step: round(m.values["rewards/margins"], 2) for m in rows}
    accuracy = {m.step: m.values["rewards/accuracies"] for m in rows}
    first_sure = next((s for s in sorted(accuracy) if all(accuracy[t] == 1 for t in accuracy if t >= s)), None)
    report = preference.run_subprocess(folder.checkpoints[-1].path)
    n = len(report.pairs)
    return {
        "run": name, "train_wall_s": round(wall, 1), "steps": max(margins) if margins else None,
        "margins": margins, "accuracy_1_from_step": first_sure, "pairs": n,
        "prefers_chosen": {"reference": report.ref_prefers, "adapter": report.prefers},
        "moved_towards_chosen": report.moved, "mean_logp_gap": {"reference": round(report.mean_gap(ref=True), 1),
                                                               "adapter": round(report.mean_gap(), 1)},
        "mean_reward_margin": round(report.mean_reward_margin, 2), "reference": report.reference,
        "greedy_says_chosen": {"reference": report.says_chosen(ref=True), "adapter": report.says_chosen()},
        "greedy_says_rejected": {"reference": report.says_rejected(ref=True), "adapter": report.says_rejected()},
    }


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--adapter", type=Path, help="an SFT LoRA checkpoint of the demo (e.g. its checkpoint-250)")
    ap.add_argument("--work", type=Path, help="where the runs go (default: a new temporary folder)")
    ns = ap.parse_args()
    from engine import demo

    work = (ns.work or Path(tempfile.mkdtemp(prefix="sdk-bench-dpo-"))).resolve()
    work.mkdir(parents=True, exist_ok=True)
    assets = demo.build_demo()  # the cached demo (the one an --adapter of `swiftdeck demo` was trained on)
    variants = [("from-base", demo.demo_dpo_args(assets, work / "from-base"))]
    if ns.adapter:
        args = demo.demo_dpo_args(assets, work / "from-sft", adapter=ns.adapter)
        plain = args[:args.index("--rpo_alpha")] + args[args.index("--rpo_alpha") + 2:]
        plain[plain.index("--output_dir") + 1] = str(work / "from-sft-plain")
        variants += [("from-sft", args), ("from-sft-plain-dpo", plain)]
    ok = True
    for name, args in variants:
        result = run_one(name, args, work)
        ok = ok and "exit_code" not in result
        print(json.dumps(result, ensure_ascii=False), flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
