"""`swiftdeck serve`: a real server process and a real websocket client. Nothing answers without the printed token,
a foreign Origin or a rebinding Host is refused before any app process starts, the page loads nothing from another
host, and the app runs from an argv list (no shell)."""
from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import aiohttp
import psutil
import pytest

from engine.deploy import free_port
from tui.serve import Guard, hostname, page_url


class Served:
    """`swiftdeck serve ARGS` in its own session, its output in files; the URL it printed."""

    def __init__(self, args: list[str], home: Path, where: Path) -> None:
        self.out, self.err = where / "serve.out", where / "serve.err"
        env = {**os.environ, "SWIFTDECK_HOME": str(home)}
        with open(self.out, "wb") as out, open(self.err, "wb") as err:
            self.proc = subprocess.Popen([sys.executable, "-m", "tui.cli", "serve", *args], cwd=where, env=env,
                                         stdin=subprocess.DEVNULL, stdout=out, stderr=err, start_new_session=True)
        deadline = time.time() + 60
        while not (m := re.search(r"open (http://\S+)", self.out.read_text())) or not self.listening():
            assert self.proc.poll() is None, f"serve exited: {self.err.read_text()[-2000:]}"
            assert time.time() < deadline, "swiftdeck serve printed no URL / did not listen"
            time.sleep(0.1)
        self.url = m.group(1)
        parts = urlsplit(self.url)
        self.host, self.port = parts.hostname, parts.port
        self.netloc = parts.netloc
        self.token = parse_qs(parts.query)["token"][0]

    def listening(self) -> list:
        return [c for c in psutil.Process(self.proc.pid).net_connections() if c.status == "LISTEN"]

    def children(self) -> list[psutil.Process]:
        return psutil.Process(self.proc.pid).children(recursive=True)

    def close(self) -> None:
        os.killpg(self.proc.pid, 9)
        self.proc.wait(10)


@pytest.fixture
def served(home, tmp_path):
    made: list[Served] = []

    def start(*args: str) -> Served:
        made.append(Served(list(args), home, tmp_path))
        return made[-1]

    yield start
    for s in made:
        s.close()


async def _refused(url: str, **headers: str) -> int:
    """The status a websocket handshake gets (the test fails if it connects)."""
    async with aiohttp.ClientSession() as session:
        try:
            async with session.ws_connect(url, headers=headers):
                pass
        except aiohttp.WSServerHandshakeError as exc:
            return exc.status
    raise AssertionError(f"websocket {url} with {headers} was accepted")


async def _get(url: str, **headers: str) -> tuple[int, str, dict]:
    async with aiohttp.ClientSession() as session:
        async with session.get(url, headers=headers) as r:
            return r.status, await r.text(), dict(r.headers)


async def _until(ws, wanted: list[bytes], timeout: float = 90) -> bytes:
    """Read the dashboard's terminal output until every wanted piece has shown up."""
    got, deadline = b"", time.time() + timeout
    while not all(w in got for w in wanted):
        left = deadline - time.time()
        assert left > 0, f"never saw {[w for w in wanted if w not in got]} in {len(got)} bytes"
        msg = await ws.receive(timeout=left)
        assert msg.type in (aiohttp.WSMsgType.BINARY, aiohttp.WSMsgType.TEXT), msg
        got += msg.data if isinstance(msg.data, bytes) else msg.data.encode()
    return got


def test_serve_refuses_strangers_before_any_app_starts_and_lets_the_token_in(served):
    s = served("--readonly", "--port", str(free_port()))
    (listen,) = s.listening()
    assert listen.laddr.ip == "127.0.0.1" and listen.laddr.port == s.port
    assert s.url == f"http://127.0.0.1:{s.port}/?token={s.token}" and len(s.token) >= 32
    base, mine = f"ws://127.0.0.1:{s.port}", f"http://127.0.0.1:{s.port}"
    wrong = "x" * len(s.token)

    async def strangers() -> None:
        assert await _refused(f"{base}/ws?width=80&height=24", Origin=mine) == 403  # no token
        assert await _refused(f"{base}/ws/{wrong}?width=80&height=24", Origin=mine) == 403
        assert await _refused(f"{base}/ws?token={wrong}", Origin=mine) == 403
        # the attack: a page on another site (the token would not even be needed)
        assert await _refused(f"{base}/ws/{s.token}", Origin="http://evil.example") == 403
        assert await _refused(f"{base}/ws?token={s.token}", Origin="http://evil.example") == 403
        assert await _refused(f"{base}/ws/{s.token}", Origin="null") == 403
        assert await _refused(f"{base}/ws/{s.token}", Origin=f"http://127.0.0.1:{s.port + 1}") == 403
        # DNS rebinding: evil.example resolves to 127.0.0.1, so Origin and Host agree but name another host
        rebind = f"evil.example:{s.port}"
        assert await _refused(f"{base}/ws/{s.token}", Host=rebind, Origin=f"http://{rebind}") == 403
        assert await _refused(f"{base}/ws/{s.token}", Host=rebind) == 403
        assert (await _get(f"{mine}/"))[0] == 403
        assert (await _get(f"{mine}/?token={wrong}"))[0] == 403
        assert (await _get(f"{mine}/?token={s.token}", Host=rebind))[0] == 403
        assert (await _get(f"{mine}/static/js/textual.js", Host=rebind))[0] == 403

    asyncio.run(strangers())
    assert s.children() == [], "a refused connection started an app process"
    assert s.token not in s.err.read_text() + s.out.read_text().replace(s.url, ""), "the token was logged"

    async def owner() -> None:
        jar = aiohttp.CookieJar(unsafe=True)  # the server is an IP address
        async with aiohttp.ClientSession(cookie_jar=jar) as session:
            async with session.get(s.url) as r:
                assert r.status == 200, await r.text()
                page, headers = await r.text(), r.headers
            cookie = next(v for k, v in headers.items() if k.lower() == "set-cookie")
            assert s.token in cookie and "HttpOnly" in cookie and "SameSite=Strict" in cookie
            csp = headers["Content-Security-Policy"]
            assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp
            assert headers["Referrer-Policy"] == "no-referrer"
            # everything the page loads comes from this server
            ws_url = re.search(r'data-session-websocket-url="([^"]+)"', page).group(1)
            assert ws_url == f"ws://127.0.0.1:{s.port}/ws/{s.token}"
            assert "://" not in page.replace(ws_url, ""), "the page names another host"
            loads = re.findall(r'(?:src|href)="([^"]+)"|url\("([^"]+)"\)', page)
            loads = [a or b for a, b in loads]
            assert any(u.endswith(".ttf") for u in loads) and any(u.endswith(".js") for u in loads)
            for u in loads:
                assert u.startswith("/static/"), u
                async with session.get(f"{mine}{u}") as r:
                    assert r.status == 200, u
            async with session.get(mine + "/") as r:  # a reload: the cookie alone is enough
                assert r.status == 200
            async with session.ws_connect(f"{ws_url}?width=120&height=40", headers={"Origin": mine}) as ws:
                await _until(ws, [b"swiftdeck", b"Checkpoints", b"Loss"])  # the dashboard answers
                await ws.send_str(json.dumps(["stdin", "n"]))  # `n`: the launch form of the attack
                await _until(ws, [b"launching a run is turned off"])

    asyncio.run(asyncio.wait_for(owner(), 240))
    children = s.children()
    assert children and all(c.name() not in ("sh", "bash", "dash") for c in children)
    (app,) = [c for c in children if "tui.cli" in " ".join(c.cmdline())]
    assert app.cmdline()[-1] == "--readonly"


