"""The ranks of a distributed run: which process is which rank, on which GPU, and torchrun's agent.

`swift sft|pt|rlhf` with NPROC_PER_NODE or NNODES set runs `python -m torch.distributed.run` (the torchrun
*agent*), which starts one worker per local rank, each in a new session (its own process group), and gives each its
identity in its environment: RANK, LOCAL_RANK, WORLD_SIZE, GROUP_RANK (the node), TORCHELASTIC_RUN_ID,
TORCHELASTIC_RESTART_COUNT. The runner reads that from /proc/PID/environ of each new descendant (`Tracker`) and
records it in the run's record (`meta["ranks"]`, `meta["agents"]`), so that stop, the GPU pane and the diagnosis
know every rank, pid + start time, even after torchrun or the `swift` wrapper is gone.

A rank's GPU is the device its trainer uses: ms-swift (and transformers) put local rank N on `cuda:N`, which is the
N-th entry of CUDA_VISIBLE_DEVICES (an index or a UUID), or GPU N when it is unset. NVML's view (which GPU lists
the pid) is the truth once the rank holds memory: `usage()`.
"""
from __future__ import annotations

import re
import socket
import time
from dataclasses import asdict, dataclass
from typing import Iterable

import psutil

RETRY_S = 10.0  # a new process is looked at again this long: it may not have exec'd (and got its env) yet
RANK_ENV = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "GROUP_RANK", "TORCHELASTIC_RUN_ID", "TORCHELASTIC_RESTART_COUNT",
            "CUDA_VISIBLE_DEVICES", "LOCAL_WORLD_SIZE")


@dataclass(frozen=True)
class Rank:
    pid: int
    create_time: float
    rank: int  # global rank
    local_rank: int
    world_size: int
    node_rank: int  # torchrun's GROUP_RANK (NODE_RANK of a static rendezvous)
    gpu: str  # the GPU it runs on: an NVML index ("1") or the UUID CUDA_VISIBLE_DEVICES gave
    restart: int = 0  # TORCHELASTIC_RESTART_COUNT: >0 for a worker torchrun restarted

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> "Rank | None":
        try:
            return cls(int(data["pid"]), float(data["create_time"]), int(data["rank"]), int(data["local_rank"]),
                       int(data["world_size"]), int(data.get("node_rank", 0)), str(data.get("gpu", "")),
                       int(data.get("restart", 0)))
        except (KeyError, TypeError, ValueError):
            return None

    def where(self) -> str:
        """'rank 1 (node 0, local rank 1, GPU 1)'."""
        return f"rank {self.rank} (node {self.node_rank}, local rank {self.local_rank}, GPU {self.gpu})"


def gpu_of(env: dict[str, str], local_rank: int) -> str:
    """The GPU local rank `local_rank` uses under this environment (see the module's note)."""
    visible = [d.strip() for d in (env.get("CUDA_VISIBLE_DEVICES") or "").split(",") if d.strip()]
    if env.get("CUDA_VISIBLE_DEVICES") is None or not visible:
        return str(local_rank)
    return visible[local_rank] if local_rank < len(visible) else f"?{local_rank}"


def is_agent(cmdline: list[str]) -> bool:
    """Whether this command line is torchrun's agent (`python -m torch.distributed.run ...` or `torchrun ...`)."""
    if any(a.endswith("torchrun") for a in cmdline[:2]):
        return True
    return any(a == "-m" and b in ("torch.distributed.run", "torch.distributed.launch")
               for a, b in zip(cmdline, cmdline[1:]))


def _rank_env(proc: psutil.Process) -> dict[str, str] | None:
    env = proc.environ()
    if "TORCHELASTIC_RUN_ID" not in env or "RANK" not in env or "LOCAL_RANK" not in env:
        return None
    return {k: env[k] for k in RANK_ENV if k in env}


def identify(proc: psutil.Process) -> Rank | str | None:
    """A Rank for a rank's trainer, "agent" for torchrun's agent, "child" for a process a rank started (dataloader
    workers are forks with the same environment), None for anything else (or a process that is gone)."""
    try:
        cmdline = proc.cmdline()
        if is_agent(cmdline):
            parent = proc.parent()
            if parent is not None and parent.cmdline() == cmdline:
                return None  # a child of the agent before its exec (it shows its parent's command line for now)
            return "agent"
        env = _rank_env(proc)
        if env is None:
            return None
        try:
            parent = proc.parent()
            parent_env = _rank_env(parent) if parent is not None else None
        except psutil.Error:
            parent_env = None
        if parent_env is not None and parent_env.get("RANK") == env["RANK"] \
                and parent_env.get("TORCHELASTIC_RUN_ID") == env["TORCHELASTIC_RUN_ID"]:
            return "child"
        local = int(env["LOCAL_RANK"])
        return Rank(proc.pid, proc.create_time(), int(env["RANK"]), local, int(env.get("WORLD_SIZE", "0")),
                    int(env.get("GROUP_RANK", "0")), gpu_of(env, local), int(env.get("TORCHELASTIC_RESTART_COUNT",
                                                                                      "0")))
    except (psutil.Error, OSError, ValueError):
        return None


