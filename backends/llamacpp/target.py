"""The llama.cpp :class:`backends.base.Target`, on llama-cpp-python's low-level ctypes API."""

from __future__ import annotations

from backends.llamacpp import lib as _lib  # first: llama_cpp before numpy (see lib.py)

import ctypes
import os
import re
from pathlib import Path
from typing import Sequence

import numpy as np

from backends.base import (
    BackendError,
    EvalResult,
    ModelInfo,
    PieceVocab,
    check_new_tokens,
    check_vocab_compatible,
    default_threads,
    vocab_fingerprint,
)
from backends.llamacpp import gguf_info
from backends.llamacpp.routing import RoutingCapture
from backends.model_drafter import ModelDrafter

DEFAULT_N_BATCH = 512


def _routing_mode(routing) -> str | None:
    if routing is False or routing is None or routing == "off":
        return None
    if routing is True or routing == "auto":
        return "auto"
    if routing in ("native", "python"):
        return routing
    raise BackendError(f"routing must be True, False, 'auto', 'native' or 'python', not {routing!r}")


def _gpu_memory_hint(log: str, n_gpu_layers: int) -> str | None:
    """When a load or context creation with layers offloaded failed for want of device memory:
    what to do about it (one line), else None."""
    if n_gpu_layers == 0 or not re.search(r"out of memory|unable to allocate|failed to allocate", log, re.I):
        return None
    layers = "every layer" if n_gpu_layers < 0 else f"{n_gpu_layers} layers"
    return (f"the GPU has too little free memory for {layers} and the context "
            "(--n-gpu-layers N offloads fewer, 0 runs on the CPU; a smaller --ctx needs less)")


def _load_failure(path: Path, log: str, n_gpu_layers: int = 0) -> BackendError:
    hint = _gpu_memory_hint(log, n_gpu_layers)
    if hint:
        return BackendError(f"llama.cpp cannot load {path.name}: {hint}")
    m = re.search(r"unknown model architecture: '([^']*)'", log)
    if m:
        return BackendError(
            f"{path.name}: llama.cpp (llama-cpp-python {_lib.native.llama_cpp_version()}) does not "
            f"support the architecture '{m.group(1)}'"
        )
    reasons = re.findall(r"error loading model: (.+)", log)
    if reasons:
        return BackendError(f"llama.cpp cannot load {path.name}: {reasons[-1].strip()}")
    lines = [ln.strip() for ln in log.splitlines() if "error" in ln.lower() or "failed" in ln.lower()]
    tail = lines[-1] if lines else f"see {_lib.log_path()}"
    return BackendError(f"llama.cpp cannot load {path.name}: {tail}")


def _vocab_pieces(llc, vocab, n_vocab: int) -> list[bytes]:
    pieces: list[bytes] = []
    size = 256
    buf = ctypes.create_string_buffer(size)
    for t in range(n_vocab):
        n = llc.llama_token_to_piece(vocab, t, buf, size, 0, True)
        if n < 0:
            size = max(-n, size * 2)
            buf = ctypes.create_string_buffer(size)
            n = llc.llama_token_to_piece(vocab, t, buf, size, 0, True)
        pieces.append(buf.raw[: max(n, 0)])
    return pieces


