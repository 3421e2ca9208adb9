#!/usr/bin/env python3
"""Write the bundled demo pair as transformers checkpoints (for ``--backend torch``).

The torch backend does this by itself on first use (into the user cache, see
``cascade_tui/demo/torch_export.py``); this script writes the same directories wherever you like,
e.g. to inspect them or to load them with plain transformers::

    python scripts/export_demo_torch.py OUT_DIR            # OUT_DIR/target, OUT_DIR/draft
    cascade-tui run --model OUT_DIR/target --draft OUT_DIR/draft --prompt "def f(x):"

Input: ``cascade_tui/demo/target.gguf`` (Mixtral-style MoE, arch ``llama``) and ``draft.gguf``
(dense ``llama``), or any ``--target``/``--draft`` GGUF of arch ``llama``. Offline; needs numpy,
gguf, safetensors and tokenizers (not torch).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


def main(argv=None) -> int:
    from backends.base import BackendError
    from cascade_tui.demo.torch_export import export_gguf
    from cascade_tui.demo import demo_draft_path, demo_target_path

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out", type=Path, help="directory to write target/ and draft/ into")
    ap.add_argument("--target", type=Path, default=None, help="target GGUF (default: the bundled demo MoE)")
    ap.add_argument("--draft", type=Path, default=None, help="drafter GGUF (default: the bundled demo drafter)")
    args = ap.parse_args(argv)
    try:
        for name, src in (("target", args.target or demo_target_path()), ("draft", args.draft or demo_draft_path())):
            dst = export_gguf(src, args.out / name)
            size = sum(f.stat().st_size for f in dst.iterdir())
            print(f"{name}: {src} -> {dst} ({size / 2**20:.1f} MiB)")
    except (BackendError, OSError) as e:
        print(f"export_demo_torch: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
