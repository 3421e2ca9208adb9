"""Sessions: the headless core every front end shares (``core``), and their recordings
(``recorder`` writes, ``reader`` reads; format in DESIGN section 4).

``Session`` is imported lazily (``from cascade_tui.session.core import Session``) by programs
that load models; the reader needs neither llama.cpp nor a model.
"""

from cascade_tui.session.reader import (
    SessionFile,
    SessionFormatError,
    iter_session,
    read_header,
    read_session,
)
from cascade_tui.session.recorder import FORMAT, SUFFIX, VERSION, Recorder, default_session_path

__all__ = [
    "FORMAT",
    "SUFFIX",
    "VERSION",
    "Recorder",
    "SessionFile",
    "SessionFormatError",
    "default_session_path",
    "iter_session",
    "read_header",
    "read_session",
]
