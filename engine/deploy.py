"""`swift deploy` as a managed job: bound to 127.0.0.1 unless asked otherwise, real port read back, ready when
`/health` answers; plus a tiny streaming client for its OpenAI-compatible API (stdlib only, no torch).

Ports: ms-swift checks --port when it parses its arguments but uvicorn binds it only after the model is loaded, so
two deploys started at once used to get the same port and the second died "address already in use". A port is
therefore chosen and the run recorded under one lock (data dir `deploy-ports.lock`), skipping every port that an
active swiftdeck deploy was started with or reported: the registry is the reservation."""
from __future__ import annotations

from engine.errors import SwiftdeckError
import fcntl
import http.client
import ipaddress
import json
import re
import socket
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from engine import runs, supervisor
from engine.paths import data_dir
from engine.runs import RunRecord

# ms-swift silently moves to the next free port; uvicorn's line tells the real one.
UVICORN_RE = re.compile(r"Uvicorn running on (https?)://([^\s:]+):(\d+)")
MODEL_LIST_RE = re.compile(r"model_list: \[([^\]]*)\]")


class DeployError(SwiftdeckError, RuntimeError):
    pass


def _bindable(host: str, port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind((host, port))
            return True
        except OSError:
            return False


def free_port(host: str = "127.0.0.1", start: int = 8000, taken: set[int] | frozenset[int] = frozenset()) -> int:
    """The first port from `start` that is not in `taken` and can be bound now, on `host` and on all addresses
    (ms-swift's own check binds all addresses: a port it finds taken, it silently replaces)."""
    for port in range(start, start + 200):
        if port not in taken and _bindable(host, port) and (host in ("", "0.0.0.0") or _bindable("", port)):
            return port
    raise DeployError(f"no free port on {host} in {start}..{start + 199}")


def reserved_ports() -> dict[int, str]:
    """{port: run id} of the active swiftdeck deploys: the --port each was started with and the port it reported
    (ms-swift moves to the next free port when its own is taken)."""
    out: dict[int, str] = {}
    for rec in runs.all_runs():
        if rec.kind != "deploy" or not rec.active:
            continue
        argv = rec.argv
        for i, tok in enumerate(argv[:-1]):
            if tok == "--port" and argv[i + 1].isdigit():
                out.setdefault(int(argv[i + 1]), rec.id)
        if isinstance(rec.meta.get("port"), int):
            out.setdefault(rec.meta["port"], rec.id)
    return out


@contextmanager
def _port_lock():
    """Choosing a port and recording the run that uses it are one step for every swiftdeck process."""
    with open(data_dir() / "deploy-ports.lock", "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def deploy_args(adapters: dict[str, str], *, model: str | None = None, host: str = "127.0.0.1",
                port: int | None = None, extra: list[str] | None = None) -> list[str]:
    """argv after `swift deploy`. `adapters` maps a served name to a checkpoint path (name '' = unnamed)."""
    args = ["--model", model] if model else []
    if adapters:
        args += ["--adapters", *[f"{name}={path}" if name else str(path) for name, path in adapters.items()]]
    args += ["--host", host, "--port", str(port or free_port(host)), "--log_interval", "-1"]
    return args + list(extra or [])


def start(adapters: dict[str, str], *, model: str | None = None, host: str = "127.0.0.1", port: int | None = None,
          extra: list[str] | None = None, cwd: Path | None = None, label: str = "") -> RunRecord:
    if not adapters and not model:
        raise DeployError("give a base model (--model) or at least one adapter checkpoint")
    for path in adapters.values():
        if not (Path(path) / "adapter_config.json").is_file():
            raise DeployError(f"{path} is not a LoRA adapter folder (no adapter_config.json)")
    notes = []
    if not ipaddress.ip_address(socket.gethostbyname(host)).is_loopback and "--api_key" not in (extra or []):
        notes.append(f"listening on {host} without --api_key: anyone who can reach this host can use the model")
    extra = list(extra or [])
    if model and not adapters:  # a local folder resolved as `swiftdeck train` does (e.g. qwen2 / qwen2_5)
        from engine.command import flag_value
        from engine.swift_args import model_settings

        model_type, template = model_settings(model, model_type=flag_value(extra, "--model_type"),
                                              template=flag_value(extra, "--template"))
        for flag, value in (("--model_type", model_type), ("--template", template)):
            if value and flag_value(extra, flag) is None:
                extra += [flag, value]
    with _port_lock():
        reserved = reserved_ports()
        chosen = free_port(host, start=port or 8000, taken=set(reserved))
        if port and chosen != port:
            holder = f"used by deploy run {reserved[port]}" if port in reserved else "in use"
            notes.append(f"port {port} is {holder}: using {chosen}")
        args = deploy_args({n: str(Path(p).resolve()) for n, p in adapters.items()}, model=model, host=host,
                           port=chosen, extra=extra)
        rec = supervisor.launch("deploy", args, cwd=cwd or Path.cwd(), label=label or "deploy", notes=notes)
    runs.update(rec.id, lambda r: r.meta.update(host=host))
    return runs.load(rec.id)


def wait_ready(rec: RunRecord, timeout_s: float = 300.0) -> str:
    """Read the real port from the console, then wait until GET /health answers 200. Returns the base URL.
    The console is read incrementally (one engine.ingest.ConsoleTail, new lines only); once the URL is on the
    record (an earlier call found it), the console is not read at all."""
    from engine.ingest import ConsoleTail

    deadline = time.time() + timeout_s
    url = rec.meta.get("url") if isinstance(rec.meta, dict) and isinstance(rec.meta.get("url"), str) else None
    console = ConsoleTail(rec.console_log)
    names: list[str] = []
    while time.time() < deadline:
        for line in console.lines() if url is None else ():
            if models := MODEL_LIST_RE.search(line):
                names = re.findall(r"'([^']*)'", models.group(1))
            if match := UVICORN_RE.search(line):
                scheme, host, port = match.groups()
                url = f"{scheme}://{host}:{port}"
                runs.update(rec.id, lambda r: r.meta.update(url=url, port=int(port), models=names))
                break
        if url and health(url):
            runs.update(rec.id, lambda r: r.meta.update(ready=True))
            return url
        rec = runs.load(rec.id)
        if not rec.active:
            raise DeployError(f"swift deploy exited with code {rec.exit_code} before it was ready "
                              f"(see `swiftdeck diagnose {rec.id}`)")
        time.sleep(0.3)
    raise DeployError(f"swift deploy not ready after {timeout_s:.0f}s (run {rec.id})")


def _connection(url: str, timeout: float) -> http.client.HTTPConnection:
    scheme, rest = url.split("://", 1)
    host, port = rest.rsplit(":", 1)
    cls = http.client.HTTPSConnection if scheme == "https" else http.client.HTTPConnection
    return cls(host, int(port), timeout=timeout)


def health(url: str) -> bool:
    try:
        conn = _connection(url, 2)
        conn.request("GET", "/health")
        return conn.getresponse().status == 200
    except OSError:
        return False


def stream_chat(url: str, model: str, messages: list[dict], *, temperature: float = 0.0, top_p: float | None = None,
                max_tokens: int = 256, api_key: str | None = None, timeout: float = 300) -> Iterator[str]:
    """Stream a chat completion (SSE) from an OpenAI-compatible server; yields text deltas.
    Closing the generator closes the connection (that is how a caller cancels)."""
    body = {"model": model, "messages": messages, "stream": True, "temperature": temperature, "max_tokens": max_tokens}
    if top_p is not None:
        body["top_p"] = top_p
    headers = {"Content-Type": "application/json"}
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    conn = _connection(url, timeout)
    try:
        conn.request("POST", "/v1/chat/completions", body=json.dumps(body), headers=headers)
        resp = conn.getresponse()
        if resp.status != 200:
            raise DeployError(f"HTTP {resp.status}: {resp.read().decode(errors='replace')[:300]}")
        for raw in resp:
            line = raw.decode("utf-8", errors="replace").strip()
            if not line.startswith("data:"):
                continue
            data = line[5:].strip()
            if data == "[DONE]":
                return
            for choice in json.loads(data).get("choices", []):
                text = (choice.get("delta") or {}).get("content")
                if text:
                    yield text
    finally:
        conn.close()
