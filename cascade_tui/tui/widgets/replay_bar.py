"""Replay controls and position: playing or paused, speed, iteration n of N, time t of T, and a
field to seek to an iteration or a time."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.message import Message
from textual.widgets import Input, Static

from cascade_tui.tui.widgets.session_info import summary_line


def parse_seek(text: str) -> tuple[str, float]:
    """``"120"`` -> ("iteration", 120); ``"3.5s"`` / ``"3.5 s"`` -> ("time", 3.5). ValueError else."""
    s = text.strip().lower()
    if s.endswith("s"):
        return "time", float(s[:-1].strip())
    if s.startswith("#"):
        s = s[1:]
    return "iteration", float(int(s))


class ReplayBar(Vertical):
    DEFAULT_CSS = """
    ReplayBar { height: auto; background: $boost; padding: 0 1; }
    ReplayBar #replay-seek { display: none; }
    ReplayBar.-seeking #replay-seek { display: block; }
    """

    class Seek(Message):
        def __init__(self, kind: str, value: float) -> None:
            super().__init__()
            self.kind, self.value = kind, value

    def compose(self) -> ComposeResult:
        yield Static("", id="replay-header")
        yield Static("", id="replay-position")
        yield Input(placeholder="seek to an iteration (120) or a time (3.5s), Enter", id="replay-seek")

    def show_header(self, header: dict) -> None:
        self.query_one("#replay-header", Static).update(summary_line(header))

    def show_position(self, p) -> None:
        t = Text(no_wrap=True, overflow="ellipsis")
        t.append("▶ playing" if p.playing else "‖ paused", style="bold")
        t.append(f"  {'as fast as possible' if p.speed is None else f'{p.speed:g}x'}  ")
        t.append(f"iteration {p.iteration}/{p.iterations}  t {p.t:.2f}/{p.duration:.2f} s", style="bold")
        if not p.playing and p.cursor >= p.total:
            t.append("  (end: space plays again)", style="dim")
        self.query_one("#replay-position", Static).update(t)

    def open_seek(self) -> None:
        self.add_class("-seeking")
        self.query_one("#replay-seek", Input).focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        try:
            kind, value = parse_seek(event.value)
        except ValueError:
            self.app.notify(f"cannot seek to {event.value!r}: give an iteration (120) or a time (3.5s)",
                            severity="warning")
            return
        event.input.value = ""
        self.remove_class("-seeking")
        self.post_message(self.Seek(kind, value))
