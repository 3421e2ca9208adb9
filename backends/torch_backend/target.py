"""The torch :class:`backends.base.Target`: a local transformers checkpoint with per-position logits,
KV rollback through ``DynamicCache.crop`` and per-token expert routing from the MoE blocks.

Routing: a forward pre-hook on every layer's ``experts`` module (transformers 5.x calls it as
``experts(hidden_states, top_k_index, top_k_weights)`` in every MoE family) records
``top_k_index``, the experts the router chose for each token: the same ``[n_moe_layers, n, k]``
int32 array the llama.cpp backend reads from ``ffn_moe_topk``.

Only local files: the offline switches are set before transformers is imported, and every
``from_pretrained`` gets ``local_files_only=True`` and ``trust_remote_code=False``.
"""

from __future__ import annotations

import os

# never reach a model hub, whatever the environment says (set before transformers is imported)
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

import inspect
import json
import warnings
from pathlib import Path
from typing import Sequence

import numpy as np

from backends.base import (BackendError, EvalResult, ModelInfo, PieceVocab, check_new_tokens, check_vocab_compatible,
                           default_threads, vocab_fingerprint)
from backends.model_drafter import ModelDrafter
from backends.torch_backend import checkpoint as ckpt

INSTALL_HINT = 'pip install "cascade-tui[torch]" (torch==2.13.0 and transformers)'
DTYPES = ("float32", "bfloat16", "float16")
DEVICES = ("auto", "cpu", "cuda")


def _import_torch():
    try:
        import torch
        import transformers
    except ImportError as e:
        raise BackendError(f"the torch backend needs torch and transformers ({e}); install them with `{INSTALL_HINT}`") from None
    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    return torch, transformers


def resolve_device(device: str | None, torch) -> str:
    d = (device or "auto").strip().lower()
    if d not in DEVICES and not d.startswith("cuda:"):
        raise BackendError(f"unknown device {device!r} (choose {', '.join(DEVICES)})")
    if d == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if d.startswith("cuda") and not torch.cuda.is_available():
        raise BackendError(f"--device {d}: this torch ({torch.__version__}) sees no CUDA GPU; use --device cpu")
    return d


def resolve_dtype(dtype: str | None, device: str, torch):
    if dtype is None or str(dtype).strip().lower() in ("", "auto"):
        name = "float32" if device == "cpu" else "bfloat16"
    else:
        name = str(dtype).strip().lower()
        name = {"fp32": "float32", "f32": "float32", "bf16": "bfloat16", "fp16": "float16", "f16": "float16",
                "half": "float16"}.get(name, name)
        if name not in DTYPES:
            raise BackendError(f"unknown dtype {dtype!r} (choose {', '.join(DTYPES)})")
    return name, getattr(torch, name)


def _first_line(e: BaseException) -> str:
    s = str(e).strip().splitlines()
    return s[0] if s else type(e).__name__


def _find_layers(model, n_layer: int):
    """The decoder layers (``model.model.layers`` in every family; else the first ModuleList of
    ``n_layer`` modules)."""
    inner = getattr(model, "model", None)
    layers = getattr(inner, "layers", None)
    if layers is not None and len(layers) == n_layer:
        return layers
    import torch

    for _, mod in model.named_modules():
        if isinstance(mod, torch.nn.ModuleList) and len(mod) == n_layer:
            return mod
    return None


def _takes_top_k_index(mod) -> bool:
    try:
        params = inspect.signature(type(mod).forward).parameters
    except (TypeError, ValueError):
        return False
    return "top_k_index" in params or "router_indices" in params or "selected_experts" in params


def _experts_of(layer):
    """(experts module, router module or None) of one decoder layer, or (None, None) if dense."""
    for name, mod in layer.named_modules():
        last = name.rsplit(".", 1)[-1]
        if last == "experts" and _takes_top_k_index(mod):
            parent = layer.get_submodule(name.rsplit(".", 1)[0]) if "." in name else layer
            return mod, getattr(parent, "gate", None) or getattr(parent, "router", None)
    return None, None


