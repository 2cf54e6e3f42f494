"""`python -m bench`: the CPU benchmarks, one after another (results go into docs/BENCHMARKS.md by hand).
`python -m bench --short`: the short (CI) mode of every benchmark that has one, so none of them can rot."""
import subprocess
import sys

FULL = ("bench.bench_ingest", "bench.bench_demo", "bench.bench_tui", "bench.bench_chat", "bench.bench_stop")
SHORT = ("bench.bench_scale", "bench.bench_log", "bench.bench_startup", "bench.bench_switcher", "bench.bench_tui",
         "bench.bench_overhead", "bench.bench_overhead --within-run", "bench.bench_dataset")

short = "--short" in sys.argv[1:]
failed = []
for module in SHORT if short else FULL:
    print(f"== {module}", flush=True)
    name, *args = module.split()
    if subprocess.run([sys.executable, "-m", name, *args, *(["--short"] if short else [])]).returncode:
        failed.append(module)
if failed:
    print(f"failed: {', '.join(failed)}", file=sys.stderr)
sys.exit(1 if failed and short else 0)
