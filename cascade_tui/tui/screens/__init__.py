"""One screen per file."""

from cascade_tui.tui.screens.help import HelpScreen
from cascade_tui.tui.screens.main import MainScreen
from cascade_tui.tui.screens.replay import ReplayScreen

__all__ = ["HelpScreen", "MainScreen", "ReplayScreen"]
