"""`swiftdeck serve` in a real browser (headless Chromium through Playwright): the page loads from the printed
token URL and shows the dashboard's header, `w` opens the run switcher, and closing the tab leaves no dashboard
process behind. `make test` installs Chromium and Playwright where they are missing (like tmux)."""
from __future__ import annotations

import shutil
import time

import pytest

from engine.deploy import free_port
from test_tui_serve import served  # noqa: F401 (the fixture)
from test_tui_support import make_run, wait_for

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
try:
    from playwright.sync_api import sync_playwright
except ImportError:  # pragma: no cover - make test installs it
    sync_playwright = None

pytestmark = pytest.mark.skipif(CHROMIUM is None or sync_playwright is None,
                                reason="chromium or playwright is not installed (make test installs them)")


class Received:
    """What the dashboard wrote to the page's terminal: the websocket frames the page received (xterm.js draws
    them on a canvas, so the DOM holds no text)."""

    def __init__(self, page) -> None:
        self.data = b""
        page.on("websocket", lambda ws: ws.on("framereceived", self._frame))

    def _frame(self, payload) -> None:
        self.data += payload if isinstance(payload, bytes) else payload.encode()

    def until(self, page, text: str, timeout: float) -> bool:
        """Let the page run until `text` has been drawn (or `timeout` s passed)."""
        end = time.monotonic() + timeout
        while text.encode() not in self.data and time.monotonic() < end:
            page.wait_for_timeout(100)  # Playwright's event loop turns only inside its calls
        return text.encode() in self.data


def test_the_dashboard_in_a_browser_opens_the_switcher_and_closing_the_tab_ends_it(served, home, tmp_path,
                                                                                   swift_fixtures):
    rec = make_run(swift_fixtures, tmp_path / "work", "finished", label="browsed")
    s = served("--port", str(free_port()), "--run", rec.id)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            got = Received(page)
            page.goto(s.url)
            assert got.until(page, rec.id, 90), got.data[-2000:]
            assert b"swiftdeck" in got.data and b"browsed" in got.data and b"finished" in got.data
            assert s.children(), "no dashboard process behind the page"
            page.locator(".xterm").click()
            page.keyboard.press("w")
            assert got.until(page, "newest first", 30), got.data[-2000:]
            page.close()
        finally:
            browser.close()
    assert wait_for(lambda: not s.children(), timeout=30), f"left running: {s.children()}"
