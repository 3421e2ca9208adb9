"""A drafter backed by any :class:`backends.base.Target` (a small dense or MoE model)."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from backends.base import Draft, Target, softmax


class ModelDrafter:
    """Drafts with a model of its own. Its KV cache follows the target's committed context lazily:
    on each ``propose`` it keeps the longest common prefix, evaluates the missing tokens in one
    batch (so a drafter idle during K=0 stretches catches up in one call), then drafts ``k`` tokens
    one by one. The last drafted token is never evaluated (nobody needs its logits yet).

    ``max_catch_up`` bounds what a catch-up costs: when more tokens than that were missed (a long
    K=0 stretch), the cache restarts on the most recent ``max_catch_up`` tokens instead. Drafts
    then see a shorter context, which can only lower acceptance, never change the output (the
    target verifies every token). The prompt itself is always read in full."""

    def __init__(self, model: Target, name: str | None = None, max_catch_up: int | None = None):
        if max_catch_up is not None and max_catch_up < 1:
            raise ValueError(f"max_catch_up must be at least 1, got {max_catch_up}")
        self.model = model
        self.name = name or f"model:{model.info.path}"
        self.max_catch_up = max_catch_up
        self._offset = 0  # index in the context of the token in cache slot 0
        self._cached: list[int] = []  # tokens currently in the drafter's KV cache

    def reset(self) -> None:
        self.model.truncate(0)
        self._cached = []
        self._offset = 0

    def close(self) -> None:
        self.model.close()

    def prefill(self, context: Sequence[int]) -> None:
        """Read ``context`` now (e.g. the prompt, outside a timed request)."""
        self._sync(context)

    def _sync(self, context: Sequence[int]) -> np.ndarray:
        """Make the cache hold ``context`` (or its recent window); return the logits after it."""
        if self._offset and len(context) <= self._offset:
            self.reset()  # the context no longer reaches the window: start over
        base = self._offset
        n = 0
        limit = min(len(self._cached), len(context) - base)
        while n < limit and self._cached[n] == context[base + n]:
            n += 1
        if base + n == len(context):  # everything cached already: re-evaluate the last token
            n -= 1
        missed = len(context) - base - n
        if self.max_catch_up is not None and n > 0 and missed > self.max_catch_up:
            n, base = 0, len(context) - self.max_catch_up
            self._offset = base
        self.model.truncate(n)
        self._cached = self._cached[:n]
        pending = list(context[base + n:])
        out = self.model.eval(pending)
        self._cached.extend(pending)
        return out.logits[-1]

    def propose(
        self, context: Sequence[int], k: int, temperature: float, rng: np.random.Generator
    ) -> Draft:
        if k <= 0 or not context:
            return Draft([], None)
        k = min(k, self.model.n_ctx - (len(context) - self._offset))
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
