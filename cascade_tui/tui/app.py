"""The Textual application: one main screen over a source (live session or recording), a help
screen, command-palette entries, a light and a dark theme."""

from __future__ import annotations

from typing import Iterable

from textual.app import App, SystemCommand

from cascade_tui.tui.screens import HelpScreen, MainScreen, ReplayScreen
from cascade_tui.tui.sources import ReplaySource, Source

DARK, LIGHT = "textual-dark", "textual-light"


class CascadeApp(App):
    TITLE = "cascade-tui"

    def __init__(self, source: Source, title: str = "", theme: str = DARK):
        super().__init__()
        self.source = source
        self.title_text = title
        self.theme = theme

    def on_mount(self) -> None:
        screen = ReplayScreen if isinstance(self.source, ReplaySource) else MainScreen
        self.push_screen(screen(self.source, self.title_text))

    @property
    def main(self) -> MainScreen:
        for screen in self.screen_stack:
            if isinstance(screen, MainScreen):
                return screen
        raise LookupError("no main screen")

    def action_help(self) -> None:
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen())

    def action_toggle_theme(self) -> None:
        self.theme = LIGHT if self.theme == DARK else DARK

    def get_system_commands(self, screen) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        yield SystemCommand("Help", "What every panel means and every key does", self.action_help)
        yield SystemCommand("Toggle light/dark theme", "Switch between the light and the dark theme",
                            self.action_toggle_theme)
        main = self.main
        yield SystemCommand("Heatmap: last iteration / rolling window", "Toggle the expert heatmap's mode",
                            main.action_toggle_heatmap)
        if self.source.live:
            yield SystemCommand("Edit the policy", "Open the policy panel", main.action_policy)
        if self.source.live:
            yield SystemCommand("Clear the conversation", "Start over on an empty context", main.action_clear)
            yield SystemCommand("Stop the answer", "Stop at the next iteration boundary", main.action_stop)
            for spec in ("off", "static:1", "static:2", "static:3", "static:4", "cascade", "learned", "heuristic"):
                yield SystemCommand(f"Policy: {spec}", f"Switch to {spec} at the next iteration",
                                    lambda spec=spec: main.switch_policy(spec))

    def on_unmount(self) -> None:
        """The app is going away: end the session (a running answer is stopped, the recording
        closed) so no thread is left waiting on it."""
        self.source.close()

    async def action_quit(self) -> None:
        """Quit: a running answer is stopped first, so the recording ends cleanly."""
        if self.source.running:
            self.source.cancel()
        self.exit()