class LlamaTarget(PieceVocab):
    """A GGUF model in llama.cpp, with per-position logits, KV rollback and expert routing.

    Build it with :func:`load_target`. Not thread-safe: use one target from one thread at a time.
    """

    def __init__(self) -> None:  # use load_target()
        self._model = None
        self._ctx = None
        self._batch = None
        self._closed = True

    # -- protocol ------------------------------------------------------------------------------
    @property
    def n_ctx(self) -> int:
        return self._n_ctx

    @property
    def n_past(self) -> int:
        return self._n_past

    @property
    def n_batch(self) -> int:
        return self._n_batch

    @property
    def eos_ids(self) -> frozenset[int]:
        return self._eos_ids

    @property
    def token_pieces(self) -> list[bytes]:
        """Bytes of every token id (control tokens as their text)."""
        return self._pieces

    @property
    def routing_mode(self) -> str | None:
        """"native", "python", or None (capture off, or a dense model)."""
        return self._capture.mode if self._capture is not None else None

    @property
    def routing_enabled(self) -> bool:
        return self._capture is not None and self._capture.enabled

    def set_routing(self, on: bool) -> None:
        """Pause/resume capture without reloading (only if the model was loaded with routing)."""
        if self._capture is None:
            if on:
                raise BackendError("routing capture was not enabled when this model was loaded")
            return
        self._capture.enabled = bool(on)

    def tokenize(self, text: str, add_bos: bool = True, special: bool = True) -> list[int]:
        """Token ids of ``text``; a BOS is added when ``add_bos`` and the model asks for one.
        ``special``: parse special-token text such as ``<|im_start|>`` into its id."""
        llc = self._live()
        data = text.encode("utf-8")
        add = bool(add_bos)
        n_max = len(data) + 16
        buf = (llc.llama_token * n_max)()
        n = llc.llama_tokenize(self._vocab, data, len(data), buf, n_max, add, special)
        if n < 0:
            n_max = -n
            buf = (llc.llama_token * n_max)()
            n = llc.llama_tokenize(self._vocab, data, len(data), buf, n_max, add, special)
        if n < 0:
            raise BackendError(f"tokenization failed ({n}) for a text of {len(data)} bytes")
        return list(buf[:n])

    def eval(self, tokens: Sequence[int]) -> EvalResult:
        llc = self._live()
        n_vocab = self.info.n_vocab
        toks = check_new_tokens(tokens, self._n_past, self._n_ctx, n_vocab)
        n = len(toks)
        capturing = self._capture is not None and self._capture.enabled
        n_moe = len(self.info.moe_layers)
        if n == 0:
            routing = np.zeros((n_moe, 0, self.info.n_expert_used), np.int32) if capturing else None
            return EvalResult(np.zeros((0, n_vocab), np.float32), routing)

        logits = np.empty((n, n_vocab), dtype=np.float32)
        routing = np.empty((n_moe, n, self.info.n_expert_used), np.int32) if capturing else None
        start = self._n_past
        cap = self._capture
        probs_parts: list[np.ndarray] = []
        capture_s = 0.0
        for s in range(0, n, self._n_batch):
            m = min(self._n_batch, n - s)
            self._tok_view[:m] = toks[s : s + m]
            self._pos_view[:m] = np.arange(self._n_past, self._n_past + m, dtype=np.int32)
            self._batch.n_tokens = m
            if capturing:
                cap.reset()
            rc = llc.llama_decode(self._ctx, self._batch)
            if capturing:
                capture_s += cap.elapsed_s
            if cap is not None and cap.pending is not None:
                exc, cap.pending = cap.pending, None
                self._rollback(start)
                raise exc
            if rc != 0:
                self._rollback(start)
                why = {1: "no room in the KV cache", 2: "aborted"}.get(rc, "see " + str(_lib.log_path()))
                raise BackendError(f"llama_decode failed with code {rc} ({why})")
            self._n_past += m
            logits[s : s + m] = self._logits_view(llc, m)
            if routing is not None:
                r = cap.take(m)
                if r is None:
                    if not self.routing_error:
                        _lib.log_note(f"cascade-tui: {cap.last_error}")
                    self.routing_error = cap.last_error
                    routing = None
                else:
                    routing[:, s : s + m] = r
                    if self._want_probs:
                        p = cap.take_probs(m)
                        if p is not None:
                            probs_parts.append(p)
        if self._want_probs:
            ok = routing is not None and sum(x.shape[1] for x in probs_parts) == n
            self.last_router_probs = np.concatenate(probs_parts, axis=1) if ok else None
        return EvalResult(logits, routing, capture_s)

    def _logits_view(self, llc, m: int) -> np.ndarray:
        """The first ``m`` rows of llama.cpp's logits buffer as numpy, without a copy (the view is
        reused while llama.cpp keeps the same buffer: as_array costs microseconds per call)."""
        ptr = llc.llama_get_logits(self._ctx)
        addr = ctypes.cast(ptr, ctypes.c_void_p).value
        view = self._logits_cache
        if view is None or view[0] != addr or view[1].shape[0] < m:
            view = (addr, np.ctypeslib.as_array(ptr, shape=(max(m, 1), self.info.n_vocab)))
            self._logits_cache = view
        return view[1][:m]

    def truncate(self, n_keep: int) -> None:
        llc = self._live()
        n_keep = int(n_keep)
        if not 0 <= n_keep <= self._n_past:
            raise BackendError(f"cannot keep {n_keep} tokens: the cache holds {self._n_past}")
        if n_keep == self._n_past:
            return
        if not llc.llama_memory_seq_rm(self._mem, 0, n_keep, -1):
            raise BackendError(f"{self.info.arch}: this model's cache cannot be rolled back")
        self._n_past = n_keep

    def close(self) -> None:
        if getattr(self, "_closed", True):
            return
        self._closed = True
        llc = _lib.llc
        if llc is None:
            return
        try:
            with _lib.quiet_stderr():  # llama_free logs; without the native sink it goes to fd 2
                if self._batch is not None:
                    llc.llama_batch_free(self._batch)
                if self._ctx:
                    llc.llama_free(self._ctx)
                if self._model:
                    llc.llama_model_free(self._model)
        finally:
            self._batch = self._ctx = self._model = None
            self._tok_view = self._pos_view = None

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
        return f"<LlamaTarget {Path(self.info.path).name} {self.info.arch} {state}>"

    # -- internals -----------------------------------------------------------------------------
    def _live(self):
        if self._closed:
            raise BackendError("this model has been closed")
        return _lib.llc

    def _rollback(self, n_keep: int) -> None:
        try:
            _lib.llc.llama_memory_seq_rm(self._mem, 0, n_keep, -1)
        finally:
            self._n_past = n_keep


