"""`swiftdeck serve`: the dashboard over a websocket on 127.0.0.1, the app started without a shell."""
from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time

import aiohttp
import psutil

from engine.deploy import free_port


async def _first_bytes(url: str) -> bytes:
    async with aiohttp.ClientSession() as session:
        async with session.ws_connect(url) as ws:
            got = b""
            deadline = time.time() + 60
            while len(got) < 2000 and time.time() < deadline:
                msg = await ws.receive(timeout=60)
                if msg.type == aiohttp.WSMsgType.BINARY:
                    got += msg.data
                elif msg.type == aiohttp.WSMsgType.TEXT:
                    got += msg.data.encode()
                else:
                    break
            return got


def test_serve_binds_loopback_and_runs_the_app_without_a_shell(home, tmp_path):
    port = free_port()
    env = {**os.environ, "SWIFTDECK_HOME": str(home)}
    server = subprocess.Popen([sys.executable, "-m", "tui.cli", "serve", "--port", str(port)], cwd=tmp_path, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.time() + 60
        while not [c for c in psutil.Process(server.pid).net_connections() if c.status == "LISTEN"]:
            assert time.time() < deadline, "swiftdeck serve did not listen"
            time.sleep(0.2)
        (listen,) = [c for c in psutil.Process(server.pid).net_connections() if c.status == "LISTEN"]
        assert listen.laddr.ip == "127.0.0.1" and listen.laddr.port == port
        data = asyncio.run(_first_bytes(f"http://127.0.0.1:{port}/ws?width=100&height=30"))
        assert b"swiftdeck" in data or len(data) > 500, data[:300]
        children = psutil.Process(server.pid).children(recursive=True)
        assert children and all(c.name() not in ("sh", "bash", "dash") for c in children)
        assert any("tui.cli" in " ".join(c.cmdline()) for c in children)
    finally:
        os.killpg(server.pid, 9)
        server.wait(10)
