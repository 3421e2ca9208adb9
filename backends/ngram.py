"""Prompt-lookup drafting: propose the tokens that followed the last occurrence of the context's
trailing n-gram. Needs no model, works with any vocabulary, costs microseconds."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from backends.base import Draft


class NgramDrafter:
    name = "ngram"

    def __init__(self, max_ngram: int = 3, min_ngram: int = 1):
        if not 1 <= min_ngram <= max_ngram:
            raise ValueError(f"need 1 <= min_ngram <= max_ngram, got {min_ngram}, {max_ngram}")
        self.max_ngram = max_ngram
        self.min_ngram = min_ngram

    def reset(self) -> None:
        pass

    def close(self) -> None:
        pass

    def propose(
        self, context: Sequence[int], k: int, temperature: float, rng: np.random.Generator
    ) -> Draft:
        if k <= 0:
            return Draft([])
        ctx = np.asarray(context)
        n_ctx = len(ctx)
        for n in range(min(self.max_ngram, n_ctx - 1), self.min_ngram - 1, -1):
            pattern = ctx[n_ctx - n:]
            # windows starting at 0 .. n_ctx-n-1 (exclude the trailing n-gram itself)
            windows = np.lib.stride_tricks.sliding_window_view(ctx[:-1], n)
            hits = np.flatnonzero((windows == pattern).all(axis=1))
            if hits.size:
                start = int(hits[-1]) + n  # most recent occurrence
                follow = ctx[start:start + k].tolist()
                if follow:
                    return Draft([int(t) for t in follow])
        return Draft([])
