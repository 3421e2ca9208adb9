"""A local transformers checkpoint directory, read without torch: validation (one-line errors),
``config.json`` facts, safetensors headers, and the tokenizer's token bytes.

Nothing here imports torch or transformers, so ``cascade-tui inspect DIR`` and the checks that
refuse a broken directory cost milliseconds. Only local files are ever read.
"""

from __future__ import annotations

import json
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path

from backends.base import BackendError

#: Families whose routing capture, rollback and greedy equivalence are tested here
#: (tests/test_torch_backend.py), by ``config.json``'s ``model_type``.
TESTED_MOE = ("mixtral", "qwen2_moe", "qwen3_moe", "olmoe")
#: Further MoE families measured to work the same way with transformers 5.24.0 (greedy
#: equivalence with tiny random models, routing from the experts module); the first five are
#: also in the tests. Families whose MoE blocks call no experts module with ``top_k_index``
#: (jetmoe, llama4) run without routing, with a note.
ALSO_WORKING_MOE = ("phimoe", "deepseek_v2", "gpt_oss", "granitemoe", "glm4_moe", "glm4_moe_lite", "minimax_m2",
                    "ernie4_5_moe", "hunyuan_v1_moe", "flex_olmo", "dots1", "exaone_moe", "cohere2_moe",
                    "sarvam_moe", "afmoe")
#: Dense causal LMs that work as drafters (or as a target, without routing).
DENSE_OK = ("llama", "mistral", "qwen2", "qwen3", "olmo", "olmo2", "gemma", "phi3")
#: Families whose cache is not a plain KV cache (linear attention / state-space layers): a
#: speculative rollback cannot be done by cropping, so they are refused.
NOT_CROPPABLE = ("qwen3_next", "qwen3_5_moe", "jamba", "granitemoehybrid", "lfm2_moe", "bailing_hybrid",
                 "minimax", "falcon_h1", "mamba", "mamba2", "zamba", "zamba2", "bamba", "rwkv", "recurrent_gemma")

_EXPERT_COUNT_KEYS = ("num_local_experts", "num_experts", "n_routed_experts", "moe_num_experts")
_EXPERT_USED_KEYS = ("num_experts_per_tok", "moe_k", "top_k", "num_selected_experts")


@dataclass
class Checkpoint:
    """What a checkpoint directory holds (validated by :func:`open_checkpoint`)."""

    path: Path
    config: dict
    weight_files: list[Path]
    tokenizer_file: Path | None
    file_size: int
    n_params: int
    tensor_names: set[str] = field(default_factory=set)

    @property
    def model_type(self) -> str:
        return str(self.config.get("model_type") or "")

    @property
    def text_config(self) -> dict:
        """The language model's config (multimodal configs nest it)."""
        tc = self.config.get("text_config")
        return tc if isinstance(tc, dict) else self.config

    def n_expert(self) -> int:
        return _first_int(self.text_config, _EXPERT_COUNT_KEYS)

    def n_expert_used(self) -> int:
        return _first_int(self.text_config, _EXPERT_USED_KEYS)


def _first_int(cfg: dict, keys) -> int:
    for k in keys:
        v = cfg.get(k)
        if isinstance(v, int) and not isinstance(v, bool) and v > 0:
            return v
    return 0


def _safetensors_header(f: Path) -> tuple[dict, int]:
    """(header, expected file size) of a safetensors file; BackendError if it is not one or is cut."""
    try:
        size = f.stat().st_size
        with open(f, "rb") as fh:
            head = fh.read(8)
            if len(head) < 8:
                raise ValueError("too short")
            (n,) = struct.unpack("<Q", head)
            if n <= 0 or n > min(size - 8, 100 * 2**20):
                raise ValueError("bad header length")
            header = json.loads(fh.read(n))
    except (OSError, ValueError, UnicodeDecodeError) as e:
        raise BackendError(f"{f.name} is not a readable safetensors file ({e})") from None
    end = 0
    for name, meta in header.items():
        if name == "__metadata__":
            continue
        try:
            end = max(end, int(meta["data_offsets"][1]))
        except (KeyError, TypeError, ValueError, IndexError):
            raise BackendError(f"{f.name} is not a readable safetensors file (tensor {name!r})") from None
    return header, 8 + n + end


def _n_elements(meta: dict) -> int:
    n = 1
    for d in meta.get("shape", []):
        n *= int(d)
    return n


