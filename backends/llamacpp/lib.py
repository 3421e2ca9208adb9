"""Import llama-cpp-python safely, send llama.cpp's log to a file, initialise the backend once.

Import order (why this module imports ``llama_cpp`` before anything else)
-----------------------------------------------------------------------
On a CUDA host, ``import numpy`` *before* the first ``import llama_cpp`` made the process segfault
at model load, while importing llama_cpp first always worked (DESIGN section 6). ``import
llama_cpp`` loads libllama/libggml* through ctypes before llama-cpp-python itself imports numpy,
so the safe order is "llama_cpp, then numpy". This module therefore imports ``llama_cpp`` as its
first non-stdlib import, and ``backends/llamacpp/__init__.py`` imports this module before anything
that pulls in numpy (``backends.base`` does). A program that wants the llama backend should import
``backends.llamacpp`` (or just ``backends.llamacpp.lib``) before numpy; if numpy was already
imported we cannot undo that, so we record it in :data:`NUMPY_IMPORTED_FIRST` (shown in
``ModelInfo.extra``) and write a line to the llama log for post-mortems.

Logging
-------
``import llama_cpp`` installs a *Python* ``llama_log_set`` callback (its ``_logger`` module) that
prints everything to stderr. A Python log callback segfaulted during model load on the CUDA host,
and the terminal belongs to the TUI, so we replace it at once with ``rc_log_cb`` from our small
native library (``routing.c``), which appends to a log file (default
``~/.cache/cascade-tui/llama.log``; ``$CASCADE_TUI_LLAMA_LOG`` or :func:`set_log_path` change it).
Without a C compiler we restore llama.cpp's default logger (plain C, writes to fd 2) and redirect
fd 2 into the log file while llama.cpp loads a model or creates a context (:func:`quiet_stderr`).
"""

from __future__ import annotations

import sys

NUMPY_IMPORTED_FIRST = "numpy" in sys.modules and "llama_cpp" not in sys.modules

IMPORT_ERROR: str | None = None
try:
    import llama_cpp as _llama_cpp_pkg  # noqa: F401  (loads the shared libraries, then numpy)
    import llama_cpp.llama_cpp as llc
except Exception as e:  # ImportError, OSError (a .so that fails to load), RuntimeError, ...
    llc = None  # type: ignore[assignment]
    IMPORT_ERROR = f"{type(e).__name__}: {e}"

import contextlib
import ctypes
import os
import threading
from dataclasses import dataclass
from pathlib import Path

from backends.base import BackendError
from backends.llamacpp import native

MAX_LOG_BYTES = 16 * 1024 * 1024  # rotate (to .1) when the log grows past this at start-up

_lock = threading.RLock()
_log_path: Path | None = None
_log_mode: str | None = None  # "native" or "fd2"
_backend_ready = False
_keep: list = []  # ctypes objects llama.cpp holds pointers to


def require():
    """The ``llama_cpp.llama_cpp`` bindings, or a BackendError saying how to get them."""
    if llc is None:
        raise BackendError(
            f"llama-cpp-python is not usable ({IMPORT_ERROR}); install it with "
            "`pip install llama-cpp-python==0.3.36`"
        )
    return llc


def default_log_path() -> Path:
    env = os.environ.get("CASCADE_TUI_LLAMA_LOG")
    return Path(env).expanduser() if env else native.cache_dir() / "llama.log"


def log_path() -> Path | None:
    return _log_path


def log_mode() -> str | None:
    return _log_mode