def _offload_report(n_gpu_layers: int, load_log: str) -> dict:
    """Where the model's layers went: ``device`` ("cpu", or the GPU(s) llama.cpp offloads to, e.g.
    "CUDA0: NVIDIA H100 80GB HBM3") and ``offloaded_layers`` ("9/9", as llama.cpp's load log
    counts them: the repeating layers plus the output layer)."""
    m = re.findall(r"offloaded (\d+)/(\d+) layers to GPU", load_log)
    done, total = (int(m[-1][0]), int(m[-1][1])) if m else (0, 0)
    gpus = [d for d in _lib.devices() if d.offloads] if n_gpu_layers != 0 else []
    out: dict = {"device": ", ".join(d.label() for d in gpus) if gpus and done > 0 else "cpu"}
    if m:
        out["offloaded_layers"] = f"{done}/{total}"
    return out


def resolve_gpu_layers(requested: int | None, offload_supported: bool) -> int:
    """Layers to offload: what was asked for, else every layer (-1) on a build that can offload
    (as llama-server does) and 0 on a CPU-only build."""
    if requested is None:
        return -1 if offload_supported else 0
    return int(requested)


def load_target(
    path: str | os.PathLike,
    *,
    n_ctx: int = 2048,
    n_threads: int | None = None,
    n_gpu_layers: int | None = None,
    routing: bool | str = True,
    seed: int = 0,
    kv_f32: bool = False,
    flash_attn: bool = False,
    n_batch: int | None = None,
    log_path: str | os.PathLike | None = None,
    capture_probs: bool = False,
) -> LlamaTarget:
    """Load a GGUF model for verification (or drafting).

    ``routing``: True/"auto" captures expert routing with the native callback when it can be
    built (else the Python one), "native"/"python" force one, False turns capture off (no eval
    callback at all). ``seed`` is recorded only: llama.cpp contexts hold no RNG (sampling happens
    in the engine). ``kv_f32`` stores the KV cache in F32 (exactness tests), ``n_batch`` is the
    most tokens one llama_decode gets (eval splits longer inputs), ``n_gpu_layers=-1`` offloads
    every layer, ``None`` every layer when the build supports GPU offload and none otherwise.
    ``capture_probs`` also records the router probabilities of each eval in
    ``target.last_router_probs`` (tests; costs a copy per MoE layer).
    """
    llc = _lib.ensure_backend(log_path)
    mode = _routing_mode(routing)
    hdr = gguf_info.parse(path)
    p = Path(hdr.path)
    if n_ctx is None or int(n_ctx) < 1:
        raise BackendError(f"context size must be at least 1, not {n_ctx}")
    n_ctx = int(n_ctx)
    n_threads = default_threads() if n_threads is None else int(n_threads)
    if n_threads < 1:
        raise BackendError(f"thread count must be at least 1, not {n_threads}")
    n_gpu_layers = resolve_gpu_layers(n_gpu_layers, bool(llc.llama_supports_gpu_offload()))
    if n_gpu_layers != 0 and not llc.llama_supports_gpu_offload():
        raise BackendError(
            f"--n-gpu-layers {n_gpu_layers} needs GPU offload, but this llama-cpp-python build is "
            "CPU-only (rebuild it with CMAKE_ARGS=-DGGML_CUDA=on, or use --n-gpu-layers 0)"
        )
    nb = min(int(n_batch or DEFAULT_N_BATCH), n_ctx)
    if nb < 1:
        raise BackendError(f"batch size must be at least 1, not {n_batch}")

    t = LlamaTarget()
    t._capture = None
    t._want_probs = bool(capture_probs)
    t.last_router_probs = None  # [n_moe_layers, n, n_expert] of the last eval (capture_probs)
    t.routing_error = ""
    t.seed = seed
    mp = llc.llama_model_default_params()
    mp.n_gpu_layers = n_gpu_layers
    mark = _lib.log_mark()
    with _lib.quiet_stderr():
        model = llc.llama_model_load_from_file(os.fsencode(p), mp)
    if not model:
        raise _load_failure(p, _lib.log_since(mark), n_gpu_layers)
    t._model = model
    t._closed = False
    t._offload = _offload_report(n_gpu_layers, _lib.log_since(mark))
    try:
        _init_target(t, llc, hdr, p, n_ctx, nb, n_threads, n_gpu_layers, mode, kv_f32, flash_attn)
    except BaseException:
        t.close()
        raise
    return t