class _Capture:
    """Per-layer top-k indices (and router probabilities) of the current forward."""

    def __init__(self, n_moe: int, want_probs: bool):
        self.idx: list[list] = [[] for _ in range(n_moe)]
        self.probs: list[list] = [[] for _ in range(n_moe)]
        self.want_probs = want_probs
        self.enabled = True

    def reset(self) -> None:
        for lst in self.idx:
            lst.clear()
        for lst in self.probs:
            lst.clear()

    def index_hook(self, j: int):
        def hook(mod, args, kwargs):
            if not self.enabled:
                return None
            ix = kwargs.get("top_k_index")
            if ix is None and len(args) > 1:
                ix = args[1]
            if ix is not None:
                self.idx[j].append(ix.detach())
            return None

        return hook

    def probs_hook(self, j: int):
        def hook(mod, args, output):
            if not (self.enabled and self.want_probs):
                return None
            logits = output[0] if isinstance(output, tuple) else output
            import torch

            self.probs[j].append(torch.softmax(logits.detach().float(), dim=-1))
            return None

        return hook


class TorchTarget(PieceVocab):
    """A transformers causal LM as a Target. Build it with :func:`load_target`. One thread at a time."""

    def __init__(self) -> None:  # use load_target()
        self._model = None
        self._closed = True

    # -- protocol ------------------------------------------------------------------------------
    @property
    def n_ctx(self) -> int:
        return self._n_ctx

    @property
    def n_past(self) -> int:
        return self._n_past

    @property
    def eos_ids(self) -> frozenset[int]:
        return self._eos_ids

    @property
    def token_pieces(self) -> list[bytes]:
        return self._pieces

    @property
    def routing_enabled(self) -> bool:
        return self._capture is not None and self._capture.enabled

    def set_routing(self, on: bool) -> None:
        if self._capture is None:
            if on:
                raise BackendError("routing capture was not enabled when this model was loaded")
            return
        self._capture.enabled = bool(on)

    def tokenize(self, text: str, add_bos: bool = True, special: bool = True) -> list[int]:
        """Token ids of ``text``; the BOS the tokenizer adds by itself is added when ``add_bos``.
        ``special``: special-token text such as ``<|im_start|>`` becomes its id."""
        self._live()
        tok = self._tok
        if special:
            ids = tok.encode(text, add_special_tokens=False)
        else:
            ids = tok.encode(text, add_special_tokens=False, split_special_tokens=True)
        ids = [int(i) for i in ids]
        if add_bos and self._bos_prefix:
            ids = list(self._bos_prefix) + ids
        return ids

    def eval(self, tokens: Sequence[int]) -> EvalResult:
        self._live()
        torch = self._torch
        n_vocab = self.info.n_vocab
        toks = np.asarray(check_new_tokens(tokens, self._n_past, self._n_ctx, n_vocab), dtype=np.int64)
        n = int(toks.size)
        cap = self._capture
        capturing = cap is not None and cap.enabled
        n_moe = len(self.info.moe_layers)
        k = self.info.n_expert_used
        if n == 0:
            routing = np.zeros((n_moe, 0, k), np.int32) if capturing else None
            return EvalResult(np.zeros((0, n_vocab), np.float32), routing)
        if capturing:
            cap.reset()
        start = self._n_past
        ids = torch.from_numpy(toks).to(self._device).view(1, n)
        try:
            with torch.inference_mode():
                out = self._model(input_ids=ids, **{self._cache_kw: self._cache}, use_cache=True)
                logits = out.logits[0].float().cpu().numpy()
        except Exception as e:
            self._rollback(start)
            raise BackendError(f"{self.info.arch}: the forward pass failed: {_first_line(e)}") from None
        self._n_past = start + n
        if logits.shape != (n, n_vocab):
            logits = np.ascontiguousarray(logits[:, :n_vocab])
        routing = None
        if capturing:
            routing = self._collect(cap, n, k)
        return EvalResult(logits, routing)

    def _collect(self, cap: _Capture, n: int, k: int) -> np.ndarray | None:
        torch = self._torch
        try:
            per_layer = [torch.cat(parts, 0).reshape(-1, parts[0].shape[-1]) for parts in cap.idx]
            if any(r.shape != (n, k) for r in per_layer):
                raise ValueError(f"captured {[tuple(r.shape) for r in per_layer]}, expected ({n}, {k}) per layer")
            routing = torch.stack(per_layer).to(torch.int32).cpu().numpy()
        except (ValueError, RuntimeError, IndexError) as e:
            self.routing_error = f"routing capture failed: {_first_line(e)}"
            return None
        if cap.want_probs:
            try:
                self.last_router_probs = torch.stack(
                    [torch.cat(p, 0).reshape(n, -1) for p in cap.probs]).cpu().numpy()
            except (ValueError, RuntimeError, IndexError):
                self.last_router_probs = None
        return routing

    def truncate(self, n_keep: int) -> None:
        self._live()
        n_keep = int(n_keep)
        if not 0 <= n_keep <= self._n_past:
            raise BackendError(f"cannot keep {n_keep} tokens: the cache holds {self._n_past}")
        if n_keep == self._n_past:
            return
        self._rollback(n_keep)

    def _rollback(self, n_keep: int) -> None:
        torch = self._torch
        if n_keep == 0:
            self._cache = self._new_cache()
        else:
            # layer by layer: after a failed forward some layers may hold more tokens than others
            layers = getattr(self._cache, "layers", None) or []
            try:
                with torch.inference_mode():
                    for layer in layers:
                        have = layer.get_seq_length()
                        if have > n_keep:
                            layer.crop(n_keep - have)  # a negative count removes that many tokens
                    if not layers and self._cache.get_seq_length() > n_keep:
                        self._cache.crop(n_keep - self._cache.get_seq_length())
            except Exception as e:
                raise BackendError(f"{self.info.arch}: this model's cache cannot be rolled back ({_first_line(e)})") from None
            if self._cache.get_seq_length() != n_keep:
                raise BackendError(f"{self.info.arch}: this model's cache cannot be rolled back")
        self._n_past = n_keep

    def close(self) -> None:
        if getattr(self, "_closed", True):
            return
        self._closed = True
        for h in getattr(self, "_hooks", []):
            h.remove()
        self._hooks = []
        self._model = self._cache = None

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"n_past={self._n_past}/{self._n_ctx}"
        return f"<TorchTarget {Path(self.info.path).name} {self.info.arch} {self._device} {state}>"

    def _live(self) -> None:
        if self._closed:
            raise BackendError("this model has been closed")


