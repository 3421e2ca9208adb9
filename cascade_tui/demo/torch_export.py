"""The demo pair as transformers checkpoints, written from the bundled GGUF files.

The GGUFs (``cascade_tui/demo/target.gguf``, ``draft.gguf``; arch ``llama``, trained by
``scripts/train_demo.py``) become a ``MixtralForCausalLM`` (the MoE target) and a
``LlamaForCausalLM`` (the dense drafter) with the very same weights:

* tensors are copied in their GGUF dtype (F16 weights, F32 norms and router), so loading with
  ``dtype=float32`` gives exactly the values llama.cpp holds;
* llama.cpp's ``llama`` RoPE rotates adjacent pairs (GGML "norm" mode) while HF rotates halves
  (``rotate_half``): the q/k rows are put back through the inverse of
  :func:`cascade_tui.factory.permute_qk` (the permutation llama.cpp's converter applies);
* the experts' gate and up matrices are stacked into transformers 5's ``gate_up_proj``;
* the output head stays tied to the embedding (``tie_word_embeddings``);
* the tokenizer is the GGUF's own byte-level BPE (tokens + merges), adding BOS as llama.cpp does.

The pair is too big to ship twice in the wheel (14 MB), so :func:`demo_paths` writes it on first
use into the user cache (``backends.cache``), offline, keyed by the GGUF's sha256. Needs only numpy,
gguf, safetensors and tokenizers (no torch). ``scripts/export_demo_torch.py`` writes it anywhere.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable

import numpy as np

from backends.base import BackendError
from cascade_tui.fileid import sha256_file

EXPORT_VERSION = 1
_MARKER = "cascade-export.json"


def inverse_permute_qk(w: np.ndarray, n_head: int) -> np.ndarray:
    """Undo :func:`cascade_tui.factory.permute_qk`: llama.cpp ``llama`` q/k rows -> HF rotate_half."""
    w = np.asarray(w)
    shape = w.shape
    return w.reshape(n_head, shape[0] // n_head // 2, 2, *shape[1:]).swapaxes(1, 2).reshape(shape)


def _field(reader, key, default=None):
    f = reader.fields.get(key)
    if f is None:
        return default
    try:
        return f.contents()
    except Exception:
        return default


def export_gguf(gguf_path: str | os.PathLike, out_dir: str | os.PathLike) -> Path:
    """Write the ``llama``-arch GGUF ``gguf_path`` (dense, or Mixtral-style MoE) as a transformers
    checkpoint directory ``out_dir`` (config.json, model.safetensors, tokenizer files)."""
    try:
        from gguf import GGUFReader
        from safetensors.numpy import save_file
        import tokenizers  # noqa: F401  (write_tokenizer)
    except ImportError as e:
        raise BackendError(f"exporting the demo for the torch backend needs {e.name or e}; install the torch extra "
                           'with `pip install "cascade-tui[torch]"`') from None

    from cascade_tui.factory.tokenizer import BPEVocab

    src = Path(gguf_path)
    try:
        r = GGUFReader(str(src))
    except Exception as e:
        raise BackendError(f"cannot read {src}: {e}") from None
    arch = _field(r, "general.architecture")
    if arch != "llama":
        raise BackendError(f"{src.name}: only arch 'llama' GGUFs are exported (this one is {arch!r})")
    a = lambda k, d=None: _field(r, f"llama.{k}", d)  # noqa: E731
    n_layer, n_embd = int(a("block_count")), int(a("embedding_length"))
    n_head, n_head_kv = int(a("attention.head_count")), int(a("attention.head_count_kv", a("attention.head_count")))
    n_ff, n_expert, n_used = int(a("feed_forward_length")), int(a("expert_count", 0) or 0), int(a("expert_used_count", 0) or 0)
    head_dim = n_embd // n_head
    if int(a("rope.dimension_count", head_dim)) != head_dim:
        raise BackendError(f"{src.name}: partial RoPE is not supported by the exporter")
    tensors = {t.name: np.array(t.data) for t in r.tensors}

    out: dict[str, np.ndarray] = {}
    out["model.embed_tokens.weight"] = tensors["token_embd.weight"]
    out["model.norm.weight"] = tensors["output_norm.weight"]
    tied = "output.weight" not in tensors
    if not tied:
        out["lm_head.weight"] = tensors["output.weight"]
    for i in range(n_layer):
        b, h = f"blk.{i}.", f"model.layers.{i}."
        out[h + "input_layernorm.weight"] = tensors[b + "attn_norm.weight"]
        out[h + "post_attention_layernorm.weight"] = tensors[b + "ffn_norm.weight"]
        out[h + "self_attn.q_proj.weight"] = inverse_permute_qk(tensors[b + "attn_q.weight"], n_head)
        out[h + "self_attn.k_proj.weight"] = inverse_permute_qk(tensors[b + "attn_k.weight"], n_head_kv)
        out[h + "self_attn.v_proj.weight"] = tensors[b + "attn_v.weight"]
        out[h + "self_attn.o_proj.weight"] = tensors[b + "attn_output.weight"]
        if n_expert:
            out[h + "mlp.gate.weight"] = tensors[b + "ffn_gate_inp.weight"]
            gate, up = tensors[b + "ffn_gate_exps.weight"], tensors[b + "ffn_up_exps.weight"]  # [E, f, d]
            out[h + "mlp.experts.gate_up_proj"] = np.concatenate([gate, up], axis=1)
            out[h + "mlp.experts.down_proj"] = tensors[b + "ffn_down_exps.weight"]  # [E, d, f]
        else:
            out[h + "mlp.gate_proj.weight"] = tensors[b + "ffn_gate.weight"]
            out[h + "mlp.up_proj.weight"] = tensors[b + "ffn_up.weight"]
            out[h + "mlp.down_proj.weight"] = tensors[b + "ffn_down.weight"]
    out = {k: np.ascontiguousarray(v) for k, v in out.items()}

    tokens = [str(t) for t in _field(r, "tokenizer.ggml.tokens")]
    merges = [str(m) for m in (_field(r, "tokenizer.ggml.merges") or [])]
    types = list(_field(r, "tokenizer.ggml.token_type") or [])
    eos = int(_field(r, "tokenizer.ggml.eos_token_id"))
    bos = int(_field(r, "tokenizer.ggml.bos_token_id", eos))
    add_bos = bool(_field(r, "tokenizer.ggml.add_bos_token", True))
    specials = tuple(i for i, t in enumerate(types) if int(t) == 3)
    vocab = BPEVocab(tokens=tuple(tokens), merges=tuple(merges), eos_id=eos, bos_id=bos, special_ids=specials)
    n_vocab = len(tokens)
    rope_theta = float(a("rope.freq_base", 10000.0))
    eps = float(a("attention.layer_norm_rms_epsilon", 1e-5))
    common = {
        "vocab_size": n_vocab, "hidden_size": n_embd, "intermediate_size": n_ff, "num_hidden_layers": n_layer,
        "num_attention_heads": n_head, "num_key_value_heads": n_head_kv, "head_dim": head_dim,
        "hidden_act": "silu", "max_position_embeddings": int(a("context_length", 2048)), "rms_norm_eps": eps,
        "rope_parameters": {"rope_type": "default", "rope_theta": rope_theta}, "rope_theta": rope_theta,
        "tie_word_embeddings": tied, "bos_token_id": bos, "eos_token_id": eos, "attention_bias": False,
        "attention_dropout": 0.0, "use_cache": True, "dtype": "float16",
    }
    if n_expert:
        config = {"architectures": ["MixtralForCausalLM"], "model_type": "mixtral", **common,
                  "num_local_experts": n_expert, "num_experts_per_tok": n_used, "sliding_window": None,
                  "router_jitter_noise": 0.0, "router_aux_loss_coef": 0.0, "output_router_logits": False}
    else:
        config = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", **common, "mlp_bias": False}

    dst = Path(out_dir)
    dst.mkdir(parents=True, exist_ok=True)
    save_file(out, str(dst / "model.safetensors"), metadata={"format": "pt"})
    os.chmod(dst / "model.safetensors", 0o644)
    (dst / "config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    (dst / "generation_config.json").write_text(
        json.dumps({"bos_token_id": bos, "eos_token_id": eos}, indent=2) + "\n", encoding="utf-8")
    template = _field(r, "tokenizer.chat_template")
    write_tokenizer(dst, vocab, add_bos=add_bos, model_max_length=int(a("context_length", 2048)),
                    chat_template=template if isinstance(template, str) and template.strip() else None)
    return dst


def write_tokenizer(dst: str | os.PathLike, vocab, *, add_bos: bool = True, model_max_length: int = 2048,
                    chat_template: str | None = None) -> None:
    """Write ``tokenizer.json`` + ``tokenizer_config.json`` for a factory :class:`BPEVocab`: the same
    byte-level BPE llama.cpp runs for a GGUF of that vocabulary, special tokens parsed, BOS added
    (``add_bos``) as llama.cpp does."""
    from tokenizers import Tokenizer, processors

    from cascade_tui.factory.tokenizer import hf_tokenizer

    dst = Path(dst)
    tok = Tokenizer.from_str(hf_tokenizer(vocab, special=True).to_str())  # a copy: the factory's is cached
    bos = vocab.tokens[vocab.bos_id]
    if add_bos:
        tok.post_processor = processors.TemplateProcessing(
            single=f"{bos} $A", pair=f"{bos} $A {bos} $B", special_tokens=[(bos, vocab.bos_id)])
    tok.save(str(dst / "tokenizer.json"))
    tcfg = {"tokenizer_class": "PreTrainedTokenizerFast", "bos_token": bos, "eos_token": vocab.tokens[vocab.eos_id],
            "add_bos_token": add_bos, "add_eos_token": False, "clean_up_tokenization_spaces": False,
            "model_max_length": model_max_length}
    if chat_template:
        tcfg["chat_template"] = chat_template
    (dst / "tokenizer_config.json").write_text(json.dumps(tcfg, indent=2) + "\n", encoding="utf-8")


def _exported(gguf: Path, parent: Path, name: str, progress: Callable[[str], None] | None) -> Path:
    sha = sha256_file(gguf)
    dst = parent / f"cascade-demo-{name}-{sha[:12]}"  # the name the TUI and recordings show
    marker = dst / _MARKER
    try:
        m = json.loads(marker.read_text(encoding="utf-8"))
        if m.get("sha256") == sha and m.get("version") == EXPORT_VERSION:
            return dst
    except (OSError, ValueError):
        pass
    if progress:
        progress(f"exporting the demo {name} to a transformers checkpoint (first use)")
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=parent))
    try:
        export_gguf(gguf, tmp)
        (tmp / _MARKER).write_text(json.dumps({"source": str(gguf), "sha256": sha, "version": EXPORT_VERSION}),
                                   encoding="utf-8")
        if dst.exists():
            shutil.rmtree(dst, ignore_errors=True)
        try:
            os.replace(tmp, dst)
        except OSError:
            if not (dst / _MARKER).is_file():  # not another process's finished export
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dst


def demo_paths(progress: Callable[[str], None] | None = None) -> tuple[Path, Path]:
    """(target dir, drafter dir): the demo pair as transformers checkpoints in the user cache,
    exported from the bundled GGUFs the first time (and again whenever a GGUF changes)."""
    from backends.cache import writable_cache_dir
    from cascade_tui.demo import demo_draft_path, demo_target_path

    try:
        target, draft = demo_target_path(), demo_draft_path()
    except FileNotFoundError as e:
        raise BackendError(str(e)) from None
    parent = writable_cache_dir("torch-demo")
    if parent is None:
        raise BackendError("no writable cache directory for the torch demo checkpoints (set CASCADE_TUI_CACHE)")
    try:
        return _exported(target, parent, "target", progress), _exported(draft, parent, "draft", progress)
    except OSError as e:
        raise BackendError(f"cannot write the torch demo checkpoints under {parent}: {e}") from None
