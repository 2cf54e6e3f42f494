"""swiftdeck engine: everything that is not UI. Never imports textual or tui (see tests/test_layering.py)."""
