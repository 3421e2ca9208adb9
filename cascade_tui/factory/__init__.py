"""Model factory: small GGUF models (MoE targets, dense drafters) with a real BPE tokenizer.

Everything here is generated (seeded random or caller-provided weights); nothing is downloaded.

    from cascade_tui.factory import write_model
    target = write_model("/tmp/t.gguf", arch="qwen3moe", n_expert=8, n_expert_used=2)
    drafter = write_model("/tmp/d.gguf", arch="llama", n_expert=0, n_layer=1)
"""

from .cost_pair import (
    CostPair,
    cost_drafter_next,
    cost_target_next,
    cycle_prompts,
    write_cost_drafter,
    write_cost_pair,
    write_cost_target,
)
from .gguf_models import (
    ARCHS,
    DENSE_ARCHS,
    MOE_NORM_TOPK,
    NORM_EPS,
    ROPE_STYLE,
    TIED_ARCHS,
    moe_layer_ids,
    permute_qk,
    tensor_shapes,
    write_model,
)
from .tokenizer import BPEVocab, EOS_TEXT, default_vocab, encode_fast, hf_tokenizer, load_vocab

__all__ = [
    "ARCHS",
    "BPEVocab",
    "CostPair",
    "DENSE_ARCHS",
    "EOS_TEXT",
    "MOE_NORM_TOPK",
    "NORM_EPS",
    "ROPE_STYLE",
    "TIED_ARCHS",
    "cost_drafter_next",
    "cost_target_next",
    "cycle_prompts",
    "default_vocab",
    "encode_fast",
    "hf_tokenizer",
    "load_vocab",
    "moe_layer_ids",
    "permute_qk",
    "tensor_shapes",
    "write_cost_drafter",
    "write_cost_pair",
    "write_cost_target",
    "write_model",
]
