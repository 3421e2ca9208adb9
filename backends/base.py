"""The contract between the engine and every runtime (DESIGN section 2).

The engine knows models only through :class:`Target`. A target is a causal LM with a KV cache:
``eval(tokens)`` appends ``tokens`` after the ``n_past`` tokens already in the cache and returns
logits for *every* new position (row ``i`` predicts the token that follows ``tokens[i]``), plus
the experts each MoE layer routed each new token to. ``truncate(n_keep)`` drops everything after
the first ``n_keep`` cached tokens (KV rollback).

A drafter proposes up to K tokens that the target then verifies in one batch. :class:`Drafter`
is the protocol; ``backends.model_drafter.ModelDrafter`` turns any :class:`Target` into one and
``backends.ngram.NgramDrafter`` needs no model at all.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Protocol, Sequence, runtime_checkable

import numpy as np


class BackendError(Exception):
    """A model could not be loaded or used. The message is one line meant for the user."""


@dataclass(frozen=True)
class ModelInfo:
    """What a user (and ``cascade-tui inspect``) wants to know about a loaded model."""

    path: str
    backend: str  # "llama", "torch", "fake", "ngram"
    arch: str  # e.g. "llama", "qwen3moe"
    n_layer: int
    moe_layers: tuple[int, ...]  # indices of the layers that route to experts (empty = dense)
    n_expert: int  # experts per MoE layer (0 for a dense model)
    n_expert_used: int  # experts each token is routed to (top-k)
    n_vocab: int
    n_ctx_train: int
    vocab_fingerprint: str  # sha256 over the token pieces, see :func:`vocab_fingerprint`
    file_size: int  # bytes on disk (0 when not a file)
    n_params: int = 0
    extra: dict = field(default_factory=dict)  # backend-specific facts worth showing

    @property
    def is_moe(self) -> bool:
        return bool(self.moe_layers) and self.n_expert > 0

    def to_dict(self) -> dict:
        d = asdict(self)
        d["moe_layers"] = list(self.moe_layers)
        d["is_moe"] = self.is_moe
        return d


@dataclass
class EvalResult:
    """Output of :meth:`Target.eval` for ``n`` new tokens.

    ``logits``: float32 ``[n, n_vocab]``. ``routing``: int32 ``[n_moe_layers, n, n_expert_used]``
    (expert ids per MoE layer per token) or ``None`` when the model is dense or capture is off.
    ``capture_s``: seconds of the eval spent capturing routing (the engine keeps them out of the
    verify time the policies see, and reports them on their own).
    """

    logits: np.ndarray
    routing: np.ndarray | None = None
    capture_s: float = 0.0


@runtime_checkable
class Target(Protocol):
    """A causal LM with a KV cache, as the engine sees it."""

    info: ModelInfo

    @property
    def n_ctx(self) -> int:  # context size the model was loaded with
        ...

    @property
    def n_past(self) -> int:  # tokens currently in the KV cache
        ...

    def tokenize(self, text: str, add_bos: bool = True) -> list[int]: ...

    def token_bytes(self, token: int) -> bytes:
        """Raw bytes of one token; a UTF-8 character may span several tokens."""
        ...

    def detokenize(self, tokens: Sequence[int]) -> str: ...

    @property
    def eos_ids(self) -> frozenset[int]: ...

    def eval(self, tokens: Sequence[int]) -> EvalResult: ...

    def truncate(self, n_keep: int) -> None: ...

    def close(self) -> None: ...


class PieceVocab:
    """``token_bytes`` and ``detokenize`` for a target that keeps the bytes of every token id in
    ``_pieces`` and the ids left out of text (BOS, EOS, ...) in ``_control``: every backend's."""

    _pieces: list[bytes]
    _control: frozenset[int]

    def token_bytes(self, token: int) -> bytes:
        if not 0 <= token < len(self._pieces):
            raise BackendError(f"token id {token} is outside the vocabulary (0..{len(self._pieces) - 1})")
        return self._pieces[token]

    def detokenize(self, tokens: Sequence[int], special: bool = False) -> str:
        """Text of ``tokens``; bytes are joined before decoding, so a UTF-8 character split over
        several tokens comes out whole (invalid bytes become U+FFFD). Control tokens (BOS, EOS,
        ...) are left out unless ``special``."""
        pieces = self._pieces
        n = len(pieces)
        skip = () if special else self._control
        out = []
        for t in tokens:
            t = int(t)
            if not 0 <= t < n:
                raise BackendError(f"token id {t} is outside the vocabulary (0..{n - 1})")
            if t not in skip:
                out.append(pieces[t])
        return b"".join(out).decode("utf-8", errors="replace")


