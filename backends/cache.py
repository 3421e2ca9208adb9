"""Where cascade-tui keeps what it builds or learns per user: the compiled routing callback, the
llama.cpp log, file hashes, learned cost curves. ``$CASCADE_TUI_CACHE`` overrides the location
(default ``$XDG_CACHE_HOME/cascade-tui`` or ``~/.cache/cascade-tui``).

No third-party imports here: the llama.cpp backend reads this before llama_cpp and numpy load.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def cache_dir() -> Path:
    base = os.environ.get("CASCADE_TUI_CACHE")
    if base:
        return Path(base).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "cascade-tui"


def fallback_dir() -> Path:
    """Where to go when the cache directory is not writable (read-only home, sandbox)."""
    uid = os.getuid() if hasattr(os, "getuid") else os.getpid()
    return Path(tempfile.gettempdir()) / f"cascade-tui-{uid}"


def writable_cache_dir(sub: str) -> Path | None:
    """``cache_dir()/sub`` (else ``fallback_dir()/sub``), created; None when neither can be."""
    for base in (cache_dir(), fallback_dir()):
        d = base / sub
        try:
            d.mkdir(parents=True, exist_ok=True)
            if os.access(d, os.W_OK):
                return d
        except OSError:
            continue
    return None
