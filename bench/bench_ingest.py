"""Throughput of engine.ingest on large synthetic ms-swift console logs and logging.jsonl files.

Run: `.venv/bin/python bench/bench_ingest.py [--mb 100]`. Prints MB/s per input shape (wall and CPU time: on a
shared machine the CPU figure is the steadier one); no assertions.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.ingest import ConsoleParser, JsonlParser, RunReader  # noqa: E402

BAR = "\rTrain:  {pct:>2}%|{bar:<10}| {n}/{total} [00:{el:02d}<01:36,  1.98it/s]"
TQDM_DICT = ("{{'loss': '{loss:.4g}', 'grad_norm': '11.96', 'learning_rate': '0.0004167', 'token_acc': '0.1452', "
             "'epoch': '{ep:.4g}', 'global_step/max_steps': '{n}/{total}', 'elapsed_time': '1m 2s', "
             "'remaining_time': '2m 30s', 'memory(GiB)': '17.3', 'train_speed(s/it)': '0.6273'}}\n")
NUMERIC_DICT = ("{{'loss': {loss}, 'grad_norm': nan, 'learning_rate': 9.33e-05, 'token_acc': 0.0, 'epoch': {ep}, "
                "'global_step/max_steps': '{n}/{total}', 'elapsed_time': '0s', 'remaining_time': '2s', "
                "'train_speed(s/it)': 0.418435}}\n")
NOISE = "    (q_proj): lora.Linear(\n      (base_layer): Linear(in_features=64, out_features=64, bias=False)\n"


def tqdm_log(target: int) -> bytes:
    """Default tqdm console: 3 bar redraws + a clear per step, a dict every 5 steps, a save every 50."""
    parts, size, n, total = [], 0, 0, 10**9
    while size < target:
        n += 1
        pct, bar = n % 100, "█" * (n % 10)
        chunk = "".join(BAR.format(pct=pct, bar=bar, n=n, total=total, el=n % 60) for _ in range(3))
        chunk += "\r" + " " * 60 + "\r"
        if n % 5 == 0:
            chunk += TQDM_DICT.format(loss=9.0 / n, ep=n / 8, n=n, total=total)
        if n % 50 == 0:
            chunk += f"[INFO:swift] Saving model checkpoint to /out/v0-20260101-000000/checkpoint-{n}\n"
        data = chunk.encode()
        parts.append(data)
        size += len(data)
    return b"".join(parts)


def dict_log(target: int) -> bytes:
    """--disable_tqdm console: one numeric dict per line, nothing else (the densest useful input)."""
    line = NUMERIC_DICT.format(loss=1.2345678, ep=0.5, n=1, total=10**9).encode()
    count = target // len(line) + 1
    return b"".join(NUMERIC_DICT.format(loss=9.0 / n, ep=n / 8, n=n, total=10**9).encode()
                    for n in range(1, count + 1))


def noise_log(target: int) -> bytes:
    """Model print / args dump: lines without anything to parse."""
    line = NOISE.encode()
    return line * (target // len(line) + 1)


def jsonl_log(target: int) -> bytes:
    rec = {"loss": 6.45658398, "grad_norm": 1.60264838, "learning_rate": 0.0005, "token_acc": 0.0, "epoch": 0.125,
           "global_step/max_steps": "1/24", "elapsed_time": "2s", "remaining_time": "38s", "memory(GiB)": 0.07,
           "train_speed(s/it)": 1.636948}
    lines, size, n = [], 0, 0
    while size < target:
        n += 1
        rec["global_step/max_steps"] = f"{n}/1000000000"
        rec["loss"] = 9.0 / n
        line = (json.dumps(rec) + "\n").encode()
        lines.append(line)
        size += len(line)
    return b"".join(lines)


def rate(label: str, parser_cls, data: bytes, chunk: int = 8 * 1024 * 1024) -> None:
    parser = parser_cls()
    t0, c0 = time.perf_counter(), time.process_time()
    events = 0
    for i in range(0, len(data), chunk):
        events += len(parser.feed(data[i:i + chunk]))
    events += len(parser.flush())
    report(label, len(data), time.perf_counter() - t0, time.process_time() - c0, f"{events} events")


def report(label: str, size: int, wall: float, cpu: float, extra: str) -> None:
    mb = size / 1e6
    print(f"{label:<34} {mb:7.1f} MB  wall {wall:6.2f} s = {mb / wall:6.1f} MB/s  "
          f"cpu {cpu:6.2f} s = {mb / cpu:6.1f} MB/s  {extra}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mb", type=float, default=100.0, help="size of each synthetic input in MB")
    target = int(ap.parse_args().mb * 1e6)
    tqdm_data = tqdm_log(target)
    rate("console, tqdm bars + dicts", ConsoleParser, tqdm_data)
    rate("console, numeric dicts only", ConsoleParser, dict_log(target))
    rate("console, model-print noise", ConsoleParser, noise_log(target))
    rate("logging.jsonl", JsonlParser, jsonl_log(target))
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "console.log"
        log.write_bytes(tqdm_data)
        t0, c0 = time.perf_counter(), time.process_time()
        reader = RunReader(log)
        reader.poll(final=True)
        report("RunReader.poll, tqdm console file", len(tqdm_data), time.perf_counter() - t0,
               time.process_time() - c0, f"{len(reader.state.metrics)} steps kept")


if __name__ == "__main__":
    main()
