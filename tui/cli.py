"""Console entry point `swiftdeck`: dashboard commands open the Textual app; the rest is engine.cli."""
from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    from engine import cli

    return cli.main(sys.argv[1:] if argv is None else argv)


if __name__ == "__main__":
    sys.exit(main())
