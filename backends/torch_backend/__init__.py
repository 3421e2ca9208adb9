"""torch backend: local transformers checkpoints (config.json + *.safetensors), MoE routing from
the experts modules, KV rollback through ``DynamicCache.crop``.

The package is named ``torch_backend`` so that it can never shadow the real ``torch``. Importing it
loads neither torch nor transformers: :func:`read_info` (``cascade-tui inspect DIR``) and the
directory checks need only the standard library and ``tokenizers``; :func:`load_target` imports
torch on first use.
"""

from __future__ import annotations

import json
import os

from backends.base import BackendError, ModelInfo, vocab_fingerprint
from backends.torch_backend import checkpoint
from backends.torch_backend.checkpoint import open_checkpoint


def load_target(path, **kw):
    """See :func:`backends.torch_backend.target.load_target`."""
    from backends.torch_backend.target import load_target as _load

    return _load(path, **kw)


def make_drafter(path, target, **kw):
    from backends.torch_backend.target import make_drafter as _make

    return _make(path, target, **kw)


def read_info(path: str | os.PathLike, *, fingerprint: bool = True) -> ModelInfo:
    """What ``cascade-tui inspect DIR`` shows, without loading weights or torch."""
    ck = open_checkpoint(path)
    cfg = ck.text_config
    n_vocab = int(cfg.get("vocab_size") or 0)
    fp = ""
    extra = {"model_type": ck.model_type, "weight_files": len(ck.weight_files),
             "tested_family": ck.model_type in checkpoint.TESTED_MOE,
             "architectures": ck.config.get("architectures") or []}
    if fingerprint and ck.tokenizer_file is not None:
        try:
            from tokenizers import Tokenizer

            tj = json.loads(ck.tokenizer_file.read_text(encoding="utf-8"))
            tok = Tokenizer.from_file(str(ck.tokenizer_file))
            added = {int(a["id"]): str(a["content"]) for a in tj.get("added_tokens", [])}
            n = n_vocab or tok.get_vocab_size(with_added_tokens=True)
            fp = vocab_fingerprint(checkpoint.token_pieces(tj, tok.id_to_token, n, added))
        except Exception as e:  # tokenizers missing or a tokenizer it cannot read
            extra["load_error"] = f"tokenizer: {e}"
    elif ck.tokenizer_file is None:
        extra["load_error"] = "no tokenizer.json in the checkpoint"
    moe = checkpoint.moe_layer_ids(cfg)
    return ModelInfo(
        path=str(ck.path),
        backend="torch",
        arch=ck.model_type,
        n_layer=checkpoint.n_layers(cfg),
        moe_layers=moe,
        n_expert=ck.n_expert() if moe else 0,
        n_expert_used=ck.n_expert_used() if moe else 0,
        n_vocab=n_vocab,
        n_ctx_train=int(cfg.get("max_position_embeddings") or 0),
        vocab_fingerprint=fp,
        file_size=ck.file_size,
        n_params=ck.n_params,
        extra=extra,
    )


__all__ = ["BackendError", "checkpoint", "load_target", "make_drafter", "open_checkpoint", "read_info"]
