"""`python -m bench`: the CPU benchmarks, one after another (results go into docs/BENCHMARKS.md by hand)."""
import subprocess
import sys

for module in ("bench.bench_ingest", "bench.bench_demo", "bench.bench_tui", "bench.bench_chat", "bench.bench_stop"):
    print(f"== {module}", flush=True)
    subprocess.run([sys.executable, "-m", module])
