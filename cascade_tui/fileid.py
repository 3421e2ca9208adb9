"""Identifying model files: the sha256 recorded in session headers and used as a cache key.

Hashing a 12 MB demo model takes milliseconds, a 25 GB Mixtral tens of seconds, so the digest of
each (path, size, mtime) is remembered in the user cache and a file is hashed once. Files larger
than ``FULL_HASH_LIMIT`` get a *sampled* identity instead (size plus 64 spread 1 MiB chunks), which
tells files apart just as well in practice and is marked as such.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from backends.cache import writable_cache_dir

FULL_HASH_LIMIT = 4 * 2**30
_CHUNK = 2**20
_SAMPLES = 64
_memo: dict[tuple, dict[str, Any]] = {}


def _key(p: Path) -> tuple:
    st = p.stat()
    return (str(p.resolve()), st.st_size, st.st_mtime_ns)


def _cache_file() -> Path | None:
    d = writable_cache_dir("hashes")
    return d / "files.json" if d else None


def _load_cache() -> dict[str, Any]:
    f = _cache_file()
    try:
        return json.loads(f.read_text()) if f and f.is_file() else {}
    except (OSError, ValueError):
        return {}


def _store(key: tuple, value: dict[str, Any]) -> None:
    f = _cache_file()
    if f is None:
        return
    data = _load_cache()
    data["|".join(map(str, key))] = value
    if len(data) > 512:  # keep the most recent entries
        data = dict(list(data.items())[-512:])
    tmp = f.with_suffix(f".{os.getpid()}.tmp")
    try:
        tmp.write_text(json.dumps(data))
        os.replace(tmp, f)
    except OSError:
        pass


def file_identity(path: str | os.PathLike) -> dict[str, Any]:
    """``{"sha256": hex or None, "fingerprint": str, "size": bytes}`` for a file; for a directory
    (a checkpoint) the identity of its files together. ``fingerprint`` is always set: the full
    sha256, or ``sampled:<hex>`` for very large files."""
    p = Path(path)
    if p.is_dir():
        files = sorted(q for q in p.rglob("*") if q.is_file())
        parts = [(str(q.relative_to(p)), file_identity(q)["fingerprint"]) for q in files]
        h = hashlib.sha256(json.dumps(parts).encode()).hexdigest()
        return {"sha256": None, "fingerprint": f"dir:{h}", "size": sum(q.stat().st_size for q in files)}
    key = _key(p)
    if key in _memo:
        return _memo[key]
    hit = _load_cache().get("|".join(map(str, key)))
    if isinstance(hit, dict) and "fingerprint" in hit:
        _memo[key] = hit
        return hit
    size = key[1]
    if size <= FULL_HASH_LIMIT:
        digest = _hash_all(p)
        value = {"sha256": digest, "fingerprint": digest, "size": size}
    else:
        h = hashlib.sha256(str(size).encode())
        with open(p, "rb") as f:
            for i in range(_SAMPLES):
                f.seek((size - _CHUNK) * i // (_SAMPLES - 1))
                h.update(f.read(_CHUNK))
        value = {"sha256": None, "fingerprint": f"sampled:{h.hexdigest()}", "size": size}
    _memo[key] = value
    _store(key, value)
    return value


def _hash_all(p: Path) -> str:
    h = hashlib.sha256()
    with open(p, "rb") as f:
        for block in iter(lambda: f.read(8 * _CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def sha256_file(path: str | os.PathLike) -> str:
    """The full sha256 of a file: remembered as :func:`file_identity` remembers it (hashed once
    per path, size and mtime), computed afresh only above ``FULL_HASH_LIMIT``."""
    return file_identity(path)["sha256"] or _hash_all(Path(path))
