"""Reading session recordings (DESIGN section 4) back into typed events.

``read_session(path)`` returns the header and every event. It is forgiving where a recording can
legitimately be damaged and strict where the file is not a recording at all:

* a torn last line (the process died mid-write) is skipped and counted in ``skipped_torn``;
* a malformed line elsewhere is reported in ``problems`` with its line number, and the rest is
  still read;
* a missing file, a directory, an empty file, a binary file, a JSON file that is not a session
  and an unknown major version each raise :class:`SessionFormatError` with one line.

``iter_session(path)`` streams the same events without holding them all (long recordings).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from cascade_tui.engine.events import Event
from cascade_tui.session.recorder import FORMAT, VERSION

MAX_PROBLEMS = 100  # problems listed one by one; beyond that only counted


class SessionFormatError(Exception):
    """The file cannot be read as a session recording. One line meant for the user."""


@dataclass
class Problem:
    line: int  # 1-based line number in the file
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}"


@dataclass
class SessionFile:
    path: Path
    header: dict[str, Any]
    events: list[Event] = field(default_factory=list)
    skipped_torn: int = 0  # a torn last line (0 or 1)
    problems: list[Problem] = field(default_factory=list)  # malformed lines that were skipped
    n_problems: int = 0  # all malformed lines, also those past MAX_PROBLEMS

    @property
    def version(self) -> Any:
        return self.header.get("version")

    def warnings(self) -> list[str]:
        """What a reader should tell the user (one line each)."""
        out = []
        if self.skipped_torn:
            out.append(f"{self.path.name}: skipped {self.skipped_torn} torn last line (the recording was cut off mid-write)")
        for p in self.problems:
            out.append(f"{self.path.name}: skipped malformed {p}")
        if self.n_problems > len(self.problems):
            out.append(f"{self.path.name}: ... and {self.n_problems - len(self.problems)} more malformed lines")
        return out


def major_version(v: Any) -> int | None:
    """1 for ``1``, ``"1"``, ``"1.2"``; None when ``v`` is no version number."""
    if isinstance(v, bool):
        return None
    if isinstance(v, int):
        return v
    if isinstance(v, str):
        head = v.strip().split(".")[0]
        if head.isdigit():
            return int(head)
    return None


def _check_path(path: Path) -> None:
    if not path.exists():
        raise SessionFormatError(f"{path}: no such file")
    if path.is_dir():
        raise SessionFormatError(f"{path} is a directory, not a session file (try `cascade-tui sessions list {path}`)")
    if not os.access(path, os.R_OK):
        raise SessionFormatError(f"{path}: permission denied")


def _parse_header(path: Path, raw: bytes) -> dict[str, Any]:
    if not raw.strip():
        raise SessionFormatError(f"{path} is empty, not a session recording")
    if b"\x00" in raw:
        raise SessionFormatError(f"{path} is a binary file, not a session recording")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise SessionFormatError(f"{path} is not a text file (not UTF-8), not a session recording") from None
    try:
        head = json.loads(text)
    except ValueError:
        raise SessionFormatError(f"{path}: line 1 is not JSON, so this is not a session recording") from None
    if not isinstance(head, dict) or head.get("format") != FORMAT:
        raise SessionFormatError(
            f"{path} is not a cascade-tui session (line 1 has no \"format\": \"{FORMAT}\")")
    major = major_version(head.get("version"))
    if major is None:
        raise SessionFormatError(f"{path}: the header has no valid version ({head.get('version')!r})")
    if major != VERSION:
        raise SessionFormatError(
            f"{path} is session format version {head.get('version')}, but this cascade-tui reads version "
            f"{VERSION}; {'upgrade cascade-tui' if major > VERSION else 'it is too old to read'}")
    return head


class _Reader:
    """Line-by-line state shared by :func:`read_session` and :func:`iter_session`."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        _check_path(self.path)
        self.header: dict[str, Any] | None = None
        self.skipped_torn = 0
        self.problems: list[Problem] = []
        self.n_problems = 0

    def _problem(self, line: int, message: str) -> None:
        self.n_problems += 1
        if len(self.problems) < MAX_PROBLEMS:
            self.problems.append(Problem(line, message))

    def events(self) -> Iterator[Event]:
        try:
            f = open(self.path, "rb")
        except OSError as e:
            raise SessionFormatError(f"{self.path}: {e.strerror or e}") from None
        with f:
            self.header = _parse_header(self.path, f.readline())
            n = 1
            pending: tuple[int, bytes] | None = None
            for raw in f:
                n += 1
                if pending is not None:
                    ev = self._parse(*pending, last=False)
                    if ev is not None:
                        yield ev
                pending = (n, raw)
            if pending is not None:
                ev = self._parse(*pending, last=True)
                if ev is not None:
                    yield ev

    def _parse(self, n: int, raw: bytes, last: bool) -> Event | None:
        if not raw.strip():
            return None
        torn = last and not raw.endswith(b"\n")
        try:
            d = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            if torn:
                self.skipped_torn += 1  # the writer died mid-line: expected, not an error
            else:
                self._problem(n, "not valid JSON")
            return None
        try:
            return Event.from_dict(d)
        except ValueError as e:
            self._problem(n, str(e))
            return None


def read_session(path: str | os.PathLike) -> SessionFile:
    """The whole recording: header, events, and what had to be skipped."""
    r = _Reader(path)
    events = list(r.events())
    assert r.header is not None
    return SessionFile(r.path, r.header, events, r.skipped_torn, r.problems, r.n_problems)


def read_header(path: str | os.PathLike) -> dict[str, Any]:
    """Only the header (first line), checked as :func:`read_session` checks it."""
    p = Path(path)
    _check_path(p)
    try:
        with open(p, "rb") as f:
            first = f.readline()
    except OSError as e:
        raise SessionFormatError(f"{p}: {e.strerror or e}") from None
    return _parse_header(p, first)


class SessionStream:
    """Iterate a recording's events without keeping them; ``header`` and the skip counts are
    filled in as reading goes (the header once the first event is requested)."""

    def __init__(self, path: str | os.PathLike):
        self._r = _Reader(path)
        self.path = self._r.path
        self.header = read_header(self.path)

    def __iter__(self) -> Iterator[Event]:
        return self._r.events()

    @property
    def skipped_torn(self) -> int:
        return self._r.skipped_torn

    @property
    def problems(self) -> list[Problem]:
        return self._r.problems


def iter_session(path: str | os.PathLike) -> SessionStream:
    return SessionStream(path)
