"""The bundled demo model pair (trained by ``scripts/train_demo.py``).

``target.gguf``: a small Mixtral-style MoE (arch ``llama``, 4 layers, 8 experts, top-2) and
``draft.gguf``: a small dense ``llama`` drafter on the same 2048-token BPE vocabulary, both trained
on Python standard-library code. ``manifest.json`` records their sha256, shapes, training setup,
held-out losses and how to rebuild them.
"""

from __future__ import annotations

import json
from pathlib import Path

__all__ = ["DemoModelMissing", "demo_draft_path", "demo_manifest", "demo_target_path"]

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
    """Path of the bundled MoE target (``target.gguf``); raises :class:`DemoModelMissing`."""
    return _existing("target.gguf")


def demo_draft_path() -> Path:
    """Path of the bundled dense drafter (``draft.gguf``); raises :class:`DemoModelMissing`."""
    return _existing("draft.gguf")


def demo_manifest() -> dict:
    """The parsed ``manifest.json`` (sha256, sizes, training config, eval results)."""
    return json.loads(_existing("manifest.json").read_text(encoding="utf-8"))
