"""One function per use case, called by both faces (engine/cli.py and the dashboard). Screens build a plan with
these and show the result; widgets never start or stop a process themselves.

- runs:        resolve a RUN argument, list runs, the newest run (under an output dir), a run's summary
- launch:      check a command (arguments + datasets), start it, plan a resume or a relaunch
- jobs:        stop, deploy and wait, merge and wait, leftovers
- checkpoints: delete or strip a checkpoint, refused while a live process may need it; prune / strip a run in bulk
- compare:     compare runs (losses, best checkpoint, differing args.json arguments, a resumed run's joined curve)
- wait:        wait on a run another process started (0 finished, 1 failed/stopped/lost, 124 timed out)
- notify:      the end-of-run notification per outcome and its terminal sequences (OSC 9, OSC 777, bell)
- disk:        per output dir: size of each run and checkpoint, optimizer bytes, free space
"""