def set_log_path(path: str | os.PathLike | None = None) -> Path:
    """Send llama.cpp's log to ``path`` (default :func:`default_log_path`). Safe to call again."""
    global _log_path, _log_mode
    require()
    with _lock:
        if path is not None:
            p = _open_log(Path(path).expanduser())
        else:  # the default location, or a temp dir when the cache is not writable
            try:
                p = _open_log(default_log_path())
            except BackendError:
                p = _open_log(native.fallback_dir() / "llama.log")
        nat = native.load()
        if nat is not None and nat.rc_log_open(os.fsencode(p)) == 0:
            _log_mode = "native"
        else:
            _log_mode = "fd2"
        _log_path = p
        reassert_log()
        if NUMPY_IMPORTED_FIRST:
            log_note("cascade-tui: numpy was imported before llama_cpp (crashed CUDA builds before)")
        return p


def reassert_log() -> None:
    """(Re)install our log sink: someone (llama_cpp.Llama, another library) may have replaced it.
    Called before every model load so load errors can be read back from the log file."""
    lib = require()
    with _lock:
        if _log_mode == "native":
            nat = native.load()
            if not _keep:
                _keep.append(lib.llama_log_callback(ctypes.cast(nat.rc_log_cb, ctypes.c_void_p).value))
            lib.llama_log_set(_keep[0], None)  # also sets ggml's logger
        elif _log_mode == "fd2":
            # no compiler: llama.cpp's own C logger (stderr), redirected around noisy calls
            lib.llama_log_set(ctypes.cast(None, lib.llama_log_callback), None)


def _open_log(p: Path) -> Path:
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
        if p.exists() and p.stat().st_size > MAX_LOG_BYTES:
            os.replace(p, p.with_name(p.name + ".1"))
        with open(p, "a"):
            pass
    except OSError as e:
        raise BackendError(f"cannot write the llama.cpp log file {p}: {e.strerror or e}") from None
    return p


def log_note(text: str) -> None:
    """Append one line of our own to the llama log (for post-mortems)."""
    if _log_path is None:
        return
    try:
        with open(_log_path, "a") as f:
            f.write(text.rstrip("\n") + "\n")
    except OSError:
        pass


def log_mark() -> int:
    """Current end of the log file; pass it to :func:`log_since` after a call that may fail."""
    try:
        return _log_path.stat().st_size if _log_path else 0
    except OSError:
        return 0


def log_since(mark: int, limit: int = 64 * 1024) -> str:
    if _log_path is None:
        return ""
    try:
        with open(_log_path, "rb") as f:
            f.seek(0, os.SEEK_END)
            end = f.tell()
            start = max(mark, end - limit) if end >= mark else max(0, end - limit)
            f.seek(start)
            return f.read().decode("utf-8", errors="replace")
    except OSError:
        return ""


@contextlib.contextmanager
def quiet_stderr():
    """In "fd2" log mode, send fd 2 to the log file for the duration (llama.cpp writes there)."""
    if _log_mode != "fd2" or _log_path is None:
        yield
        return
    try:
        sys.stderr.flush()
    except Exception:
        pass
    saved = os.dup(2)
    try:
        fd = os.open(_log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.dup2(fd, 2)
        finally:
            os.close(fd)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def ensure_backend(log_path: str | os.PathLike | None = None):
    """Route the log (first call, or when ``log_path`` is given) and run llama_backend_init once."""
    global _backend_ready
    lib = require()
    with _lock:
        if _log_path is None or log_path is not None:
            set_log_path(log_path)
        else:
            reassert_log()
        if not _backend_ready:
            with quiet_stderr():
                lib.llama_backend_init()
            _backend_ready = True
    return lib


_ggml_base: ctypes.CDLL | None = None


def lib_dir() -> Path | None:
    if llc is None:
        return None
    return Path(llc.__file__).resolve().parent / "lib"


def ggml_base() -> ctypes.CDLL:
    """libggml-base (already loaded by llama-cpp-python) with ggml_backend_tensor_get declared."""
    global _ggml_base
    if _ggml_base is None:
        require()
        d = lib_dir()
        names = ["libggml-base.so", "libggml-base.dylib", "ggml-base.dll"]
        err = None
        for n in names:
            p = d / n if d else None
            if p is not None and p.exists():
                try:
                    lib = ctypes.CDLL(str(p))
                    break
                except OSError as e:
                    err = e
        else:
            raise BackendError(f"cannot find libggml-base next to libllama in {d} ({err or 'missing'})")
        lib.ggml_backend_tensor_get.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_size_t]
        lib.ggml_backend_tensor_get.restype = None
        _ggml_base = lib
    return _ggml_base