class Tracker:
    """Classifies a run's descendants as they appear (used by engine.runner once a second). A process is looked at
    until it is a rank or an agent, or for RETRY_S after it was first seen (before its exec it still has its
    parent's environment)."""

    def __init__(self, ranks: Iterable[Rank] = (), agents: Iterable[tuple[int, float]] = ()):
        self.ranks: dict[tuple[int, float], Rank] = {(r.pid, r.create_time): r for r in ranks}
        self.agents: dict[tuple[int, float], None] = {(int(p), float(t)): None for p, t in agents}
        self._first_seen: dict[tuple[int, float], float] = {}
        self._done: set[tuple[int, float]] = set(self.ranks) | set(self.agents)
        self.dirty = False

    def see(self, processes: dict[int, float]) -> bool:
        """Look at the processes (pid → start time) not classified yet; True while a rank or an agent found is not
        stored yet (the caller sets `dirty` to False once the record with it is written)."""
        now = time.monotonic()
        for pid, ctime in processes.items():
            key = (int(pid), float(ctime))
            if key in self._done:
                continue
            first = self._first_seen.setdefault(key, now)
            proc = _verified(*key)
            found = identify(proc) if proc is not None else None
            if isinstance(found, Rank):
                self.ranks[key] = found
            elif found == "agent":
                self.agents[key] = None
            if proc is None or found is not None or now - first > RETRY_S:
                self._done.add(key)
                self._first_seen.pop(key, None)
                self.dirty = self.dirty or found == "agent" or isinstance(found, Rank)
        return self.dirty

    def store(self, meta: dict) -> None:
        """Write what is known into a record's meta (ranks by global rank, then start)."""
        meta["ranks"] = [r.to_json() for r in sorted(self.ranks.values(), key=lambda r: (r.rank, r.create_time))]
        meta["agents"] = [[pid, ctime] for pid, ctime in self.agents]


# ---------------------------------------------------------------- reading a record

def recorded(rec) -> list[Rank]:
    """Every rank recorded for the run (alive or not), by global rank."""
    meta = rec.meta if isinstance(getattr(rec, "meta", None), dict) else {}
    out = [r for r in (Rank.from_json(d) for d in meta.get("ranks") or () if isinstance(d, dict)) if r]
    return sorted(out, key=lambda r: (r.rank, r.create_time))


def recorded_agents(rec) -> list[tuple[int, float]]:
    meta = rec.meta if isinstance(getattr(rec, "meta", None), dict) else {}
    out = []
    for item in meta.get("agents") or ():
        try:
            out.append((int(item[0]), float(item[1])))
        except (TypeError, ValueError, IndexError):
            continue
    return out


def _verified(pid: int, create_time: float) -> psutil.Process | None:
    try:
        proc = psutil.Process(pid)
        if abs(proc.create_time() - create_time) < 0.05 and proc.status() != psutil.STATUS_ZOMBIE:
            return proc
    except psutil.Error:
        pass
    return None


def live(rec) -> list[tuple[Rank, psutil.Process]]:
    """The recorded ranks that are still alive (verified by pid + start time)."""
    return [(r, p) for r in recorded(rec) if (p := _verified(r.pid, r.create_time)) is not None]


def live_agents(rec) -> list[psutil.Process]:
    return [p for pid, ctime in recorded_agents(rec) if (p := _verified(pid, ctime)) is not None]


def distributed(env: dict[str, str]) -> dict | None:
    """The torchrun layout a run's environment asks for (None: a single process)."""
    if env.get("NPROC_PER_NODE") is None and env.get("NNODES") is None:
        return None

    def num(name: str, default: int) -> int:
        try:
            return int(env.get(name) or default)
        except ValueError:
            return default

    return {"nproc_per_node": num("NPROC_PER_NODE", 1), "nnodes": num("NNODES", 1), "node_rank": num("NODE_RANK", 0),
            "master_addr": env.get("MASTER_ADDR") or "127.0.0.1", "master_port": num("MASTER_PORT", 29500)}


# ---------------------------------------------------------------- what the GPU pane shows per rank

@dataclass(frozen=True)
class RankUsage:
    rank: Rank
    alive: bool
    gpus: tuple[int, ...]  # NVML indices that list the rank's trainer (or its children)
    mem_bytes: int | None  # GPU memory of the rank's processes, None without NVML
    util_gpu: float | None  # utilisation of the (first) GPU it is on