def _meta_str(llc, model, key: str) -> str | None:
    buf = ctypes.create_string_buffer(256)
    n = llc.llama_model_meta_val_str(model, key.encode(), buf, 256)
    return buf.value.decode("utf-8", "replace") if n >= 0 else None


def _init_target(t, llc, hdr, p, n_ctx, nb, n_threads, n_gpu_layers, mode, kv_f32, flash_attn):
    model = t._model
    vocab = llc.llama_model_get_vocab(model)
    n_vocab = int(llc.llama_vocab_n_tokens(vocab))
    n_layer = int(llc.llama_model_n_layer(model))
    arch = _meta_str(llc, model, "general.architecture") or hdr.arch
    moe_layers = tuple(i for i in hdr.moe_layers if i < n_layer)
    n_expert = int(hdr.arch_value("expert_count", 0) or 0) if moe_layers else 0
    n_used = int(hdr.arch_value("expert_used_count", 0) or 0) if moe_layers else 0
    if moe_layers and (n_expert <= 0 or n_used <= 0):
        moe_layers, n_expert, n_used = (), 0, 0  # router tensors without expert counts: treat as dense

    if mode is not None and moe_layers:
        t._capture = RoutingCapture(
            n_layer, moe_layers, n_used, n_expert, nb, mode=mode, want_probs=t._want_probs
        )

    cp = llc.llama_context_default_params()
    cp.n_ctx = n_ctx
    cp.n_batch = nb
    cp.n_ubatch = nb
    cp.n_seq_max = 1
    cp.n_threads = n_threads
    cp.n_threads_batch = n_threads
    cp.no_perf = True
    cp.flash_attn_type = llc.LLAMA_FLASH_ATTN_TYPE_ENABLED if flash_attn else llc.LLAMA_FLASH_ATTN_TYPE_DISABLED
    if kv_f32:
        cp.type_k = llc.GGML_TYPE_F32
        cp.type_v = llc.GGML_TYPE_F32
    if t._capture is not None:
        cp.cb_eval = t._capture.callback
        cp.cb_eval_user_data = t._capture.user_data
    mark = _lib.log_mark()
    with _lib.quiet_stderr():
        ctx = llc.llama_init_from_model(model, cp)
    if not ctx:
        log = _lib.log_since(mark)
        lines = [ln.strip() for ln in log.splitlines() if "error" in ln.lower() or "failed" in ln.lower()]
        why = _gpu_memory_hint(log, n_gpu_layers) or (lines[-1] if lines else "see " + str(_lib.log_path()))
        raise BackendError(f"llama.cpp cannot create a context for {p.name} (n_ctx={n_ctx}): {why}")
    t._ctx = ctx
    t._mem = llc.llama_get_memory(ctx)
    t._n_ctx = min(n_ctx, int(llc.llama_n_ctx(ctx)))
    t._n_batch = nb
    t._n_past = 0
    t._vocab = vocab

    batch = llc.llama_batch_init(nb, 0, 1)
    t._batch = batch
    t._logits_cache = None
    for i in range(nb):
        batch.n_seq_id[i] = 1
        batch.seq_id[i][0] = 0
        batch.logits[i] = 1  # logits for every position: the engine verifies all of them
    t._tok_view = np.ctypeslib.as_array(batch.token, shape=(nb,))
    t._pos_view = np.ctypeslib.as_array(batch.pos, shape=(nb,))

    pieces = _vocab_pieces(llc, vocab, n_vocab)
    t._pieces = pieces
    eog = {i for i in range(n_vocab) if llc.llama_vocab_is_eog(vocab, i)}
    for tok in (llc.llama_vocab_eos(vocab), llc.llama_vocab_eot(vocab)):
        if 0 <= tok < n_vocab:
            eog.add(int(tok))
    t._eos_ids = frozenset(eog)
    t._control = frozenset(i for i in range(n_vocab) if llc.llama_vocab_is_control(vocab, i))

    extra = {
        "name": hdr.metadata.get("general.name", ""),
        "gguf_version": hdr.version,
        "n_batch": nb,
        "n_threads": n_threads,
        "n_gpu_layers": n_gpu_layers,
        "gpu_offload_supported": bool(llc.llama_supports_gpu_offload()),
        **t._offload,
        "routing": t._capture.mode if t._capture is not None else ("off" if moe_layers else "dense"),
        "kv_type": "f32" if kv_f32 else "f16",
        "flash_attn": bool(flash_attn),
        "add_bos": bool(llc.llama_vocab_get_add_bos(vocab)),
        "llama_cpp_version": _lib.native.llama_cpp_version(),
        "log": str(_lib.log_path()),
        "numpy_imported_first": _lib.NUMPY_IMPORTED_FIRST,
    }
    if t._capture is not None and t._capture.mode == "python":
        extra["native_unavailable"] = getattr(t._capture, "native_unavailable", "")
    template = hdr.metadata.get("tokenizer.chat_template")
    if isinstance(template, str) and template.strip():
        extra["chat_template"] = template
    for key, tok in (("bos_text", llc.llama_vocab_bos(vocab)), ("eos_text", llc.llama_vocab_eos(vocab))):
        if 0 <= tok < n_vocab:
            extra[key] = pieces[tok].decode("utf-8", "replace")
    t.info = ModelInfo(
        path=str(p),
        backend="llama",
        arch=arch,
        n_layer=n_layer,
        moe_layers=moe_layers,
        n_expert=n_expert,
        n_expert_used=n_used,
        n_vocab=n_vocab,
        n_ctx_train=int(llc.llama_model_n_ctx_train(model)),
        vocab_fingerprint=vocab_fingerprint(pieces),
        file_size=hdr.file_size,
        n_params=int(llc.llama_model_n_params(model)),
        extra=extra,
    )