def test_serve_on_another_address_warns_and_still_wants_the_token(served):
    s = served("--host", "127.0.0.2", "--port", str(free_port("127.0.0.2")))
    assert "warning: serving on 127.0.0.2" in s.err.read_text()
    (listen,) = s.listening()
    assert listen.laddr.ip == "127.0.0.2"
    assert s.url.startswith(f"http://127.0.0.2:{s.port}/?token=")
    here = f"http://127.0.0.2:{s.port}"

    async def go() -> None:
        assert (await _get(f"{here}/"))[0] == 403
        assert await _refused(f"ws://127.0.0.2:{s.port}/ws", Origin=here) == 403
        assert (await _get(f"{here}/?token={s.token}", Host=f"evil.example:{s.port}"))[0] == 403
        status, page, _ = await _get(s.url)
        assert status == 200 and f"ws://127.0.0.2:{s.port}/ws/{s.token}" in page

    asyncio.run(go())
    assert s.children() == []


def test_guard_names_hosts_origins_and_tokens():
    g = Guard.for_bind("127.0.0.1", token="t0k3n")
    for ok in ("127.0.0.1", "127.0.0.1:8000", "localhost:9999", "LOCALHOST", "[::1]:8000"):
        assert g.host_ok(ok), ok
    for bad in ("", "evil.example", "evil.example:8000", "127.0.0.1.evil.example", "localhost.evil:80",
                "evil@127.0.0.1", "127.0.0.1:8000/x", "127.0.0.1 :80", "[::1", "0.0.0.0:8000", "127.0.0.2"):
        assert not g.host_ok(bad), bad
    assert hostname("[::1]:8000") == "::1" and hostname("Localhost:1") == "localhost"
    assert g.origin_ok(None, "127.0.0.1:8000")  # not a browser page
    assert g.origin_ok("http://127.0.0.1:8000", "127.0.0.1:8000")
    assert g.origin_ok("http://localhost:9000", "localhost:9000")  # an ssh -L tunnel on another port
    for bad in ("http://evil.example", "null", "http://127.0.0.1:8001", "file://", "http://localhost:8000"):
        assert not g.origin_ok(bad, "127.0.0.1:8000"), bad
    assert g.token_ok("t0k3n") and g.token_ok(None, "nope", "t0k3n")
    assert not g.token_ok() and not g.token_ok("", None, "t0k3") and not g.token_ok("t0k3n ")
    assert g.refusal("127.0.0.1:1", None, "t0k3n") is None
    assert "token" in g.refusal("127.0.0.1:1", None, "bad")
    assert g.refusal("127.0.0.1:1", None, need_token=False) is None
    assert Guard.for_bind("0.0.0.0").host_ok("my-box.lan:8000")  # every interface: the token is the gate
    assert not Guard.for_bind("127.0.0.1").token == Guard.for_bind("127.0.0.1").token
    assert page_url("0.0.0.0", 8000, "t") == "http://127.0.0.1:8000/?token=t"
    assert page_url("::1", 8000, "t") == "http://[::1]:8000/?token=t"


def test_serve_on_a_busy_port_says_so_in_one_line(home, tmp_path):
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        r = subprocess.run([sys.executable, "-m", "tui.cli", "serve", "--port", str(port)], cwd=tmp_path,
                           capture_output=True, text=True, timeout=60, env={**os.environ, "SWIFTDECK_HOME": str(home)})
    assert r.returncode == 2 and "token=" not in r.stdout  # no URL for a server that is not there
    (line,) = r.stderr.strip().splitlines()
    assert line.startswith(f"swiftdeck: cannot listen on 127.0.0.1:{port}: ")
    assert "address already in use" in r.stderr and "Traceback" not in r.stderr
