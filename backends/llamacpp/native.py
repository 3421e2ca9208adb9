"""Build, cache and load ``routing.c`` (the routing-capture eval callback and the log sink).

The shared object is compiled once with the system C compiler (``$CC``, ``cc``, ``gcc`` or
``clang``) against the ggml headers that llama-cpp-python installs, and cached in
``~/.cache/cascade-tui/native/`` (``$CASCADE_TUI_CACHE`` overrides ``~/.cache/cascade-tui``) under a
name keyed by the source hash, the llama-cpp-python version and the header flavour. When no
compiler works, :func:`load` returns ``None`` and callers fall back to pure-Python code
(``CASCADE_TUI_NO_NATIVE=1`` forces that, for tests and for hosts with a broken toolchain).

This module does not import llama_cpp or numpy (see ``lib.py`` for why order matters).
"""

from __future__ import annotations

import ctypes
import hashlib
import importlib.util
import os
import platform
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

from backends.cache import cache_dir, fallback_dir  # noqa: F401  (re-exported)

SOURCE = Path(__file__).with_name("routing.c")
LLAMA_CPP_VERSION_FALLBACK = "unknown"

_loaded: dict[tuple, ctypes.CDLL | None] = {}
last_error: str | None = None  # why the last build failed (shown by `inspect` / logs)


def llama_cpp_dir() -> Path | None:
    spec = importlib.util.find_spec("llama_cpp")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def llama_cpp_version() -> str:
    try:
        from importlib.metadata import version

        return version("llama-cpp-python")
    except Exception:
        return LLAMA_CPP_VERSION_FALLBACK


def find_headers() -> Path | None:
    """Directory holding ggml.h as installed by llama-cpp-python (its location varies by build)."""
    pkg = llama_cpp_dir()
    candidates: list[Path] = []
    if pkg is not None:
        candidates += [pkg / "include", pkg.parent / "include", pkg / "lib" / "include"]
    candidates += [Path(sysconfig.get_paths().get("purelib", "")) / "include", Path(sys.prefix) / "include"]
    for c in candidates:
        if (c / "ggml.h").is_file():
            return c
    return None


def find_compiler() -> str | None:
    for name in (os.environ.get("CC"), "cc", "gcc", "clang"):
        if name:
            path = shutil.which(name)
            if path:
                return path
    return None


def _disabled() -> bool:
    return os.environ.get("CASCADE_TUI_NO_NATIVE", "").strip() not in ("", "0", "false", "no")


def build(headers: bool = True, force: bool = False) -> Path | None:
    """Compile routing.c into the cache (if not there yet) and return the .so path, or None."""
    global last_error
    src = SOURCE.read_bytes()
    inc = find_headers() if headers else None
    flavour = "hdr" if inc is not None else "nohdr"
    key = hashlib.sha256(
        src + llama_cpp_version().encode() + flavour.encode() + platform.machine().encode()
    ).hexdigest()[:16]
    suffix = ".dll" if sys.platform == "win32" else (".dylib" if sys.platform == "darwin" else ".so")
    name = f"cascade_routing-{llama_cpp_version()}-{flavour}-{key}{suffix}"
    dirs = [cache_dir() / "native", fallback_dir() / "native"]
    if not force:
        for d in dirs:
            if (d / name).is_file():
                return d / name
    cc = find_compiler()
    if cc is None:
        last_error = "no C compiler found (set CC)"
        return None
    tmp = None
    for out_dir in dirs:
        try:
            out_dir.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=name + ".", suffix=".tmp", dir=out_dir)
            os.close(fd)
            break
        except OSError as e:
            last_error = f"cannot write to {out_dir}: {e.strerror or e}"
    else:
        return None
    out = out_dir / name
    try:
        cmd = [cc, "-O2", "-shared", "-fPIC", "-fvisibility=hidden", "-std=c11", "-o", tmp, str(SOURCE)]
        cmd[1:1] = [f"-I{inc}"] if inc is not None else ["-DRC_NO_GGML_HEADERS"]
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        if res.returncode != 0:
            last_error = f"{Path(cc).name} failed: {(res.stderr or res.stdout).strip().splitlines()[-1:]}"
            os.unlink(tmp)
            return None
        os.replace(tmp, out)  # atomic: concurrent builders never see a half-written file
        return out
    except Exception as e:  # compiler timeout, disk full, ...
        last_error = f"native build failed: {e}"
        try:
            os.unlink(tmp)
        except Exception:
            pass
        return None


def load(headers: bool = True) -> ctypes.CDLL | None:
    """The native helper library, or None (no compiler, disabled, or failed to load)."""
    global last_error
    if _disabled():
        last_error = "disabled by CASCADE_TUI_NO_NATIVE"
        return None
    key = (headers,)
    if key in _loaded:
        return _loaded[key]
    lib = None
    path = build(headers=headers)
    if path is not None:
        try:
            lib = ctypes.CDLL(str(path))
            _declare(lib)
        except OSError as e:
            last_error = f"cannot load {path.name}: {e}"
            lib = None
    _loaded[key] = lib
    return lib


def _declare(lib: ctypes.CDLL) -> None:
    lib.rc_log_open.argtypes = [ctypes.c_char_p]
    lib.rc_log_open.restype = ctypes.c_int
    lib.rc_layout.argtypes = [ctypes.POINTER(ctypes.c_int64)]
    lib.rc_layout.restype = None


def layout(lib: ctypes.CDLL) -> dict[str, int]:
    out = (ctypes.c_int64 * 9)()
    lib.rc_layout(out)
    keys = ("type", "ne", "nb", "data", "name", "sizeof_tensor", "sizeof_state", "version", "headers")
    return dict(zip(keys, (int(v) for v in out)))