def _eos_ids(ck: ckpt.Checkpoint, tok, n_vocab: int) -> frozenset[int]:
    ids: set[int] = set()

    def add(v):
        if isinstance(v, int) and not isinstance(v, bool):
            ids.add(v)
        elif isinstance(v, (list, tuple)):
            for x in v:
                add(x)

    add(ck.text_config.get("eos_token_id"))
    gen = ck.path / "generation_config.json"
    if gen.is_file():
        try:
            add(json.loads(gen.read_text(encoding="utf-8")).get("eos_token_id"))
        except (OSError, ValueError, AttributeError):
            pass
    add(getattr(tok, "eos_token_id", None))
    return frozenset(i for i in ids if 0 <= i < n_vocab)


def load_target(
    path: str | os.PathLike,
    *,
    n_ctx: int = 2048,
    n_threads: int | None = None,
    n_gpu_layers: int | None = None,  # llama.cpp's; --device decides here
    routing: bool | str = True,
    seed: int = 0,
    device: str | None = "auto",
    dtype: str | None = None,
    attn_implementation: str = "sdpa",
    experts_implementation: str | None = None,
    capture_probs: bool = False,
    **_ignored,
) -> TorchTarget:
    """Load a local transformers checkpoint directory for verification (or drafting).

    ``device``: cpu, cuda or auto (cuda when torch sees a GPU); ``dtype``: float32 (the default on
    CPU), bfloat16 (the default on CUDA) or float16. ``routing``: capture the experts each token
    is routed to (False: no hooks at all). ``experts_implementation``: transformers' expert
    kernel, ``eager`` on CPU and ``grouped_mm`` on CUDA unless given (never ``batched_mm``).
    ``capture_probs`` keeps the router probabilities of each eval in ``last_router_probs``
    (``[n_moe_layers, n, n_expert]``; tests and the cross-backend check).
    """
    ck = ckpt.open_checkpoint(path)
    mt = ck.model_type
    if n_ctx is None or int(n_ctx) < 1:
        raise BackendError(f"context size must be at least 1, not {n_ctx}")
    n_threads = default_threads() if n_threads is None else int(n_threads)
    if n_threads < 1:
        raise BackendError(f"thread count must be at least 1, not {n_threads}")
    if mt in ckpt.NOT_CROPPABLE:
        raise BackendError(
            f"{ck.path.name}: architecture '{mt}' is not supported by the torch backend: its cache holds "
            "recurrent/linear-attention state that cannot be rolled back for speculative decoding"
        )
    if routing not in (True, False, None, "auto", "off", "python", "native"):
        raise BackendError(f"routing must be True or False, not {routing!r}")
    want_routing = routing not in (False, None, "off")
    torch, transformers = _import_torch()
    dev = resolve_device(device, torch)
    dtype_name, torch_dtype = resolve_dtype(dtype, dev, torch)
    if dev == "cpu":
        torch.set_num_threads(n_threads)
    torch.manual_seed(int(seed))

    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            config = AutoConfig.from_pretrained(ck.path, local_files_only=True, trust_remote_code=False)
        except (ValueError, KeyError) as e:
            msg = _first_line(e)
            if "does not recognize this architecture" in msg or "model type" in msg or isinstance(e, KeyError):
                raise BackendError(
                    f"{ck.path.name}: transformers {transformers.__version__} does not support the architecture "
                    f"'{mt}' (custom model code is never run)"
                ) from None
            raise BackendError(f"{ck.path.name}: config.json cannot be read by transformers: {msg}") from None
        except OSError as e:
            raise BackendError(f"{ck.path.name}: config.json cannot be read: {_first_line(e)}") from None
        if mt not in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES:
            raise BackendError(
                f"{ck.path.name}: architecture '{mt}' is not a causal language model transformers "
                f"{transformers.__version__} can run (the torch backend needs *ForCausalLM)"
            )
        if ck.tokenizer_file is None and not (ck.path / "tokenizer.model").is_file():
            raise BackendError(f"{ck.path.name}: no tokenizer in the checkpoint (tokenizer.json is missing)")
        try:
            tok = AutoTokenizer.from_pretrained(ck.path, local_files_only=True, trust_remote_code=False)
        except Exception as e:
            raise BackendError(f"{ck.path.name}: the tokenizer cannot be loaded: {_first_line(e)}") from None

        experts = experts_implementation or ("eager" if dev == "cpu" else "grouped_mm")
        kwargs = dict(config=config, local_files_only=True, trust_remote_code=False, dtype=torch_dtype,
                      attn_implementation=attn_implementation, output_loading_info=True)
        if ck.n_expert():
            kwargs["experts_implementation"] = experts
        if dev != "cpu":
            import importlib.util

            if importlib.util.find_spec("accelerate") is not None:  # load straight onto the GPU
                kwargs["device_map"] = dev  # (without accelerate: load on the CPU, then move)
        model = info = None
        for _ in range(3):  # fall back to the eager kernels a family may need (attention sinks, ...)
            try:
                model, info = AutoModelForCausalLM.from_pretrained(ck.path, **kwargs)
                break
            except Exception as e:
                low = str(e).lower()
                if "attention implementation" in low and kwargs.get("attn_implementation") != "eager":
                    kwargs["attn_implementation"] = "eager"
                elif "experts_implementation" in kwargs and "experts" in low:
                    kwargs.pop("experts_implementation")
                else:
                    raise BackendError(f"transformers cannot load {ck.path.name}: {_first_line(e)}") from None
        if model is None:
            raise BackendError(f"transformers cannot load {ck.path.name} with any attention/experts kernel")
    missing = sorted(info.get("missing_keys") or [])
    mismatched = sorted(info.get("mismatched_keys") or [])
    if missing:
        raise BackendError(
            f"{ck.path.name}: incomplete checkpoint: {len(missing)} weights missing (first: {missing[0]})"
        )
    if mismatched:
        first = mismatched[0][0] if isinstance(mismatched[0], tuple) else mismatched[0]
        raise BackendError(f"{ck.path.name}: weights do not match config.json ({len(mismatched)} tensors; first: {first})")
    try:
        model = model.to(dev)
    except Exception as e:  # out of GPU memory and the like
        raise BackendError(f"{ck.path.name}: cannot move the model to {dev}: {_first_line(e)}") from None
    model.eval()

    t = TorchTarget()
    t._torch = torch
    t._model = model
    t._device = dev
    t._closed = False
    t._hooks = []
    t.routing_error = ""
    t.last_router_probs = None
    t.seed = seed
    from transformers import DynamicCache

    t._new_cache = lambda: DynamicCache()
    t._cache = t._new_cache()
    fwd = inspect.signature(type(model).forward).parameters
    t._cache_kw = "cache" if "cache" in fwd else "past_key_values"
    t._n_ctx = int(n_ctx)
    t._n_past = 0
    t._tok = tok

    tcfg = getattr(config, "text_config", None) or config
    n_layer = int(getattr(tcfg, "num_hidden_layers", 0) or ckpt.n_layers(ck.text_config))
    layers = _find_layers(model, n_layer)
    moe_layers: list[int] = []
    n_expert = n_used = 0
    experts_mods = []
    for i, layer in enumerate(layers if layers is not None else []):
        ex, gate = _experts_of(layer)
        if ex is not None:
            moe_layers.append(i)
            experts_mods.append((ex, gate))
    if moe_layers:
        ex0 = experts_mods[0][0]
        n_expert = int(getattr(ex0, "num_experts", 0) or ck.n_expert())
        n_used = int(getattr(experts_mods[0][1], "top_k", 0) or ck.n_expert_used())
        if n_expert <= 0 or n_used <= 0:
            moe_layers, n_expert, n_used = [], 0, 0
    t._capture = None
    if want_routing and moe_layers:
        cap = _Capture(len(moe_layers), bool(capture_probs))
        for j, (ex, gate) in enumerate(experts_mods):
            t._hooks.append(ex.register_forward_pre_hook(cap.index_hook(j), with_kwargs=True))
            if capture_probs and gate is not None:
                t._hooks.append(gate.register_forward_hook(cap.probs_hook(j)))
        t._capture = cap

    # vocabulary: logits width, token bytes as llama.cpp renders them
    n_vocab = int(model.get_output_embeddings().weight.shape[0]) if model.get_output_embeddings() is not None \
        else int(getattr(tcfg, "vocab_size"))
    backend_tok = getattr(tok, "backend_tokenizer", None) or getattr(tok, "_tokenizer", None)
    tj: dict = {}
    if ck.tokenizer_file is not None:
        try:
            tj = json.loads(ck.tokenizer_file.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            tj = {}
    added_dec = tok.added_tokens_decoder if hasattr(tok, "added_tokens_decoder") else {}
    added = {int(i): str(a.content) for i, a in added_dec.items()}
    control = frozenset(int(i) for i, a in added_dec.items() if getattr(a, "special", False))
    n_tok = len(tok)
    if n_tok > n_vocab:
        t.close()
        raise BackendError(
            f"{ck.path.name}: tokenizer mismatch: the tokenizer has {n_tok} tokens but the model's output layer "
            f"has {n_vocab}"
        )
    if backend_tok is not None:
        id_to_token = backend_tok.id_to_token
    else:
        def id_to_token(i):
            return tok.convert_ids_to_tokens(i)
    pieces = ckpt.token_pieces(tj, id_to_token, n_vocab, added)
    t._pieces = pieces
    t._control = control
    t._eos_ids = _eos_ids(ck, tok, n_vocab)
    with_sp = tok.encode("a", add_special_tokens=True)
    without = tok.encode("a", add_special_tokens=False)
    t._bos_prefix = tuple(int(x) for x in with_sp[: len(with_sp) - len(without)]) \
        if len(with_sp) > len(without) and list(with_sp[len(with_sp) - len(without):]) == list(without) else ()

    extra = {
        "name": ck.path.name,
        "model_type": mt,
        "device": dev,
        "dtype": dtype_name,
        "n_threads": n_threads,
        "experts_implementation": getattr(model.config, "_experts_implementation", None) if moe_layers else None,
        "attn_implementation": getattr(model.config, "_attn_implementation", None) or kwargs["attn_implementation"],
        "routing": ("hooks" if t._capture is not None else ("off" if moe_layers else "dense")),
        "add_bos": bool(t._bos_prefix),
        "torch_version": torch.__version__,
        "transformers_version": transformers.__version__,
        "tested_family": mt in ckpt.TESTED_MOE,
    }
    if not moe_layers and ck.n_expert():
        extra["note"] = (f"{ck.path.name}: '{mt}' routes to experts, but its MoE blocks expose no top-k indices "
                         "this backend can capture (no experts module called with top_k_index): running without routing")
    elif not moe_layers:
        extra["note"] = (f"{ck.path.name} is a dense model ('{mt}'): no expert routing to capture; "
                         "speculation still works, but the MoE cost effects Cascade manages are absent")
    template = getattr(tok, "chat_template", None)
    if isinstance(template, str) and template.strip():
        extra["chat_template"] = template
    for key, tid in (("bos_text", getattr(tok, "bos_token_id", None)), ("eos_text", getattr(tok, "eos_token_id", None))):
        if isinstance(tid, int) and 0 <= tid < n_vocab:
            extra[key] = pieces[tid].decode("utf-8", "replace")
    t.info = ModelInfo(
        path=str(ck.path),
        backend="torch",
        arch=mt,
        n_layer=n_layer,
        moe_layers=tuple(moe_layers),
        n_expert=n_expert,
        n_expert_used=n_used,
        n_vocab=n_vocab,
        n_ctx_train=int(getattr(tcfg, "max_position_embeddings", 0) or 0),
        vocab_fingerprint=vocab_fingerprint(pieces),
        file_size=ck.file_size,
        n_params=int(sum(p.numel() for p in model.parameters())),
        extra=extra,
    )
    return t


def make_drafter(path: str | os.PathLike, target, *, name: str | None = None, **kw) -> ModelDrafter:
    """Load checkpoint ``path`` as a draft model for ``target`` (any Target); refuses a drafter
    whose vocabulary differs (one line naming the first differing token id)."""
    kw.setdefault("n_ctx", target.n_ctx)
    kw.setdefault("routing", False)
    extra = getattr(getattr(target, "info", None), "extra", {}) or {}
    for key in ("n_threads", "device", "dtype"):
        if key in extra and kw.get(key) is None:
            kw[key] = extra[key]
    draft = load_target(path, **kw)
    try:
        check_vocab_compatible(target, draft)
    except BaseException:
        draft.close()
        raise
    return ModelDrafter(draft, name=name or f"model:{Path(path).name}")
