"""Wall time and peak memory of `swiftdeck check-dataset` on a large generated JSONL (or .json / .csv) file.

Run: `.venv/bin/python -m bench.bench_dataset [--mb 200] [--short] [--format jsonl|json|csv] [--repo PATH ...]`.
Each --repo is a checkout whose `python -m tui.cli check-dataset FILE --json` is run as a subprocess (default:
this one); give two to compare an older checkout side by side. Peak RSS is the child's ru_maxrss (os.wait4).
--short: a 20 MB file, for a quick check. No assertions.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TOPICS = ["梯度下降", "LoRA 微调", "注意力机制", "tokenizer", "learning rate warmup", "混合精度训练", "数据清洗",
          "checkpoint 恢复", "batch size", "过拟合"]
IDENTITY = [("你是谁?", "我是 Swift-Robot,由 CSDN 迪菲赫尔曼 开发的人工智能助手。"),
            ("Who are you?", "I am Swift-Robot, an assistant developed by CSDN 迪菲赫尔曼."),
            ("你的开发者是谁?", "我由 CSDN 迪菲赫尔曼 开发和维护。")]


def rows(target_bytes: int, rng: random.Random):
    """Alpaca rows (mixed Chinese/English, 0.2-1 KB) until `target_bytes` of JSON Lines: 2 % identity rows, 1 %
    exact duplicates, 0.5 % with an empty output."""
    size, i, recent = 0, 0, []
    while size < target_bytes:
        i += 1
        pick = rng.random()
        if pick < 0.02:
            q, a = rng.choice(IDENTITY)
            row = {"instruction": q, "input": "", "output": a}
        elif pick < 0.03 and recent:
            row = rng.choice(recent)
        else:
            topic = rng.choice(TOPICS)
            q = f"第 {i} 题:请解释 {topic} 的作用,并举一个例子。" + " detail" * rng.randint(0, 12)
            a = (f"{topic} 是训练中的一个重要概念。" * rng.randint(1, 8) + f" Example {i}: "
                 + " ".join(rng.choice(TOPICS) for _ in range(rng.randint(3, 30))))
            row = {"instruction": q, "input": "", "output": "" if pick > 0.995 else a}
            if len(recent) < 1000:
                recent.append(row)
        line = json.dumps(row, ensure_ascii=False)
        size += len(line.encode()) + 1
        yield row, line


def generate(path: Path, mb: float, fmt: str) -> int:
    rng = random.Random(14)
    n = 0
    with open(path, "w", encoding="utf-8", newline="") as f:
        if fmt == "csv":
            w = csv.DictWriter(f, fieldnames=["instruction", "input", "output"])
            w.writeheader()
        elif fmt == "json":
            f.write("[\n")
        for row, line in rows(int(mb * 2**20), rng):
            if fmt == "csv":
                w.writerow(row)
            elif fmt == "json":
                f.write(("" if n == 0 else ",\n") + line)
            else:
                f.write(line + "\n")
            n += 1
        if fmt == "json":
            f.write("\n]\n")
    return n


# Run the command from a small launcher and read its peak RSS there: a child's ru_maxrss includes the memory of
# the process it was forked from (Linux keeps the pre-exec high-water mark), so measured straight from a big
# parent (pytest, a benchmark that built data) it would report the parent's size.
LAUNCHER = """
import json, resource, subprocess, sys, time
t0 = time.perf_counter()
p = subprocess.run(json.loads(sys.argv[1]), cwd=sys.argv[2], capture_output=True)
u = resource.getrusage(resource.RUSAGE_CHILDREN)
json.dump({"wall_s": time.perf_counter() - t0, "cpu_s": u.ru_utime + u.ru_stime, "peak_rss": u.ru_maxrss * 1024,
           "exit": p.returncode, "stdout": p.stdout.decode(errors="replace"),
           "stderr": p.stderr.decode(errors="replace")}, sys.stdout)
"""


def run_measured(argv: list[str], *, cwd: Path, env: dict | None = None, timeout: float | None = None) -> dict:
    """Run argv; {wall_s, cpu_s, peak_rss (bytes), exit, stdout, stderr} of that process alone."""
    out = subprocess.run([sys.executable, "-c", LAUNCHER, json.dumps(argv), str(cwd)], env=env, timeout=timeout,
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def measure(repo: Path, path: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": str(repo)}
    run = run_measured([sys.executable, "-m", "tui.cli", "check-dataset", str(path), "--json"], cwd=repo, env=env)
    try:
        report = json.loads(run["stdout"])
    except ValueError:
        report = {"error": (run["stderr"] or run["stdout"]).strip()[-300:]}
    return {"repo": str(repo), "wall_s": round(run["wall_s"], 1), "cpu_s": round(run["cpu_s"], 1),
            "peak_rss_mb": round(run["peak_rss"] / 2**20), "exit": run["exit"], "rows": report.get("rows"),
            "errors": report.get("errors"), "warnings": report.get("warnings"), "note": report.get("error")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mb", type=float, default=200.0)
    ap.add_argument("--short", action="store_true", help="a 20 MB file")
    ap.add_argument("--format", choices=("jsonl", "json", "csv"), default="jsonl")
    ap.add_argument("--repo", type=Path, action="append", help="checkout to run (repeat to compare)")
    ap.add_argument("--keep", type=Path, help="write the generated file here and keep it")
    ns = ap.parse_args()
    mb = 20.0 if ns.short else ns.mb
    with tempfile.TemporaryDirectory() as tmp:
        path = ns.keep or Path(tmp) / f"bench.{ns.format}"
        t0 = time.perf_counter()
        n = generate(path, mb, ns.format)
        size = path.stat().st_size
        print(f"{path.name}: {size / 2**20:.0f} MB, {n} rows (generated in {time.perf_counter() - t0:.1f} s); "
              f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
              f"load {os.getloadavg()[0]:.1f}, Python {platform.python_version()}, {time.strftime('%Y-%m-%d')}")
        for repo in ns.repo or [REPO]:
            print(json.dumps(measure(repo.resolve(), path)), flush=True)


if __name__ == "__main__":
    main()
