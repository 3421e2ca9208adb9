"""Which runtime loads which model. Backends are imported only when one is used, so ``--help``
stays instant and a missing optional runtime (torch) costs nothing until asked for.

A backend is a module that provides::

    load_target(path, *, n_ctx, n_threads, n_gpu_layers, routing, seed, **extra) -> Target
    read_info(path) -> ModelInfo          # what ``inspect`` shows, without loading weights

and is listed in :data:`BACKENDS` with a rule saying which paths it claims for ``--backend
auto``. Adding a runtime means adding its module and one entry here.
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Callable

from backends.base import BackendError


@dataclass(frozen=True)
class BackendSpec:
    name: str
    module: str  # imported on first use
    what: str  # one line for help texts and errors
    claims: Callable[[Path], bool]  # does ``--backend auto`` pick this backend for the path?
    install_hint: str = ""


def _is_gguf(p: Path) -> bool:
    return not p.is_dir()  # a file of any name: llama.cpp says clearly if it is not GGUF


def _is_checkpoint_dir(p: Path) -> bool:
    return p.is_dir()  # a directory: the torch backend says clearly what a checkpoint lacks


BACKENDS: dict[str, BackendSpec] = {
    "llama": BackendSpec("llama", "backends.llamacpp", "llama.cpp, for GGUF files", _is_gguf,
                         "pip install llama-cpp-python==0.3.36"),
    "torch": BackendSpec("torch", "backends.torch_backend", "torch + transformers, for checkpoint directories",
                         _is_checkpoint_dir, 'pip install "cascade-tui[torch]"'),
}


def names() -> list[str]:
    return list(BACKENDS)


def resolve(path: str | os.PathLike, backend: str = "auto") -> str:
    """The backend name for ``path``: ``backend`` itself when given, else the first that claims
    the path. Raises BackendError (one line) for an unknown name or an unclaimed path."""
    name = (backend or "auto").strip().lower()
    if name != "auto":
        if name not in BACKENDS:
            raise BackendError(f"unknown backend {backend!r} (choose auto or {', '.join(names())})")
        return name
    p = Path(path)
    for spec in BACKENDS.values():
        if spec.claims(p):
            return spec.name
    kinds = "; ".join(f"{s.name}: {s.what}" for s in BACKENDS.values())
    raise BackendError(f"no backend loads {path} ({'a directory' if p.is_dir() else 'this file'}); available: {kinds}")


def get(name: str) -> ModuleType:
    """Import and return the backend module ``name``."""
    spec = BACKENDS.get(name)
    if spec is None:
        raise BackendError(f"unknown backend {name!r} (choose auto or {', '.join(names())})")
    try:
        return importlib.import_module(spec.module)
    except ImportError as e:
        hint = f"; install it with `{spec.install_hint}`" if spec.install_hint else ""
        raise BackendError(f"the {name} backend ({spec.what}) is not usable: {e}{hint}") from None
