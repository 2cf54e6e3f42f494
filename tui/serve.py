"""`swiftdeck serve`: the dashboard in a browser (textual-serve 1.1), guarded the way Jupyter guards its server.

Whoever drives the dashboard can launch a run with any ms-swift argument (`--external_plugins` runs a Python file),
so every request must pass `Guard` before anything answers it:
- Host: a loopback name (127.0.0.1, localhost, ::1, any port), or the --host given; a page on another name that
  resolves to 127.0.0.1 (DNS rebinding) is refused. Bound to every interface (0.0.0.0, ::), any Host passes.
- Origin: when a browser sends one, it must be the page's own (scheme http(s), the same host:port as Host);
  another site's script is refused.
- the token: a random one (secrets.token_urlsafe) made at start and printed in the URL; the page takes it as
  `?token=`, sets an HttpOnly SameSite=Strict cookie so a reload works, and puts it in the path of the websocket
  it opens (`/ws/<token>`). Compared with secrets.compare_digest. Static files (textual-serve's own JS, CSS, fonts)
  need only Host and Origin.
A refused websocket is answered 403 before textual-serve sees it: no app process starts. The page is our own
template: nothing from another host (textual-serve's bundled Roboto Mono, else the system monospace), a
Content-Security-Policy that says so, no framing, no Referer (the page URL holds the token).

textual-serve starts the app with `asyncio.create_subprocess_shell(command)`; swiftdeck never runs a shell, so the
app is started here from an argv list (`create_subprocess_exec`).
"""
from __future__ import annotations

import asyncio
import logging
import re
import secrets
import shlex
import signal
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp_jinja2
from aiohttp import web
from textual_serve import server as ts
from textual_serve.app_service import AppService

from engine.errors import SwiftdeckError

LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})
EVERY_INTERFACE = frozenset({"0.0.0.0", "::", ""})
PAGE = Path(__file__).with_name("serve_page")
_HOST = re.compile(r"(?:\[(?P<v6>[0-9a-f:.]+)\]|(?P<name>[a-z0-9.-]+))(?::\d{1,5})?", re.IGNORECASE)


def hostname(host_header: str) -> str | None:
    """The name in a Host header ('localhost:8000' -> 'localhost', '[::1]:8000' -> '::1'); None if malformed."""
    m = _HOST.fullmatch(host_header.strip())
    return (m["v6"] or m["name"]).lower() if m else None


@dataclass(frozen=True)
class Guard:
    token: str
    hosts: frozenset[str] | None  # the names a Host header may carry; None: any (bound to every interface)

    @classmethod
    def for_bind(cls, host: str, token: str | None = None) -> "Guard":
        hosts = None if host in EVERY_INTERFACE else LOOPBACK | {host.strip("[]").lower()}
        return cls(token or secrets.token_urlsafe(32), hosts)

    def host_ok(self, host_header: str) -> bool:
        name = hostname(host_header)
        return name is not None and (self.hosts is None or name in self.hosts)

    @staticmethod
    def origin_ok(origin: str | None, host_header: str) -> bool:
        if origin is None:  # not a page in a browser (browsers send Origin on websockets and cross-site requests)
            return True
        parts = urlsplit(origin)
        return parts.scheme in ("http", "https") and parts.netloc.lower() == host_header.strip().lower()

    def token_ok(self, *given: str | None) -> bool:
        return any(secrets.compare_digest(g.encode(), self.token.encode()) for g in given if g)

    def refusal(self, host_header: str, origin: str | None, *tokens: str | None, need_token: bool = True) -> str | None:
        """Why a request is refused, or None."""
        if not self.host_ok(host_header):
            return f"Host {host_header!r} is not this server's: open the URL `swiftdeck serve` printed"
        if not self.origin_ok(origin, host_header):
            return f"Origin {origin!r} is another site"
        if need_token and not self.token_ok(*tokens):
            return "no valid token: open the URL `swiftdeck serve` printed (it ends in ?token=...)"
        return None


class ServeError(SwiftdeckError):
    pass


def page_url(host: str, port: int, token: str) -> str:
    name = "127.0.0.1" if host in EVERY_INTERFACE else host
    name = f"[{name}]" if ":" in name and not name.startswith("[") else name
    return f"http://{name}:{port}/?token={token}"


