"""Control messages sent to a running decoder from any thread. The decoder applies them only
between iterations, so an iteration never sees half a change."""

from __future__ import annotations

import queue
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class SetParam:
    key: str
    value: Any


@dataclass(frozen=True)
class SwitchPolicy:
    spec: str  # e.g. "static:3"
    params: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Cancel:
    reason: str = "cancelled"  # becomes the EndEvent's reason


ControlMessage = SetParam | SwitchPolicy | Cancel


class ControlChannel:
    """Thread-safe, non-blocking mailbox."""

    def __init__(self) -> None:
        self._q: queue.SimpleQueue[ControlMessage] = queue.SimpleQueue()

    def send(self, msg: ControlMessage) -> None:
        self._q.put(msg)

    def drain(self) -> list[ControlMessage]:
        out = []
        while True:
            try:
                out.append(self._q.get_nowait())
            except queue.Empty:
                return out
