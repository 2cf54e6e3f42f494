"""A worker for `python -m torch.distributed.run` in the multi-GPU tests: it behaves, as far as a stop is
concerned, like an ms-swift trainer with the graceful_exit callback, without loading a model (no torch import).

    python -m torch.distributed.run --nproc_per_node 2 rank.py OUT_DIR MODE

Each rank writes OUT_DIR/rank<RANK>.started, forks one child (like a dataloader worker, same environment) that
leaves when its parent is gone, then "trains" in 50 ms steps. MODE:
    graceful  SIGUSR1 ends the step loop: it writes OUT_DIR/rank<RANK>.saved and exits 0
    deaf      SIGUSR1 is ignored (a rank stuck in a collective); SIGTERM ends it as usual
    fail1     rank 1 exits with code 3 once OUT_DIR/fail exists (torchrun then stops the others)
"""
import os
import signal
import sys
import time
from pathlib import Path

out, mode = Path(sys.argv[1]), sys.argv[2]
rank = int(os.environ["RANK"])
stop = False


def on_usr1(signum, frame):
    global stop
    stop = True


if mode == "graceful":
    signal.signal(signal.SIGUSR1, on_usr1)
elif mode == "deaf":
    signal.signal(signal.SIGUSR1, signal.SIG_IGN)

parent = os.getpid()
if os.fork() == 0:  # the "dataloader worker"
    while os.getppid() == parent:
        time.sleep(0.1)
    os._exit(0)

(out / f"rank{rank}.started").write_text(str(os.getpid()))
step = 0
while not stop:
    time.sleep(0.05)
    step += 1
    if mode == "fail1" and rank == 1 and (out / "fail").exists():
        print(f"rank {rank}: failing at step {step}", flush=True)
        sys.exit(3)
(out / f"rank{rank}.saved").write_text(str(step))
