"""The replay screen: the live screen's panels fed from a recording, with playback controls in
place of the prompt. No model is loaded."""

from __future__ import annotations

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding

from cascade_tui.tui.messages import Position, Ready
from cascade_tui.tui.screens.main import MainScreen
from cascade_tui.tui.widgets.replay_bar import ReplayBar


class ReplayScreen(MainScreen, inherit_bindings=False):  # no prompt, no Esc-to-stop: nothing generates
    BINDINGS = [
        Binding("space", "toggle", "Play/pause"),
        Binding("right", "step(1)", "Step", tooltip="One iteration forward"),
        Binding("left", "step(-1)", "Back", tooltip="One iteration back"),
        Binding("plus,equals_sign", "faster(1)", "Faster"),
        Binding("minus", "faster(-1)", "Slower"),
        Binding("g", "seek", "Seek", tooltip="Seek to an iteration or a time"),
        Binding("home", "home", "Start", show=False),
        Binding("end", "end", "End", show=False),
        Binding("f1", "app.help", "Help"),
        Binding("f2", "toggle_panels", "Panels"),
        Binding("f3", "toggle_heatmap", "Heatmap"),
        Binding("ctrl+t", "app.toggle_theme", "Theme"),
        Binding("ctrl+q", "app.quit", "Quit"),
        Binding("escape", "close_seek", show=False),
    ]

    def bottom(self) -> ComposeResult:
        yield ReplayBar(id="replay")

    @on(Ready)
    def _replay_ready(self, msg: Ready) -> None:
        self.query_one(ReplayBar).show_header(msg.header)

    @on(Position)
    def _position(self, msg: Position) -> None:
        self.query_one(ReplayBar).show_position(msg)

    @on(ReplayBar.Seek)
    def _seek(self, msg: ReplayBar.Seek) -> None:
        if msg.kind == "time":
            self.source.seek_time(msg.value)
        else:
            self.source.seek_iteration(int(msg.value))
        self.focus_screen()

    def focus_screen(self) -> None:
        self.set_focus(None)

    def action_toggle(self) -> None:
        self.source.toggle()

    def action_step(self, n: int) -> None:
        self.source.step(n)

    def action_faster(self, step: int) -> None:
        self.source.faster(step)

    def action_seek(self) -> None:
        self.query_one(ReplayBar).open_seek()

    def action_close_seek(self) -> None:
        self.query_one(ReplayBar).remove_class("-seeking")
        self.focus_screen()

    def action_home(self) -> None:
        self.source.home()

    def action_end(self) -> None:
        self.source.end()