class ExecAppService(AppService):
    """textual-serve's per-connection app process, started from an argv list instead of through a shell."""

    async def _open_app_process(self, width: int = 80, height: int = 24):
        environment = self._build_environment(width=width, height=height)
        self._process = process = await asyncio.create_subprocess_exec(
            *shlex.split(self.command), stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE, env=environment)
        self._stdin = process.stdin
        return process


class GuardedServer(ts.Server):
    def __init__(self, argv: list[str], *, host: str, port: int, guard: Guard, title: str = "swiftdeck") -> None:
        super().__init__(shlex.join(argv), host=host, port=port, title=title, templates_path=PAGE)
        self.guard = guard
        self.cookie = f"swiftdeck-token-{port}"
        self.url = page_url(host, port, guard.token)

    def initialize_logging(self) -> None:
        super().initialize_logging()
        logging.getLogger("aiohttp.access").setLevel(logging.WARNING)  # request lines would show the token

    async def _make_app(self) -> web.Application:
        app = await super()._make_app()
        app.middlewares.append(self.check)
        app.router.add_get("/ws/{token}", self.handle_websocket, name="websocket-token")
        return app

    async def on_startup(self, app: web.Application) -> None:
        if self.check not in app.middlewares:  # textual-serve changed how it builds its app: never serve unguarded
            raise RuntimeError("swiftdeck serve: the request guard is not installed; refusing to serve")

    def serve(self, debug: bool = False) -> None:
        """textual-serve's serve(), saying the URL once the port is bound, and a busy port in one line."""
        self.debug = debug
        self.initialize_logging()
        loop = asyncio.new_event_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self.request_exit)
        try:
            web.run_app(self._make_app(), host=self.host, port=self.port, handle_signals=False, loop=loop,
                        print=lambda *_: self.announce())
        except OSError as exc:
            raise ServeError(f"cannot listen on {self.host}:{self.port}: {exc.strerror or exc}") from None

    def announce(self) -> None:
        print(f"swiftdeck serve: open {self.url}", flush=True)
        print("(the token in the URL is the key to this dashboard; Ctrl+C stops serving, runs keep going)",
              flush=True)

    @web.middleware
    async def check(self, request: web.Request, handler) -> web.StreamResponse:
        static = request.path.startswith("/static/")
        why = self.guard.refusal(request.headers.get("Host", ""), request.headers.get("Origin"),
                                 request.match_info.get("token"), request.query.get("token"),
                                 request.cookies.get(self.cookie), need_token=not static)
        if why is not None:
            raise web.HTTPForbidden(text=f"swiftdeck serve: refused: {why}\n")
        response = await handler(request)
        if static or response.prepared:  # a websocket or a download has sent its headers already
            return response
        response.headers["Referrer-Policy"] = "no-referrer"
        response.headers["X-Content-Type-Options"] = "nosniff"
        if request.path == "/":
            response.headers["Cache-Control"] = "no-store"
            response.headers["Content-Security-Policy"] = (
                "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
                "img-src 'self' data:; font-src 'self'; "
                f"connect-src 'self' ws://{request.host} wss://{request.host}; "
                "frame-ancestors 'none'; base-uri 'none'; form-action 'none'")
            response.set_cookie(self.cookie, self.guard.token, httponly=True, samesite="Strict", path="/")
        return response

    async def handle_index(self, request: web.Request) -> web.Response:
        """The page, from our template; its websocket goes to the host the browser used (an ssh -L port too)."""
        scheme = "wss" if request.secure else "ws"
        context = {
            "font_size": ts.to_int(request.query.get("fontsize", "16"), 16),
            "app_websocket_url": f"{scheme}://{request.host}/ws/{self.guard.token}",
            "config": {"static": {"url": "/static/"}},
            "application": {"name": self.title},
        }
        return aiohttp_jinja2.render_template("app_index.html", request, context)


def serve(argv: list[str], *, host: str, port: int, title: str = "swiftdeck") -> None:
    ts.AppService = ExecAppService  # the Server builds one service per browser connection
    GuardedServer(argv, host=host, port=port, guard=Guard.for_bind(host), title=title).serve()
