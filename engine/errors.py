"""One error base for everything swiftdeck tells a user. The message is exactly what the user sees (one line, no
traceback); the CLI prints it with exit code 2 and the dashboard shows it as a notification."""
from __future__ import annotations


class SwiftdeckError(Exception):
    """Bad input or a refused action. `str(exc)` is the whole user-facing message."""
