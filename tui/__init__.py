"""swiftdeck's Textual dashboard. A client of engine/ only; never imports torch, transformers or swift."""