_ggml: ctypes.CDLL | None = None
_DEVICE_KINDS = ("cpu", "gpu", "igpu", "accel", "meta")  # enum ggml_backend_dev_type, in order


@dataclass(frozen=True)
class Device:
    """A compute device ggml registered: ``name`` as llama.cpp's log calls it (``CUDA0``,
    ``Vulkan0``, ``CPU``), ``description`` (the product name), ``kind`` (cpu, gpu, igpu, accel,
    meta) and its memory in bytes (free as the driver reports it now)."""

    name: str
    description: str
    kind: str
    memory_total: int
    memory_free: int

    @property
    def offloads(self) -> bool:
        """llama.cpp offloads layers to this device (as llama_supports_gpu_offload counts it)."""
        return self.kind in ("gpu", "igpu")

    def label(self) -> str:
        return f"{self.name}: {self.description}" if self.description and self.description != self.name else self.name


def _load_ggml() -> ctypes.CDLL:
    """libggml (the device registry; already loaded by llama-cpp-python), with the few device
    functions declared. The per-device calls live in libggml-base."""
    global _ggml
    if _ggml is None:
        require()
        d = lib_dir()
        for n in ("libggml.so", "libggml.dylib", "ggml.dll"):
            p = d / n if d else None
            if p is not None and p.exists():
                lib = ctypes.CDLL(str(p))
                break
        else:
            raise BackendError(f"cannot find libggml next to libllama in {d}")
        lib.ggml_backend_dev_count.argtypes = []
        lib.ggml_backend_dev_count.restype = ctypes.c_size_t
        lib.ggml_backend_dev_get.argtypes = [ctypes.c_size_t]
        lib.ggml_backend_dev_get.restype = ctypes.c_void_p
        base = ggml_base()
        for fn in ("ggml_backend_dev_name", "ggml_backend_dev_description"):
            getattr(base, fn).argtypes = [ctypes.c_void_p]
            getattr(base, fn).restype = ctypes.c_char_p
        base.ggml_backend_dev_type.argtypes = [ctypes.c_void_p]
        base.ggml_backend_dev_type.restype = ctypes.c_int
        base.ggml_backend_dev_memory.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_size_t),
                                                 ctypes.POINTER(ctypes.c_size_t)]
        base.ggml_backend_dev_memory.restype = None
        _ggml = lib
    return _ggml


def devices() -> list[Device]:
    """Every device this llama-cpp-python build registered (the CPU last, as ggml orders them).
    Call after :func:`ensure_backend` (which loads the backends)."""
    lib = require()
    with _lock:
        lib.llama_supports_gpu_offload()  # loads the backends if nothing registered them yet
        g = _load_ggml()
        base = ggml_base()
        out = []
        for i in range(int(g.ggml_backend_dev_count())):
            dev = g.ggml_backend_dev_get(i)
            if not dev:
                continue
            free, total = ctypes.c_size_t(0), ctypes.c_size_t(0)
            base.ggml_backend_dev_memory(dev, ctypes.byref(free), ctypes.byref(total))
            kind = int(base.ggml_backend_dev_type(dev))
            out.append(Device(
                name=(base.ggml_backend_dev_name(dev) or b"?").decode("utf-8", "replace"),
                description=(base.ggml_backend_dev_description(dev) or b"").decode("utf-8", "replace").strip(),
                kind=_DEVICE_KINDS[kind] if 0 <= kind < len(_DEVICE_KINDS) else str(kind),
                memory_total=int(total.value),
                memory_free=int(free.value),
            ))
        return out