def open_checkpoint(path: str | os.PathLike) -> Checkpoint:
    """Validate a local checkpoint directory; one-line BackendError for anything wrong with it."""
    p = Path(path).expanduser()
    if not p.exists():
        raise BackendError(f"{path}: no such directory (the torch backend loads a local transformers checkpoint)")
    if not p.is_dir():
        raise BackendError(
            f"{path} is a file; the torch backend loads a transformers checkpoint directory "
            "(config.json + *.safetensors); use --backend llama for a GGUF file"
        )
    cfg_file = p / "config.json"
    if not cfg_file.is_file():
        raise BackendError(f"{path} is not a transformers checkpoint: config.json is missing")
    try:
        config = json.loads(cfg_file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise BackendError(f"{cfg_file}: not valid JSON ({e})") from None
    if not isinstance(config, dict):
        raise BackendError(f"{cfg_file}: not a JSON object")
    if not config.get("model_type"):
        raise BackendError(f"{cfg_file} names no model_type, so the architecture is unknown")

    index = p / "model.safetensors.index.json"
    if index.is_file():
        try:
            wmap = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
            shards = sorted(set(wmap.values()))
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
            raise BackendError(f"{index.name} in {path} is damaged ({e})") from None
        missing = [s for s in shards if not (p / s).is_file()]
        if missing:
            raise BackendError(
                f"{path}: incomplete checkpoint: {missing[0]} is missing"
                + (f" (and {len(missing) - 1} more shards)" if len(missing) > 1 else "")
                + f" (listed in {index.name})"
            )
        files = [p / s for s in shards]
    else:
        files = sorted(p.glob("*.safetensors"))
    if not files:
        other = [f.name for f in p.iterdir() if f.suffix in (".bin", ".pt", ".pth", ".gguf")]
        hint = f" (found {other[0]}: only safetensors weights are loaded)" if other else ""
        raise BackendError(f"{path}: no *.safetensors weights{hint}")
    total = 0
    n_params = 0
    names: set[str] = set()
    for f in files:
        header, expected = _safetensors_header(f)
        size = f.stat().st_size
        if size < expected:
            raise BackendError(f"{path}: incomplete checkpoint: {f.name} is truncated ({size} of {expected} bytes)")
        total += size
        for name, meta in header.items():
            if name != "__metadata__":
                names.add(name)
                n_params += _n_elements(meta)
    tok = p / "tokenizer.json"
    return Checkpoint(p.resolve(), config, files, tok if tok.is_file() else None, total, n_params, names)


# -- tokenizer bytes ---------------------------------------------------------------------------


def _byte_decoder() -> dict[str, int]:
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {chr(c): b for b, c in zip(bs, cs)}


def _mentions(node, kind: str) -> bool:
    if isinstance(node, dict):
        return node.get("type") == kind or any(_mentions(v, kind) for v in node.values())
    if isinstance(node, list):
        return any(_mentions(v, kind) for v in node)
    return False


def token_pieces(tokenizer_json: dict, id_to_token, n: int, added: dict[int, str]) -> list[bytes]:
    """Bytes of tokens ``0..n-1`` as llama.cpp renders them (``llama_token_to_piece`` with
    special=True): byte-level BPE tokens decoded from GPT-2's byte alphabet, SentencePiece tokens
    with ``▁`` as a space and ``<0xAB>`` as that byte, added/special tokens as their text, ids the
    tokenizer does not know (padding rows of the embedding) as empty."""
    byte_level = _mentions(tokenizer_json.get("decoder"), "ByteLevel") or _mentions(
        tokenizer_json.get("pre_tokenizer"), "ByteLevel")
    dec = _byte_decoder()
    out: list[bytes] = []
    for i in range(n):
        if i in added:
            out.append(added[i].encode("utf-8"))
            continue
        t = id_to_token(i)
        if t is None:
            out.append(b"")
        elif byte_level:
            try:
                out.append(bytes(dec[c] for c in t))
            except KeyError:
                out.append(t.encode("utf-8"))
        elif len(t) == 6 and t.startswith("<0x") and t.endswith(">"):
            try:
                out.append(bytes([int(t[3:5], 16)]))
            except ValueError:
                out.append(t.encode("utf-8"))
        else:
            out.append(t.replace("▁", " ").encode("utf-8"))
    return out


def n_layers(cfg: dict) -> int:
    return _first_int(cfg, ("num_hidden_layers", "n_layer", "num_layers"))


def moe_layer_ids(cfg: dict) -> tuple[int, ...]:
    """MoE layers predicted from the config alone (``inspect``); the loaded model's modules decide
    for real. Handles Qwen2-MoE's ``decoder_sparse_step``/``mlp_only_layers`` and DeepSeek's
    ``first_k_dense_replace``."""
    n = n_layers(cfg)
    if not _first_int(cfg, _EXPERT_COUNT_KEYS):
        return ()
    step = cfg.get("decoder_sparse_step") or 1
    only_mlp = set(cfg.get("mlp_only_layers") or [])
    first_dense = int(cfg.get("first_k_dense_replace") or 0)
    return tuple(i for i in range(n)
                 if i not in only_mlp and i >= first_dense and (i + 1) % step == 0)
