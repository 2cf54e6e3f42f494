"""The chat pane's logic without Textual: what to talk to (target), the backends (chat worker or a `swift deploy`
server) and transcripts. Everything here may block, so the pane calls it from thread workers."""