def usage(rec, snapshot, tree: Iterable[psutil.Process] | None = None) -> list[RankUsage]:
    """Per rank: alive or not, the GPU(s) NVML lists its processes on, its memory and that GPU's utilisation.
    A rank's children (dataloader workers, compile workers) count as the rank's."""
    children: dict[int, list[int]] = {}
    for proc in tree or ():
        try:
            env = _rank_env(proc)
        except (psutil.Error, OSError):
            continue
        if env is not None:
            children.setdefault(int(env["RANK"]), []).append(proc.pid)
    out = []
    for r in recorded(rec):
        alive = _verified(r.pid, r.create_time) is not None
        pids = {r.pid, *(children.get(r.rank, []) if alive else [])}
        gpus, mem, util = [], 0, None
        for g in getattr(snapshot, "gpus", ()):
            held = [p.used_mem or 0 for p in g.processes if p.pid in pids]
            if held:
                gpus.append(g.index)
                mem += sum(held)
                util = g.util_gpu if util is None else util
        available = bool(getattr(snapshot, "available", False))
        out.append(RankUsage(r, alive, tuple(gpus), mem if available else None, util))
    return out


# ---------------------------------------------------------------- what a failed distributed run says

# torchrun's ChildFailedError summary: one block per failed rank ("Failures:" and "Root Cause (first observed
# failure):"), e.g.
#   rank      : 1 (local_rank: 1)
#   exitcode  : -9 (pid: 4242) (SIGKILL)   |   exitcode  : 1 (pid: 4242)
#   traceback : Signal 9 (SIGKILL) received by PID 4242
_FAILURE = re.compile(r"^\s*rank\s*: (?P<rank>\d+) \(local_rank: (?P<local>\d+)\)\s*\n"
                      r"\s*exitcode\s*: (?P<code>-?\d+) \(pid: (?P<pid>\d+)\)(?:\s+\((?P<sig>SIG\w+)\))?\s*\n"
                      r"(?:\s*error_file\s*:.*\n)?(?:\s*traceback\s*: (?P<tb>.*))?", re.M)
_ROOT = "Root Cause (first observed failure):"
_OOM_RANK = re.compile(r"^\[rank(\d+)\]:.*(?:CUDA out of memory|OutOfMemoryError|CUDA error: out of memory)", re.M)


def child_failures(text: str) -> list[dict]:
    """The ranks torchrun reported as failed in its last ChildFailedError summary: rank, local rank, exit code,
    pid, signal name, torchrun's one-line traceback field and whether it is the root cause (first failure)."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    start = text.rfind("ChildFailedError")
    if start < 0:
        return []
    block = text[start:]
    root_at = block.find(_ROOT)
    out = []
    for m in _FAILURE.finditer(block):
        out.append({"rank": int(m["rank"]), "local_rank": int(m["local"]), "exit_code": int(m["code"]),
                    "pid": int(m["pid"]), "signal": m["sig"], "traceback": (m["tb"] or "").strip()[:200],
                    "root_cause": root_at >= 0 and m.start() > root_at})
    return out


def describe_failure(failure: dict) -> str:
    """'rank 1 (local rank 1) exited with code 1' / '... was killed by SIGKILL'."""
    how = (f"was killed by {failure['signal']}" if failure.get("signal")
           else f"exited with code {failure['exit_code']}")
    return f"rank {failure['rank']} (local rank {failure['local_rank']}, pid {failure['pid']}) {how}"


def oom_rank(text: str, failures: list[dict]) -> int | None:
    """The rank that ran out of GPU memory: the `[rankN]:` prefix torch puts on a rank's traceback, else the root
    cause of torchrun's summary."""
    found = _OOM_RANK.findall(text.replace("\r", "\n"))
    if found:
        return int(found[0])
    root = [f["rank"] for f in failures if f["root_cause"]]
    return root[0] if root else None


def add_rank_failures(diag, text: str) -> None:
    """Add what a torchrun run's log says about its ranks to a diagnosis (in place): `rank_failures` from torchrun's
    summary; for `cuda_oom` the rank (`rank`) and a summary that names it; for another failure, the first failed
    rank in the summary."""
    failures = child_failures(text)
    if failures:
        diag.details["rank_failures"] = failures
    if diag.kind == "cuda_oom":
        rank = oom_rank(text, failures)
        if rank is not None:
            diag.details["rank"] = rank
            diag.summary = re.sub(r"^CUDA out of memory on ", f"CUDA out of memory on rank {rank}, ", diag.summary)
    elif failures and diag.kind not in ("no_failure", "stopped_by_user") and "rank" not in diag.details:
        first = next((f for f in failures if f["root_cause"]), failures[0])
        diag.summary += f"; torchrun: {describe_failure(first)}"


