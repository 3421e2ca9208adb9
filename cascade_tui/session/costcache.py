"""Learned cost curves kept between runs (the ``learned`` policy's ``export_costs``).

A curve is a property of (target file, drafter, backend, device, threads): the key hashes them
from the session header, so another model, drafter, build or thread count starts afresh. Files
live in ``<user cache>/costs/<key>.json`` and are written atomically (temp file + rename), so an
interrupted run never leaves half a file; an unreadable or foreign file is ignored.
``--no-cost-cache`` neither reads nor writes them.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Mapping

from backends.cache import writable_cache_dir

FORMAT = 1


def cost_key(header: Mapping[str, Any]) -> str | None:
    """The cache key of a session header, None when the target's file identity is unknown."""
    model = header.get("model") or {}
    if not model.get("sha256"):
        return None
    draft = header.get("draft") or {}
    machine = header.get("machine") or {}
    parts = {
        "model": model.get("sha256"),
        "draft": draft.get("sha256") or draft.get("name"),
        "max_catch_up": draft.get("max_catch_up"),
        "backend": header.get("backend"),
        "threads": machine.get("threads"),
        "device": {k: machine.get(k) for k in ("cpu", "n_gpu_layers", "gpu_offload_supported", "device",
                                               "llama_cpp_python")},
    }
    blob = json.dumps(parts, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:24]


def costs_dir() -> Path | None:
    """``$CASCADE_TUI_COST_CACHE`` when set (tests keep theirs apart), else ``<cache>/costs``."""
    env = os.environ.get("CASCADE_TUI_COST_CACHE")
    if env:
        d = Path(env).expanduser()
        try:
            d.mkdir(parents=True, exist_ok=True)
        except OSError:
            return None
        return d
    return writable_cache_dir("costs")


def _path(key: str) -> Path | None:
    d = costs_dir()
    return None if d is None else d / f"{key}.json"


def load_costs(key: str | None) -> dict | None:
    if not key:
        return None
    p = _path(key)
    if p is None or not p.is_file():
        return None
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("format") != FORMAT or data.get("key") != key:
        return None
    costs = data.get("costs")
    return costs if isinstance(costs, dict) else None


def save_costs(key: str | None, costs: Mapping[str, Any]) -> Path | None:
    """Write ``costs`` under ``key``; None (nothing written) when there is nowhere to write."""
    if not key:
        return None
    p = _path(key)
    if p is None:
        return None
    try:
        fd, tmp = tempfile.mkstemp(dir=p.parent, prefix=".costs-", suffix=".tmp")
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump({"format": FORMAT, "key": key, "costs": dict(costs)}, f)
        os.replace(tmp, p)
    except OSError:
        try:
            os.unlink(tmp)
        except (OSError, UnboundLocalError):
            pass
        return None
    return p
