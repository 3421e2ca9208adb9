"""The Textual front end: ``cascade-tui chat`` (live) and ``cascade-tui replay`` (recordings).

``state.py`` folds events into what is shown (no Textual), ``sources.py`` produces the events
(a live session in thread workers, or a recording), ``widgets/`` draw one panel each and
``screens/`` lay them out. The TUI never touches a backend: it talks to the session.
"""
