"""Write small GGUF models (MoE targets, dense drafters) that llama.cpp loads.

Every model shares the byte-level BPE vocabulary of :mod:`cascade_tui.factory.tokenizer`, so any
target and drafter written here can speculate for each other.

Weights are seeded random (each tensor from its own stream keyed by ``(seed, tensor name)``, so
replacing one tensor never changes another) or come from the caller through ``weights=``.

Tensor layout (``weights=`` and :func:`tensor_shapes`): numpy arrays in gguf-py's order, i.e.
the *reverse* of ggml's ``ne``. Practically that is PyTorch's layout written as-is:

=============================================  ==========================================
tensor name                                    numpy shape
=============================================  ==========================================
``token_embd.weight``                          ``[n_vocab, n_embd]`` (``nn.Embedding``)
``output.weight``                              ``[n_vocab, n_embd]`` (lm head; none if tied)
``output_norm.weight`` / ``.bias``             ``[n_embd]``
``blk.N.attn_norm.weight`` / ``.bias``         ``[n_embd]``
``blk.N.attn_q.weight``                        ``[n_head * head_dim, n_embd]`` (Linear ``[out, in]``)
``blk.N.attn_k.weight`` / ``attn_v.weight``    ``[n_head_kv * head_dim, n_embd]``
``blk.N.attn_{q,k,v}.bias``                    ``[out]`` (qwen2moe, phimoe, gpt-oss)
``blk.N.attn_output.weight``                   ``[n_embd, n_head * head_dim]``
``blk.N.attn_{q,k}_norm.weight``               ``[head_dim]`` (qwen3moe) / ``[n_embd]`` (olmoe)
``blk.N.ffn_norm.weight`` / ``.bias``          ``[n_embd]``
``blk.N.ffn_gate_inp.weight`` (router)         ``[n_expert, n_embd]``
``blk.N.ffn_gate_exps.weight`` / ``up_exps``   ``[n_expert, n_ff, n_embd]`` (stacked Linear weights)
``blk.N.ffn_down_exps.weight``                 ``[n_expert, n_embd, n_ff]``
``blk.N.ffn_{gate,up}.weight`` (dense)         ``[n_ff, n_embd]``
``blk.N.ffn_down.weight`` (dense)              ``[n_embd, n_ff]``
``blk.N.ffn_{gate,up}_shexp.weight``           ``[n_ff_shared, n_embd]``
``blk.N.ffn_down_shexp.weight``                ``[n_embd, n_ff_shared]``
``blk.N.ffn_gate_inp_shexp.weight``            ``[n_embd]`` (qwen2moe shared-expert gate)
=============================================  ==========================================

(deepseek2 and gpt-oss have a few more; :func:`tensor_shapes` lists every tensor of any config.)

What llama.cpp computes with them (to train a model in PyTorch that exports exactly):

* pre-norm residual blocks: ``h += attn(norm(h)); h += ffn(norm(h))``; RMSNorm with
  eps :data:`NORM_EPS` (phimoe: llama.cpp computes RMSNorm, then adds the norm's ``.bias``);
  final ``norm`` then ``output`` (phimoe: plus ``output.bias``).
* attention: scale ``1/sqrt(head_dim)``, causal, GQA (``n_head_kv`` groups). RoPE with base
  ``rope_theta`` over the whole head: ``ROPE_STYLE[arch]`` is ``"norm"`` for ``llama`` -- rotates
  adjacent pairs ``(x[2i], x[2i+1])``, GPT-J style -- and ``"neox"`` for the others -- rotates
  ``(x[i], x[i + d/2])``, HF's ``rotate_half``. A PyTorch llama using ``rotate_half`` must pass its
  q/k weights through :func:`permute_qk` (as llama.cpp's converter does) before export.
* FFN / experts: SwiGLU ``down(silu(gate(x)) * up(x))``. Router: ``softmax(router(x))`` over all
  experts, top-``n_expert_used``; the chosen probabilities are renormalised to sum 1 for
  ``llama``, ``qwen3moe``, ``phimoe`` and *not* for ``qwen2moe``, ``olmoe``, ``deepseek2``
  (:data:`MOE_NORM_TOPK`). qwen2moe adds a shared expert gated by
  ``sigmoid(ffn_gate_inp_shexp . x)``; deepseek2 adds it ungated.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import numpy as np

from .tokenizer import BPEVocab, default_vocab

#: Architectures :func:`write_model` writes and llama.cpp (llama-cpp-python 0.3.36) loads and runs.
ARCHS: tuple[str, ...] = ("llama", "qwen2moe", "qwen3moe", "olmoe", "deepseek2", "phimoe", "gpt-oss")
#: ``write_model(arch=..., n_expert=0)`` works for these (a dense model, e.g. a drafter).
DENSE_ARCHS: tuple[str, ...] = ("llama",)
#: Archs whose llama.cpp loader reuses ``token_embd`` when ``output.weight`` is absent.
TIED_ARCHS: tuple[str, ...] = ("llama", "qwen3moe", "deepseek2")
#: RMSNorm / LayerNorm epsilon written into every model.
NORM_EPS = 1e-5
#: RoPE pairing llama.cpp uses per architecture ("norm": adjacent pairs, "neox": halves).
ROPE_STYLE: dict[str, str] = {
    "llama": "norm", "qwen2moe": "neox", "qwen3moe": "neox", "olmoe": "neox",
    "deepseek2": "neox", "phimoe": "neox", "gpt-oss": "neox",
}
#: Whether the top-k router probabilities are renormalised to sum to one.
MOE_NORM_TOPK: dict[str, bool] = {
    "llama": True, "qwen2moe": False, "qwen3moe": True, "olmoe": False,
    "deepseek2": False, "phimoe": True, "gpt-oss": True,
}

_TOKEN_NORMAL = 1
_TOKEN_CONTROL = 3

# init scales (std of N(0, s)); see _init()
_ROUTER_LOGIT_STD = 3.0  # router logits std for a unit-RMS input: peaked but varied routing
_OUTPUT_LOGIT_STD = 3.0  # lm-head logits std: clear argmaxes, no near-ties


@dataclass(frozen=True)
class _Config:
    arch: str
    n_layer: int
    n_embd: int
    n_head: int
    n_head_kv: int
    n_ff: int
    n_expert: int
    n_expert_used: int
    n_ff_shared: int  # 0 = no shared expert
    n_dense_lead: int
    n_vocab: int
    head_dim: int
    # deepseek2 (MLA-style attention, stored unabsorbed)
    n_rot: int
    kv_lora_rank: int
    head_dim_v: int
    sliding_window: int  # gpt-oss
    tie_embeddings: bool


def moe_layer_ids(arch: str, n_layer: int, n_expert: int = 8, n_dense_lead: int | None = None) -> tuple[int, ...]:
    """Indices of the layers that route to experts in a model :func:`write_model` would write."""
    if n_expert == 0:
        return ()
    lead = _default_dense_lead(arch, n_layer) if n_dense_lead is None else n_dense_lead
    return tuple(range(lead, n_layer))


def _default_dense_lead(arch: str, n_layer: int) -> int:
    # DeepSeek-V2-Lite has one dense layer first; keep that shape when there is room for it.
    return 1 if arch == "deepseek2" and n_layer >= 2 else 0


def permute_qk(w: np.ndarray, n_head: int) -> np.ndarray:
    """Reorder q/k projection rows from HF ``rotate_half`` RoPE to llama.cpp's ``llama`` RoPE.

    ``w``: ``[n_head * head_dim, n_in]`` (or a bias ``[n_head * head_dim]``); for ``attn_k`` pass
    ``n_head_kv``. Same permutation as llama.cpp's ``convert_hf_to_gguf.py`` for LLaMA.
    """
    w = np.asarray(w)
    shape = w.shape
    return (
        w.reshape(n_head, 2, shape[0] // n_head // 2, *shape[1:])
        .swapaxes(1, 2)
        .reshape(shape)
    )


def _config(arch, n_layer, n_embd, n_head, n_head_kv, n_ff, n_expert, n_expert_used, n_ff_shared,
            n_dense_lead, n_vocab, tie_embeddings=False) -> _Config:
    if arch not in ARCHS:
        raise ValueError(f"unknown arch {arch!r}; choose one of {', '.join(ARCHS)}")
    if tie_embeddings and arch not in TIED_ARCHS:
        raise ValueError(f"llama.cpp's {arch!r} loader needs output.weight; tied embeddings: {TIED_ARCHS}")
    if n_expert == 0 and arch not in DENSE_ARCHS:
        raise ValueError(f"arch {arch!r} needs experts (n_expert > 0); dense models: {DENSE_ARCHS}")
    for name, v in (("n_layer", n_layer), ("n_embd", n_embd), ("n_head", n_head), ("n_ff", n_ff)):
        if int(v) < 1:
            raise ValueError(f"{name} must be >= 1")
    if n_embd % n_head:
        raise ValueError("n_embd must be a multiple of n_head")
    head_dim = n_embd // n_head
    if head_dim % 2:
        raise ValueError("head_dim = n_embd / n_head must be even (RoPE)")
    if n_expert < 0 or n_expert > 512:
        raise ValueError("n_expert must be in 0..512")
    if n_expert == 0:
        n_expert_used = 0
    elif not 1 <= n_expert_used <= n_expert:
        raise ValueError("n_expert_used must be in 1..n_expert")
    if arch in ("olmoe", "deepseek2"):
        # olmoe's q/k norms span all heads (size n_embd); deepseek2's unabsorbed MLA is MHA
        if n_head_kv is not None and n_head_kv != n_head:
            raise ValueError(f"arch {arch!r} needs n_head_kv == n_head")
        n_head_kv = n_head
    elif n_head_kv is None:
        n_head_kv = max(1, n_head // 2) if n_head % 2 == 0 else n_head
    if n_head_kv < 1 or n_head % n_head_kv:
        raise ValueError("n_head must be a multiple of n_head_kv")
    if arch == "qwen2moe":
        n_ff_shared = n_ff if n_ff_shared is None else n_ff_shared
        if n_ff_shared < 1:
            raise ValueError("qwen2moe needs a shared expert (n_ff_shared >= 1)")
    elif arch == "deepseek2":
        n_ff_shared = n_ff if n_ff_shared is None else n_ff_shared
        if n_ff_shared < n_ff or n_ff_shared % n_ff:
            raise ValueError("deepseek2: n_ff_shared must be a multiple of n_ff (shared expert count)")
    elif n_ff_shared:
        raise ValueError(f"arch {arch!r} has no shared expert (n_ff_shared is for qwen2moe, deepseek2)")
    else:
        n_ff_shared = 0
    lead = _default_dense_lead(arch, n_layer) if n_dense_lead is None else int(n_dense_lead)
    if lead and arch != "deepseek2":
        raise ValueError("leading dense layers (n_dense_lead) exist only for deepseek2")
    if not 0 <= lead < n_layer and n_expert:
        raise ValueError("n_dense_lead must leave at least one MoE layer")
    n_rot, kv_lora, hd_v = head_dim, 0, head_dim
    if arch == "deepseek2":
        if head_dim < 4:
            raise ValueError("deepseek2 needs head_dim >= 4")
        n_rot = head_dim // 2 if (head_dim // 2) % 2 == 0 else head_dim // 2 + 1
        kv_lora = max(8, n_embd // 2)
    return _Config(arch=arch, n_layer=n_layer, n_embd=n_embd, n_head=n_head, n_head_kv=n_head_kv,
                   n_ff=n_ff, n_expert=n_expert, n_expert_used=n_expert_used, n_ff_shared=n_ff_shared,
                   n_dense_lead=lead, n_vocab=n_vocab, head_dim=head_dim, n_rot=n_rot,
                   kv_lora_rank=kv_lora, head_dim_v=hd_v, sliding_window=128,
                   tie_embeddings=bool(tie_embeddings))


# --- the tensor plan: name -> (numpy shape, init kind) ----------------------------------------


def _plan(c: _Config) -> dict[str, tuple[tuple[int, ...], str]]:
    """Every tensor of the model in file order, with its numpy shape and init rule.

    Init kinds: ``embd`` N(0,1); ``lin`` N(0,1/sqrt(fan_in)); ``router``/``head`` scaled to the
    logit std above; ``one``; ``zero``; ``bias`` N(0, 0.02).
    """
    p: dict[str, tuple[tuple[int, ...], str]] = {}
    E, V, F, X = c.n_embd, c.n_vocab, c.n_ff, c.n_expert
    hd, nh, nkv = c.head_dim, c.n_head, c.n_head_kv
    norm_bias = c.arch == "phimoe"
    p["token_embd.weight"] = ((V, E), "embd")
    for i in range(c.n_layer):
        b = f"blk.{i}."
        p[b + "attn_norm.weight"] = ((E,), "one")
        if norm_bias:
            p[b + "attn_norm.bias"] = ((E,), "zero")
        if c.arch == "deepseek2":
            hk = hd  # key head = nope + rope
            p[b + "attn_q.weight"] = ((nh * hk, E), "lin")
            p[b + "attn_kv_a_mqa.weight"] = ((c.kv_lora_rank + c.n_rot, E), "lin")
            p[b + "attn_kv_a_norm.weight"] = ((c.kv_lora_rank,), "one")
            p[b + "attn_kv_b.weight"] = ((nh * (hk - c.n_rot + c.head_dim_v), c.kv_lora_rank), "lin")
            p[b + "attn_output.weight"] = ((E, nh * c.head_dim_v), "lin")
        else:
            p[b + "attn_q.weight"] = ((nh * hd, E), "lin")
            p[b + "attn_k.weight"] = ((nkv * hd, E), "lin")
            p[b + "attn_v.weight"] = ((nkv * hd, E), "lin")
            if c.arch in ("qwen2moe", "phimoe", "gpt-oss"):
                p[b + "attn_q.bias"] = ((nh * hd,), "bias")
                p[b + "attn_k.bias"] = ((nkv * hd,), "bias")
                p[b + "attn_v.bias"] = ((nkv * hd,), "bias")
            if c.arch == "qwen3moe":
                p[b + "attn_q_norm.weight"] = ((hd,), "one")
                p[b + "attn_k_norm.weight"] = ((hd,), "one")
            elif c.arch == "olmoe":
                p[b + "attn_q_norm.weight"] = ((E,), "one")
                p[b + "attn_k_norm.weight"] = ((E,), "one")
            p[b + "attn_output.weight"] = ((E, nh * hd), "lin")
            if c.arch in ("phimoe", "gpt-oss"):
                p[b + "attn_output.bias"] = ((E,), "zero")
            if c.arch == "gpt-oss":
                p[b + "attn_sinks.weight"] = ((nh,), "zero")
        if c.arch == "gpt-oss":
            p[b + "post_attention_norm.weight"] = ((E,), "one")
        else:
            p[b + "ffn_norm.weight"] = ((E,), "one")
            if norm_bias:
                p[b + "ffn_norm.bias"] = ((E,), "zero")
        if X == 0 or i < c.n_dense_lead:
            p[b + "ffn_gate.weight"] = ((F, E), "lin")
            p[b + "ffn_up.weight"] = ((F, E), "lin")
            p[b + "ffn_down.weight"] = ((E, F), "lin")
            continue
        p[b + "ffn_gate_inp.weight"] = ((X, E), "router")
        if c.arch == "gpt-oss":
            p[b + "ffn_gate_inp.bias"] = ((X,), "zero")
        p[b + "ffn_gate_exps.weight"] = ((X, F, E), "lin")
        p[b + "ffn_up_exps.weight"] = ((X, F, E), "lin")
        p[b + "ffn_down_exps.weight"] = ((X, E, F), "lin")
        if c.arch == "gpt-oss":
            p[b + "ffn_gate_exps.bias"] = ((X, F), "zero")
            p[b + "ffn_up_exps.bias"] = ((X, F), "zero")
            p[b + "ffn_down_exps.bias"] = ((X, E), "zero")
        if c.n_ff_shared:
            S = c.n_ff_shared
            if c.arch == "qwen2moe":
                p[b + "ffn_gate_inp_shexp.weight"] = ((E,), "lin")
            p[b + "ffn_gate_shexp.weight"] = ((S, E), "lin")
            p[b + "ffn_up_shexp.weight"] = ((S, E), "lin")
            p[b + "ffn_down_shexp.weight"] = ((E, S), "lin")
    p["output_norm.weight"] = ((E,), "one")
    if norm_bias:
        p["output_norm.bias"] = ((E,), "zero")
    if not c.tie_embeddings:
        p["output.weight"] = ((V, E), "head")
    if norm_bias:
        p["output.bias"] = ((V,), "zero")
    return p


def _init(name: str, shape: tuple[int, ...], kind: str, seed: int) -> np.ndarray:
    if kind == "one":
        return np.ones(shape, np.float32)
    if kind == "zero":
        return np.zeros(shape, np.float32)
    rng = np.random.default_rng([seed & 0xFFFFFFFF, seed >> 32 & 0xFFFFFFFF, zlib.crc32(name.encode())])
    fan_in = shape[-1]
    std = {
        "embd": 1.0,
        "lin": 1.0 / np.sqrt(fan_in),
        "router": _ROUTER_LOGIT_STD / np.sqrt(fan_in),
        "head": _OUTPUT_LOGIT_STD / np.sqrt(fan_in),
        "bias": 0.02,
    }[kind]
    if len(shape) == 1 and kind == "lin":  # a gating vector (qwen2moe shared-expert gate)
        std = 1.0 / np.sqrt(shape[0])
    return (rng.standard_normal(shape, dtype=np.float32) * np.float32(std)).astype(np.float32)


def _keep_f32(name: str, shape: tuple[int, ...]) -> bool:
    # norms, biases, sinks, gating vectors and the router stay f32 even in an f16 file (routing
    # decisions are near-ties-sensitive; ggml's bias/add_id ops want f32)
    return len(shape) == 1 or name.endswith(".bias") or ".ffn_gate_inp." in name


def tensor_shapes(
    *, arch: str = "llama", n_layer: int = 2, n_embd: int = 64, n_head: int = 4,
    n_head_kv: int | None = None, n_ff: int = 128, n_expert: int = 8, n_expert_used: int = 2,
    n_ff_shared: int | None = None, n_dense_lead: int | None = None, vocab: BPEVocab | None = None,
    tie_embeddings: bool = False,
) -> dict[str, tuple[int, ...]]:
    """Name -> numpy shape of every tensor ``write_model`` writes for this configuration."""
    n_vocab = (vocab or default_vocab()).n_vocab
    c = _config(arch, n_layer, n_embd, n_head, n_head_kv, n_ff, n_expert, n_expert_used,
                n_ff_shared, n_dense_lead, n_vocab, tie_embeddings)
    return {k: s for k, (s, _) in _plan(c).items()}


def write_model(
    path: str | Path,
    *,
    arch: str = "llama",
    n_layer: int = 2,
    n_embd: int = 64,
    n_head: int = 4,
    n_head_kv: int | None = None,
    n_ff: int = 128,
    n_expert: int = 8,
    n_expert_used: int = 2,
    n_ff_shared: int | None = None,
    vocab: BPEVocab | None = None,
    n_ctx_train: int = 2048,
    seed: int = 0,
    weights: Mapping[str, np.ndarray] | None = None,
    dtype: str = "f32",
    rope_theta: float = 10000.0,
    name: str | None = None,
    n_dense_lead: int | None = None,
    tie_embeddings: bool = False,
    chat_template: str | None = None,
) -> Path:
    """Write a GGUF model to ``path`` and return it (as a :class:`~pathlib.Path`).

    ``n_ff`` is the FFN width of each expert (of the FFN for a dense model or dense layer).
    ``n_expert=0`` writes a dense model (``arch="llama"`` only; the drafter shape).
    ``n_head_kv=None``: ``n_head // 2`` (``n_head`` for olmoe and deepseek2, which need it).
    ``n_ff_shared``: shared-expert width; qwen2moe (default ``n_ff``) and deepseek2 (a multiple of
    ``n_ff``, default ``n_ff``) only. ``n_dense_lead``: leading dense layers, deepseek2 only
    (default 1 when ``n_layer >= 2``); see :func:`moe_layer_ids`. ``tie_embeddings``: write no
    ``output.weight`` (llama.cpp then uses ``token_embd`` as the lm head; archs in
    :data:`TIED_ARCHS`).
    ``weights``: ``{tensor name: array}`` replacing the seeded init of those tensors; shapes are
    listed in the module docstring and by :func:`tensor_shapes` (unknown names or wrong shapes
    raise ``ValueError``). ``dtype``: ``"f32"`` or ``"f16"`` for the matrices (norms, biases and
    routers stay f32). ``chat_template``: a Jinja chat template stored as
    ``tokenizer.chat_template``. Same arguments -> byte-identical file.
    """
    import gguf

    vocab = vocab or default_vocab()
    if dtype not in ("f32", "f16"):
        raise ValueError("dtype must be 'f32' or 'f16'")
    c = _config(arch, int(n_layer), int(n_embd), int(n_head), n_head_kv, int(n_ff), int(n_expert),
                int(n_expert_used), n_ff_shared, n_dense_lead, vocab.n_vocab, tie_embeddings)
    plan = _plan(c)
    given = dict(weights or {})
    unknown = sorted(set(given) - set(plan))
    if unknown:
        raise ValueError(f"weights for tensors this model does not have: {', '.join(unknown[:5])}")

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    w = gguf.GGUFWriter(str(path), arch)
    _write_kv(w, c, vocab, n_ctx_train=int(n_ctx_train), rope_theta=float(rope_theta), dtype=dtype,
              name=name or f"cascade-factory {arch} {n_layer}L {n_embd}d "
              + (f"{n_expert}x{n_ff} top{c.n_expert_used}" if n_expert else f"dense {n_ff}"))
    if chat_template is not None:
        w.add_chat_template(chat_template)
    for tname, (shape, kind) in plan.items():
        if tname in given:
            arr = np.asarray(_to_numpy(given[tname]))
            if tuple(arr.shape) != shape:
                raise ValueError(f"{tname}: shape {tuple(arr.shape)}, expected {shape}")
            if not np.all(np.isfinite(arr)):
                raise ValueError(f"{tname}: contains NaN or inf")
            arr = arr.astype(np.float32)
        else:
            arr = _init(tname, shape, kind, seed)
        if dtype == "f16" and not _keep_f32(tname, shape):
            arr = arr.astype(np.float16)
        w.add_tensor(tname, np.ascontiguousarray(arr))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def _to_numpy(x):
    if hasattr(x, "detach"):  # torch tensor, without importing torch
        x = x.detach().float().cpu().numpy()
    return x


def _write_kv(w, c: _Config, vocab: BPEVocab, *, n_ctx_train: int, rope_theta: float, dtype: str,
              name: str) -> None:
    import gguf

    w.add_name(name)
    w.add_file_type(gguf.LlamaFileType.MOSTLY_F16 if dtype == "f16" else gguf.LlamaFileType.ALL_F32)
    w.add_vocab_size(vocab.n_vocab)
    w.add_context_length(n_ctx_train)
    w.add_embedding_length(c.n_embd)
    w.add_block_count(c.n_layer)
    w.add_feed_forward_length(c.n_ff)
    w.add_head_count(c.n_head)
    w.add_head_count_kv(c.n_head_kv)
    w.add_rope_freq_base(rope_theta)
    w.add_layer_norm_rms_eps(NORM_EPS)
    if c.arch == "deepseek2":
        w.add_key_length(c.head_dim)
        w.add_value_length(c.head_dim_v)
        w.add_rope_dimension_count(c.n_rot)
        w.add_q_lora_rank(0)
        w.add_kv_lora_rank(c.kv_lora_rank)
        w.add_leading_dense_block_count(c.n_dense_lead)
        w.add_expert_shared_count(c.n_ff_shared // c.n_ff)
        w.add_expert_weights_scale(1.0)
        w.add_expert_weights_norm(False)
        w.add_expert_gating_func(gguf.ExpertGatingFuncType.SOFTMAX)
    else:
        w.add_rope_dimension_count(c.head_dim)
    if c.n_expert:
        w.add_expert_count(c.n_expert)
        w.add_expert_used_count(c.n_expert_used)
        if c.arch != "llama":
            w.add_expert_feed_forward_length(c.n_ff)
        if c.arch == "qwen2moe":
            w.add_expert_shared_feed_forward_length(c.n_ff_shared)
    if c.arch == "gpt-oss":
        w.add_sliding_window(c.sliding_window)
    # tokenizer: GPT-2 byte-level BPE
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("gpt-2")
    w.add_token_list(list(vocab.tokens))
    specials = set(vocab.special_ids)
    w.add_token_types([_TOKEN_CONTROL if i in specials else _TOKEN_NORMAL for i in range(vocab.n_vocab)])
    w.add_token_merges(list(vocab.merges))
    w.add_bos_token_id(vocab.bos_id)
    w.add_eos_token_id(vocab.eos_id)
    w.add_add_bos_token(True)
    w.add_add_eos_token(False)
