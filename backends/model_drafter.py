"""A drafter backed by any :class:`backends.base.Target` (a small dense or MoE model)."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from backends.base import Draft, Target


def softmax(logits: np.ndarray, temperature: float) -> np.ndarray:
    z = logits.astype(np.float64) / temperature
    z -= z.max(axis=-1, keepdims=True)
    np.exp(z, out=z)
    z /= z.sum(axis=-1, keepdims=True)
    return z


class ModelDrafter:
    """Drafts with a model of its own. Its KV cache follows the target's committed context lazily:
    on each ``propose`` it keeps the longest common prefix, evaluates the missing tokens in one
    batch (so a drafter idle during K=0 stretches catches up in one call), then drafts ``k`` tokens
    one by one. The last drafted token is never evaluated (nobody needs its logits yet)."""

    def __init__(self, model: Target, name: str | None = None):
        self.model = model
        self.name = name or f"model:{model.info.path}"
        self._cached: list[int] = []  # tokens currently in the drafter's KV cache

    def reset(self) -> None:
        self.model.truncate(0)
        self._cached = []

    def close(self) -> None:
        self.model.close()

    def _sync(self, context: Sequence[int]) -> np.ndarray:
        """Make the cache hold ``context``; return the logits after its last token."""
        n = 0
        limit = min(len(self._cached), len(context))
        while n < limit and self._cached[n] == context[n]:
            n += 1
        if n == len(context):  # everything cached already: re-evaluate the last token for logits
            n -= 1
        self.model.truncate(n)
        self._cached = list(context[:n])
        pending = list(context[n:])
        out = self.model.eval(pending)
        self._cached.extend(pending)
        return out.logits[-1]

    def propose(
        self, context: Sequence[int], k: int, temperature: float, rng: np.random.Generator
    ) -> Draft:
        if k <= 0 or not context:
            return Draft([], None)
        k = min(k, self.model.n_ctx - len(context))
        if k <= 0:
            return Draft([], None)
        logits = self._sync(context)
        tokens: list[int] = []
        probs = [] if temperature > 0 else None
        for i in range(k):
            if temperature > 0:
                q = softmax(logits, temperature)
                tok = int(rng.choice(q.shape[-1], p=q))
                probs.append(q)
            else:
                tok = int(np.argmax(logits))
            tokens.append(tok)
            if i + 1 < k:
                logits = self.model.eval([tok]).logits[-1]
                self._cached.append(tok)
        return Draft(tokens, np.stack(probs) if probs else None)
