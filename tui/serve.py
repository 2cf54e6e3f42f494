"""`swiftdeck serve`: the dashboard in a browser through textual-serve, without a shell.

textual-serve starts the app with `asyncio.create_subprocess_shell(command)`; swiftdeck never runs a shell, so the
service here starts the same command as an argv list (`create_subprocess_exec`).
"""
from __future__ import annotations

import asyncio
import shlex


def serve(argv: list[str], *, host: str, port: int, title: str = "swiftdeck") -> None:
    from textual_serve import server as ts
    from textual_serve.app_service import AppService

    class ExecAppService(AppService):
        async def _open_app_process(self, width: int = 80, height: int = 24):
            environment = self._build_environment(width=width, height=height)
            self._process = process = await asyncio.create_subprocess_exec(
                *shlex.split(self.command), stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE, env=environment)
            self._stdin = process.stdin
            return process

    ts.AppService = ExecAppService  # the Server builds one service per browser connection
    ts.Server(shlex.join(argv), host=host, port=port, title=title).serve()