def place_on_gpu(diag, rec) -> None:
    """For a `cuda_oom` of a recorded run: the node and the physical GPU of the rank that ran out (from the ranks
    the runner recorded, else CUDA_VISIBLE_DEVICES and torch's device index)."""
    if diag.kind != "cuda_oom":
        return
    env = dict(rec.env or {})
    rank, index = diag.details.get("rank"), diag.details.get("gpu")
    known = {r.rank: r for r in recorded(rec)}
    if rank in known:
        gpu, node = known[rank].gpu, known[rank].node_rank
    elif isinstance(index, int) and env.get("CUDA_VISIBLE_DEVICES"):
        gpu, node = gpu_of(env, index), (distributed(env) or {}).get("node_rank", 0)
    else:
        return
    diag.details.update(node_rank=node, physical_gpu=gpu)
    who = f"rank {rank} (node {node}, GPU {gpu})" if rank is not None else f"GPU {gpu}"
    diag.summary = re.sub(r"^CUDA out of memory on (?:rank \d+, )?(?:GPU \d+|the GPU)",
                          f"CUDA out of memory on {who}", diag.summary)


# ---------------------------------------------------------------- the other nodes of a multi-node run

class PeerWatch:
    """Whether the other side of a multi-node run is still there, for the runner of one node (each node runs its own
    swiftdeck). A rank blocked in an NCCL collective whose peer died waits for ms-swift's --ddp_timeout (5 hours by
    default), and torchrun's static rendezvous does not notice a node that is gone; so:

    - node 0 hosts torchrun's store on MASTER_PORT (in its agent). The other nodes' agents and ranks hold TCP
      connections to it. Once some were seen, no connection from outside this node's own tree for MISSES checks
      in a row means the other nodes are gone.
    - any other node: the master's store stops accepting connections (MISSES refusals in a row, after it was
      reached once) means node 0 is gone.

    Only once the other side was there: seen by one of the checks, or implied by this node's ranks having started
    (torchrun's static rendezvous starts them only when every node has joined).

    `gone(tree_pids, started)` is called often and looks every CHECK_S; it returns the reason once, else None."""

    CHECK_S = 2.0
    MISSES = 3

    def __init__(self, env: dict[str, str]):
        layout = distributed(env)
        self.active = bool(layout and layout["nnodes"] > 1)
        self.layout = layout or {}
        self._seen = False
        self._misses = 0
        self._last = 0.0
        self._said = False

    def gone(self, tree_pids: set[int], started: bool = False) -> str | None:
        if not self.active or self._said or time.monotonic() - self._last < self.CHECK_S:
            return None
        self._seen = self._seen or started
        self._last = time.monotonic()
        port, node = self.layout["master_port"], self.layout["node_rank"]
        there = self._peers_connected(port, tree_pids) if node == 0 else self._master_answers(port)
        if there:
            self._seen, self._misses = True, 0
            return None
        if not self._seen or there is None:
            return None
        self._misses += 1
        if self._misses < self.MISSES:
            return None
        self._said = True
        if node == 0:
            return (f"no other node is connected to torchrun's store on port {port} any more "
                    f"({self.layout['nnodes'] - 1} other node(s) expected): the rest of the run is gone")
        return (f"the master node's torchrun store {self.layout['master_addr']}:{port} stopped answering: node 0 of "
                "the run is gone")

    def gone_at_exit(self, started: bool) -> str | None:
        """At the exit of this node's processes (a node other than 0): the master's store no longer answers, so the
        run's other side ended first (a rank that failed meanwhile failed because of it)."""
        if not self.active or self.layout["node_rank"] == 0 or not (self._seen or started):
            return None
        if self._master_answers(self.layout["master_port"]):
            return None
        return (f"the master node's torchrun store {self.layout['master_addr']}:{self.layout['master_port']} was gone "
                "when this node's processes exited: node 0 of the run ended first")

    def _master_answers(self, port: int) -> bool:
        try:
            with socket.create_connection((self.layout["master_addr"], port), timeout=1.0):
                return True
        except OSError:
            return False

    @staticmethod
    def _peers_connected(port: int, tree_pids: set[int]) -> bool | None:
        """True if a process outside `tree_pids` holds a connection to our store; None if we cannot tell."""
        try:
            conns = psutil.net_connections(kind="tcp")
        except (psutil.Error, OSError):
            return None
        ours = {(c.laddr.ip, c.laddr.port) for c in conns if c.pid in tree_pids and c.laddr}
        for c in conns:
            if c.status == psutil.CONN_ESTABLISHED and c.laddr and c.raddr and c.laddr.port == port \
                    and c.pid in tree_pids and (c.raddr.ip, c.raddr.port) not in ours:
                return True
        return False
