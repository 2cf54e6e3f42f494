"""The chat outside its widgets (tui/widgets/chat): what to talk to (target), generation settings, transcripts, a
turn's data (turn), the backends (chat worker or a `swift deploy` server), the app's ChatSession that owns them, and
jobs.py, the app's side that acts on the pane's requests. All but jobs.py are Textual-free and may block."""