def read_gguf_info(path: str | os.PathLike, *, fingerprint: bool = True) -> ModelInfo:
    """What ``cascade-tui inspect`` shows, without loading weights: the header is parsed in
    Python; with ``fingerprint`` the vocabulary (only) is loaded by llama.cpp so the fingerprint
    equals the one a loaded model reports. Raises BackendError for missing/non-GGUF/truncated
    files; an architecture llama.cpp cannot load gives ``vocab_fingerprint=""`` and the reason
    in ``extra["load_error"]``."""
    hdr = gguf_info.parse(path)
    p = Path(hdr.path)
    moe_layers = hdr.moe_layers
    n_expert = int(hdr.arch_value("expert_count", 0) or 0) if moe_layers else 0
    n_used = int(hdr.arch_value("expert_used_count", 0) or 0) if moe_layers else 0
    types: dict[str, int] = {}
    try:
        from gguf.constants import GGMLQuantizationType

        names = {int(v): v.name for v in GGMLQuantizationType}
    except Exception:
        names = {}
    for ti in hdr.tensors:
        key = names.get(ti.type, str(ti.type))
        types[key] = types.get(key, 0) + 1
    extra = {
        "name": hdr.metadata.get("general.name", ""),
        "gguf_version": hdr.version,
        "tensor_types": types,
        "n_tensors": len(hdr.tensors),
        "tokenizer": hdr.metadata.get("tokenizer.ggml.model", ""),
    }
    fp = ""
    n_vocab = hdr.n_vocab
    if fingerprint:
        try:
            llc = _lib.ensure_backend()
            mp = llc.llama_model_default_params()
            mp.vocab_only = True
            mp.n_gpu_layers = 0
            mark = _lib.log_mark()
            with _lib.quiet_stderr():
                model = llc.llama_model_load_from_file(os.fsencode(p), mp)
            if not model:
                extra["load_error"] = str(_load_failure(p, _lib.log_since(mark)))
            else:
                try:
                    vocab = llc.llama_model_get_vocab(model)
                    n_vocab = int(llc.llama_vocab_n_tokens(vocab))
                    fp = vocab_fingerprint(_vocab_pieces(llc, vocab, n_vocab))
                finally:
                    llc.llama_model_free(model)
            # where a load would put the layers (every layer on these, unless --n-gpu-layers)
            extra["offload_devices"] = [
                {"name": d.name, "description": d.description, "memory_total": d.memory_total}
                for d in _lib.devices() if d.offloads
            ]
        except BackendError as e:
            extra["load_error"] = str(e)
    return ModelInfo(
        path=str(p),
        backend="llama",
        arch=hdr.arch,
        n_layer=int(hdr.arch_value("block_count", 0) or 0),
        moe_layers=moe_layers,
        n_expert=n_expert,
        n_expert_used=n_used,
        n_vocab=n_vocab,
        n_ctx_train=int(hdr.arch_value("context_length", 0) or 0),
        vocab_fingerprint=fp,
        file_size=hdr.file_size,
        n_params=hdr.n_params,
        extra=extra,
    )


def make_drafter(path: str | os.PathLike, target, *, name: str | None = None, **kw) -> ModelDrafter:
    """Load ``path`` as a draft model for ``target`` (any Target). Refuses a drafter whose
    vocabulary differs from the target's, naming the first differing token id. ``kw`` goes to
    :func:`load_target` (defaults: the target's n_ctx, routing off)."""
    kw.setdefault("n_ctx", target.n_ctx)
    kw.setdefault("routing", False)
    extra = getattr(getattr(target, "info", None), "extra", {}) or {}
    for key in ("n_threads", "n_gpu_layers"):  # a llama target's settings suit its drafter too
        if key in extra and kw.get(key) is None:
            kw[key] = extra[key]
    draft = load_target(path, **kw)
    try:
        check_vocab_compatible(target, draft)
    except BaseException:
        draft.close()
        raise
    return ModelDrafter(draft, name=name or f"model:{Path(path).name}")
