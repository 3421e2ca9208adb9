"""The bundled demo model pair (trained by ``scripts/train_demo.py``).

``target.gguf``: a small Mixtral-style MoE (arch ``llama``, 4 layers, 8 experts, top-2) and
``draft.gguf``: a small dense ``llama`` drafter on the same 2048-token BPE vocabulary, both trained
on Python standard-library code. ``manifest.json`` records their sha256, shapes, training setup,
held-out losses and how to rebuild them.

The commands' default target is not ``target.gguf`` itself but :func:`demo_default_target`: the
same model grown into a memory-bound MoE (experts widened with zeros, same text; see
:mod:`cascade_tui.demo.grow`), built once into the user cache. ``target.gguf`` fits in a CPU's
caches: a step costs ~1 ms, much of it fixed per-call work, a drafter step half of that, and
speculation cannot pay whatever the drafter.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

__all__ = [
    "DemoModelMissing",
    "demo_default_target",
    "demo_draft_path",
    "demo_manifest",
    "demo_target_path",
]

_DIR = Path(__file__).resolve().parent
_REBUILD = "python scripts/train_demo.py"


class DemoModelMissing(FileNotFoundError):
    """A bundled demo file is not installed (e.g. a source checkout without the GGUF files)."""


def _existing(name: str) -> Path:
    p = _DIR / name
    if not p.is_file():
        raise DemoModelMissing(
            f"bundled demo model {name} is missing from {_DIR}; reinstall cascade-tui or rebuild it "
            f"with `{_REBUILD}` (or pass --model/--draft explicitly)"
        )
    return p


def demo_target_path() -> Path:
    """Path of the bundled MoE target (``target.gguf``, 12 MB, cache-resident: fast, but speculation
    cannot pay on it; :func:`demo_default_target` is what the commands use); raises
    :class:`DemoModelMissing`."""
    return _existing("target.gguf")


def demo_default_target(progress: Callable[[int, int], None] | None = None) -> Path:
    """The default target of ``run``/``bench``/``chat``: the grown demo MoE (405 MB, the same logits),
    in the user cache, built from ``target.gguf`` on first use (about a second or two). ``progress(done_bytes,
    total_bytes)`` is called only while it is being built. Raises :class:`DemoModelMissing` when
    ``target.gguf`` is missing and OSError when the grown file cannot be written."""
    from cascade_tui.demo.grow import ensure_grown_target

    return ensure_grown_target(demo_target_path(), progress=progress)


def demo_draft_path() -> Path:
    """Path of the bundled dense drafter (``draft.gguf``); raises :class:`DemoModelMissing`."""
    return _existing("draft.gguf")


def demo_manifest() -> dict:
    """The parsed ``manifest.json`` (sha256, sizes, training config, eval results)."""
    return json.loads(_existing("manifest.json").read_text(encoding="utf-8"))
