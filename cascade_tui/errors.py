"""Errors every layer may raise for the user. No imports: safe anywhere, before llama.cpp loads."""


class UserError(Exception):
    """Bad input from the user: one clear line, exit status 2 (shown in the UI by the TUI)."""
