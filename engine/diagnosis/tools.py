"""What the tools around ms-swift say when a process dies: torchrun's ChildFailedError summary (exit code or signal
of each rank) and the likely cause of each signal."""
from __future__ import annotations

import re

from engine.ranks import child_failures

SIGNAL_NAMES = {1: "SIGHUP", 2: "SIGINT", 6: "SIGABRT", 7: "SIGBUS", 9: "SIGKILL", 11: "SIGSEGV", 15: "SIGTERM"}
_NUMBERS = {v: k for k, v in SIGNAL_NAMES.items()}
_EXITCODE = re.compile(r"^\s*exitcode\s*: (-\d+) \(pid: (\d+)\)", re.M)

# (likely cause, what to do) per signal
SIGNAL_CAUSES: dict[int, tuple[str, list[str]]] = {
    9: ("with no Python error: most likely the kernel's out-of-memory killer (host RAM)",
        ["check `dmesg | grep -i -e oom -e killed` (or journalctl -k)",
         "use less host RAM: fewer --dataloader_num_workers, smaller --per_device_train_batch_size, "
         "--lazy_tokenize true, close other programs"]),
    6: ("(an abort in native code: a C++ exception or failed check, e.g. an NCCL watchdog timeout or a CUDA error; "
        "the lines above it, `terminate called ...` / `what():`, say which)",
        ["read the native error just above torchrun's summary (`what():`, NCCL or CUDA lines)",
         "rerun with NCCL_DEBUG=INFO (multi-GPU) or CUDA_LAUNCH_BLOCKING=1 (a CUDA error) to see where it failed"]),
    11: ("(a segmentation fault in native code: often a compiled extension built for another torch or CUDA "
         "(flash-attn, DeepSpeed ops, bitsandbytes, vLLM) or a driver problem)",
         ["reinstall the compiled extensions against the installed torch (pip install --force-reinstall "
          "--no-build-isolation ...), or run without them (--attn_impl sdpa, no --deepspeed)",
          "check that the NVIDIA driver supports the CUDA of this torch (nvidia-smi, python -c 'import torch; "
          "print(torch.version.cuda)')"]),
    7: ("(a bus error: usually shared memory (/dev/shm) too small for the dataloader workers, as in a container)",
        ["give the container more shared memory (docker run --shm-size 16g) or use --dataloader_num_workers 0"]),
    2: ("(stopped from outside: Ctrl-C, a stop button or kill)", []),
    15: ("(stopped from outside: Ctrl-C, a stop button or kill)", []),
    1: ("(stopped from outside: Ctrl-C, a stop button or kill)", []),
}


def signal_name(sig: int) -> str:
    return SIGNAL_NAMES.get(sig, f"signal {sig}")


def torchrun_root(text: str) -> dict | None:
    """The rank torchrun names as the root cause in its last ChildFailedError summary (engine.ranks.child_failures),
    with `signal` as a number when the rank died of one (a negative exit code), else None."""
    failures = child_failures(text)
    if not failures:  # a pasted line of the summary: "exitcode  : -9 (pid: 977)"
        m = _EXITCODE.search(text)
        if not m:
            return None
        failures = [{"rank": None, "local_rank": None, "exit_code": int(m[1]), "pid": int(m[2]), "signal": None,
                     "traceback": "", "root_cause": True}]
    root = dict(next((f for f in failures if f["root_cause"]), failures[0]))
    sig = -root["exit_code"] if root["exit_code"] < 0 else _NUMBERS.get(root.get("signal") or "")
    root["signal_number"] = sig
    return root
