"""One screen per file."""

from cascade_tui.tui.screens.help import HelpScreen
from cascade_tui.tui.screens.main import MainScreen

__all__ = ["HelpScreen", "MainScreen"]
