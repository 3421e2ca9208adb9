"""A small deterministic in-memory backend for testing the engine and the policies (not a backend).

``FakeModel`` is a real causal LM in miniature: the logits at a position are a fixed pseudo-random
function of the last three tokens, so batched and one-by-one evaluation agree exactly and KV
rollback can be checked. A drafter is the same function plus noise, so it agrees with the target
often but not always. MoE routing is synthetic (top-k of a per-token router score), and a
``ScriptedClock`` advances by a cost model in which verification cost follows the number of unique
experts the batch touches, like a real MoE.
"""

from __future__ import annotations

import hashlib
from typing import Callable, Sequence

import numpy as np

from backends.base import EvalResult, ModelInfo


class ScriptedClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def advance(self, dt: float) -> None:
        self.now += dt


# the grown demo target on this CPU: verify time (ms) per verified-token count, measured
GROWN_DEMO = {1: 12.6, 2: 19.2, 3: 28.0, 4: 31.3, 16: 79.0}


def grown_demo(n: int) -> float:
    """Seconds to verify ``n`` tokens on the grown demo (GROWN_DEMO, linear in between, +4 ms a
    token past the last point)."""
    pts = sorted(GROWN_DEMO.items())
    for (n0, c0), (n1, c1) in zip(pts, pts[1:]):
        if n <= n1:
            return 1e-3 * (c0 + (c1 - c0) * (n - n0) / (n1 - n0))
    return 1e-3 * (pts[-1][1] + 4.0 * (n - pts[-1][0]))


def moe_cost(base: float = 1.0, per_token: float = 0.02, per_expert: float = 0.5) -> Callable:
    """Verify cost in seconds for n tokens touching ``uniq`` unique experts per layer."""

    def cost(n: int, uniq: float | None) -> float:
        return base + per_token * n + per_expert * ((uniq or 0.0) - 2.0)

    return cost


class FakeModel:
    def __init__(
        self,
        vocab: int = 32,
        seed: int = 0,
        noise: float = 0.0,
        noise_seed: int = 1,
        n_ctx: int = 512,
        eos: int | None = None,
        n_moe_layers: int = 2,
        n_expert: int = 8,
        n_expert_used: int = 2,
        clock: ScriptedClock | None = None,
        cost: Callable[[int, float | None], float] | None = None,
        sharpness: float = 3.0,
    ):
        self.vocab = vocab
        self.seed = seed
        self.noise = noise
        self.noise_seed = noise_seed
        self._n_ctx = n_ctx
        self.eos = eos
        self.n_moe_layers = n_moe_layers
        self.n_expert = n_expert
        self.n_expert_used = n_expert_used
        self.clock = clock
        self.cost = cost
        self.sharpness = sharpness
        self.tokens: list[int] = []
        self.eval_calls = 0
        pieces = [bytes([97 + i % 26]) * (1 + i // 26) if i != eos else b"" for i in range(vocab)]
        self._pieces = pieces
        moe = tuple(range(n_moe_layers)) if n_moe_layers else ()
        self.info = ModelInfo(
            path=f"fake://{seed}/{noise}",
            backend="fake",
            arch="fake-moe" if moe else "fake-dense",
            n_layer=max(n_moe_layers, 1),
            moe_layers=moe,
            n_expert=n_expert if moe else 0,
            n_expert_used=n_expert_used if moe else 0,
            n_vocab=vocab,
            n_ctx_train=n_ctx,
            vocab_fingerprint=f"fake{vocab}",
            file_size=0,
        )

    # -- the "network" -----------------------------------------------------------------------
    def _rng(self, key: tuple, salt: int) -> np.random.Generator:
        h = hashlib.blake2b(repr((salt, key)).encode(), digest_size=8).digest()
        return np.random.default_rng(int.from_bytes(h, "little"))

    def logits_after(self, prefix: Sequence[int]) -> np.ndarray:
        key = tuple(prefix[-3:])
        z = self._rng(key, self.seed).standard_normal(self.vocab) * self.sharpness
        if self.noise:
            z = z + self._rng(key, 10_000 + self.noise_seed).standard_normal(self.vocab) * self.noise
        return z.astype(np.float32)

    def experts_for(self, prefix: Sequence[int]) -> np.ndarray:
        out = np.empty((self.n_moe_layers, self.n_expert_used), dtype=np.int32)
        for layer in range(self.n_moe_layers):
            score = self._rng((layer, tuple(prefix[-2:])), 77 + self.seed).standard_normal(self.n_expert)
            out[layer] = np.argsort(-score)[: self.n_expert_used]
        return out

    # -- the Target protocol -----------------------------------------------------------------
    @property
    def n_ctx(self) -> int:
        return self._n_ctx

    @property
    def n_past(self) -> int:
        return len(self.tokens)

    @property
    def eos_ids(self) -> frozenset[int]:
        return frozenset() if self.eos is None else frozenset({self.eos})

    def tokenize(self, text: str, add_bos: bool = True) -> list[int]:
        return [ord(c) % self.vocab for c in text]

    def token_bytes(self, token: int) -> bytes:
        return self._pieces[token]

    def detokenize(self, tokens: Sequence[int]) -> str:
        return b"".join(self._pieces[t] for t in tokens).decode("utf-8", errors="replace")

    def eval(self, tokens: Sequence[int]) -> EvalResult:
        tokens = list(tokens)
        if not tokens:
            raise ValueError("eval of no tokens")
        if len(self.tokens) + len(tokens) > self._n_ctx:
            raise RuntimeError("context overflow")
        self.eval_calls += 1
        logits, routes = [], []
        for t in tokens:
            self.tokens.append(int(t))
            logits.append(self.logits_after(self.tokens))
            if self.n_moe_layers:
                routes.append(self.experts_for(self.tokens))
        routing = np.stack(routes, axis=1) if routes else None  # [layers, n, k]
        if self.clock is not None and self.cost is not None:
            uniq = None
            if routing is not None:
                uniq = float(np.mean([len(np.unique(layer)) for layer in routing]))
            self.clock.advance(self.cost(len(tokens), uniq))
        return EvalResult(np.stack(logits), routing)

    def truncate(self, n_keep: int) -> None:
        if n_keep < 0 or n_keep > len(self.tokens):
            raise ValueError(f"truncate({n_keep}) with {len(self.tokens)} cached")
        del self.tokens[n_keep:]

    def close(self) -> None:
        pass


def reference_greedy(model: FakeModel, prompt: Sequence[int], max_tokens: int) -> list[int]:
    """Plain greedy decoding straight from the model function, without the engine or a cache."""
    ctx = list(prompt)
    out: list[int] = []
    while len(out) < max_tokens and len(ctx) <= model.n_ctx:  # as the engine: a full cache still predicts one more
        tok = int(np.argmax(model.logits_after(ctx)))
        if tok in model.eos_ids:
            break
        ctx.append(tok)
        out.append(tok)
    return out
