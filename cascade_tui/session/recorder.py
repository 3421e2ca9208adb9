"""Writes a session recording. Every event is one line, written and flushed as it happens, so a
crash, a kill or Ctrl-C loses at most the line being written (readers skip a torn last line)."""

from __future__ import annotations

import json
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from cascade_tui import __version__
from cascade_tui.engine.events import Event

FORMAT = "cascade-session"
VERSION = 1
SUFFIX = ".cascade.jsonl"
DEFAULT_DIR = "sessions"


def default_session_path(directory: str | os.PathLike = DEFAULT_DIR) -> Path:
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H-%M-%S")
    path = Path(directory) / f"{stamp}{SUFFIX}"
    n = 1
    while path.exists():
        n += 1
        path = Path(directory) / f"{stamp}-{n}{SUFFIX}"
    return path


class Recorder:
    """``Recorder(path, header)`` writes the header line at once; ``record(event)`` appends one
    line per event. Refuses to overwrite an existing file (``FileExistsError``)."""

    def __init__(self, path: str | os.PathLike, header: dict[str, Any]):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._f = open(self.path, "x", encoding="utf-8")
        self.header = {
            "format": FORMAT,
            "version": VERSION,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "tool_version": __version__,
            **header,
        }
        self._write(self.header)

    def _write(self, obj: dict) -> None:
        self._f.write(json.dumps(obj, separators=(",", ":"), default=str) + "\n")
        self._f.flush()

    def record(self, ev: Event) -> None:
        if not self._f.closed:
            self._write(ev.to_dict())

    @property
    def closed(self) -> bool:
        return self._f.closed

    def close(self) -> None:
        if not self._f.closed:
            self._f.close()

    def __enter__(self) -> "Recorder":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
