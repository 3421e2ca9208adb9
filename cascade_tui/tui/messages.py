"""Messages between the sources (threads that run or replay a session) and the screen. Sources
only post these; widgets change only in the screen's handlers."""

from __future__ import annotations

from textual.message import Message


class Events(Message):
    """A batch of session events (at most ~15 batches a second)."""

    def __init__(self, events: list) -> None:
        super().__init__()
        self.events = events


class Loading(Message):
    """Progress while the models load."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text


class Ready(Message):
    """The source is ready: ``header`` describes the session (models, policy, machine)."""

    def __init__(self, header: dict, notes: list[str]) -> None:
        super().__init__()
        self.header = header
        self.notes = notes


class Failed(Message):
    """The source could not start (e.g. a model failed to load). One line."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text


class TurnDone(Message):
    """The running turn is over (its events have all been posted)."""


class Reset(Message):
    """Start the screen over from an empty state (replay stepping back or seeking)."""

    def __init__(self, header: dict) -> None:
        super().__init__()
        self.header = header


class Position(Message):
    """Where a replay is: ``cursor`` events of ``total`` shown, playing or not, at what speed."""

    def __init__(self, cursor: int, total: int, iteration: int, iterations: int, t: float, duration: float,
                 playing: bool, speed: float | None) -> None:
        super().__init__()
        self.cursor, self.total = cursor, total
        self.iteration, self.iterations = iteration, iterations
        self.t, self.duration = t, duration
        self.playing, self.speed = playing, speed
