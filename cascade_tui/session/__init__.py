"""Sessions: the headless core every front end shares (``core``), their recordings (``recorder``
writes, ``reader`` reads; format in DESIGN section 4), and ``host``, which serves a session to a
UI in another process.

Names are imported lazily, so ``cascade_tui.session.host`` can be the first import of a child
process without pulling in numpy before llama.cpp (see backends/llamacpp/lib.py).
"""

from __future__ import annotations

import importlib

_NAMES = {
    "FORMAT": "recorder", "SUFFIX": "recorder", "VERSION": "recorder", "Recorder": "recorder",
    "default_session_path": "recorder",
    "SessionFile": "reader", "SessionFormatError": "reader", "iter_session": "reader", "read_header": "reader",
    "read_session": "reader",
}

__all__ = sorted(_NAMES)


def __getattr__(name: str):
    if name in _NAMES:
        return getattr(importlib.import_module(f"cascade_tui.session.{_NAMES[name]}"), name)
    raise AttributeError(f"module 'cascade_tui.session' has no attribute {name!r}")