def check_new_tokens(tokens: Sequence[int], n_past: int, n_ctx: int, n_vocab: int) -> list[int]:
    """``tokens`` as a list of ints, after the checks every ``Target.eval`` makes: they fit after
    the ``n_past`` cached ones in a context of ``n_ctx``, and every id is in the vocabulary.
    Raises :class:`BackendError` (one line). A plain list: numpy's conversions cost more than the
    eval of a tiny model."""
    toks = [int(t) for t in tokens]
    n = len(toks)
    if not n:
        return toks
    if n_past + n > n_ctx:
        raise BackendError(
            f"context full: {n_past} cached + {n} new tokens exceed the context size "
            f"{n_ctx} (raise it with --ctx)"
        )
    lo, hi = min(toks), max(toks)
    if lo < 0 or hi >= n_vocab:
        bad = lo if lo < 0 else hi
        raise BackendError(f"token id {bad} is outside the vocabulary (0..{n_vocab - 1})")
    return toks


@dataclass
class Draft:
    """Tokens a drafter proposes. ``probs`` (``[len(tokens), n_vocab]``, the drafter's sampling
    distribution at each step) is required for lossless sampling when temperature > 0; ``None``
    means the proposal was deterministic (treated as a one-hot distribution)."""

    tokens: list[int]
    probs: np.ndarray | None = None


@runtime_checkable
class Drafter(Protocol):
    """Proposes tokens for the target to verify.

    ``propose(context, k, ...)`` gets the whole committed token sequence (prompt + generated, the
    last token not yet evaluated by the target) and returns at most ``k`` tokens. A drafter with a
    KV cache keeps it in sync itself: it rolls back to the longest common prefix with ``context``
    and evaluates what it missed in one batch (lazy catch-up after K=0 stretches).
    ``reset()`` starts a new request.
    """

    name: str

    def propose(
        self, context: Sequence[int], k: int, temperature: float, rng: np.random.Generator
    ) -> Draft: ...

    def reset(self) -> None: ...

    def close(self) -> None: ...


def vocab_fingerprint(pieces: Sequence[bytes]) -> str:
    """A stable id of a vocabulary: two models can share drafts only if these are equal."""
    h = hashlib.sha256()
    for p in pieces:
        h.update(len(p).to_bytes(4, "little"))
        h.update(p)
    return h.hexdigest()[:16]


def first_vocab_difference(a: Sequence[bytes], b: Sequence[bytes]) -> int | None:
    """Index of the first token whose bytes differ (or the shorter length), ``None`` if equal."""
    for i, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return i
    if len(a) != len(b):
        return min(len(a), len(b))
    return None


def token_pieces_of(model) -> list[bytes]:
    """Bytes of every token of a loaded model (``token_pieces`` when the backend has it)."""
    pieces = getattr(model, "token_pieces", None)
    if pieces is not None:
        return list(pieces)
    return [model.token_bytes(i) for i in range(model.info.n_vocab)]


def check_vocab_compatible(target, draft) -> None:
    """Raise :class:`BackendError` (one line naming the first differing token) unless ``draft``
    can propose tokens for ``target``: the same token ids must mean the same bytes. Works for any
    pair of loaded models, whatever their backends."""
    if draft.info.vocab_fingerprint == target.info.vocab_fingerprint:
        return
    a, b = token_pieces_of(target), token_pieces_of(draft)
    i = first_vocab_difference(a, b)
    if i is None:
        return  # the same pieces under two fingerprint schemes
    ta = repr(a[i]) if i < len(a) else "absent"
    tb = repr(b[i]) if i < len(b) else "absent"
    raise BackendError(
        f"draft model {Path(draft.info.path).name} cannot draft for {Path(target.info.path).name}: "
        f"vocabularies differ at token id {i} (target {ta}, draft {tb}; {len(a)} vs {len(b)} tokens)"
    )


def softmax(logits: np.ndarray, temperature: float) -> np.ndarray:
    """Probabilities of ``logits / temperature`` over the last axis, in float64."""
    z = logits.astype(np.float64) / temperature
    z -= z.max(axis=-1, keepdims=True)
    np.exp(z, out=z)
    z /= z.sum(axis=-1, keepdims=True)
    return z


def default_threads() -> int:
    """CPU threads a model runs on unless told: half the cores this process may use (about the
    physical cores), at most 8 (llama.cpp scales badly past the physical cores)."""
    try:
        n = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        n = os.cpu_count() or 2
    return max(1, min(8, n // 2))
