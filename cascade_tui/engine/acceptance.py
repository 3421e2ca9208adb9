"""Deciding which drafted tokens the target keeps.

Greedy (temperature 0): keep drafted tokens while they equal the target's argmax; the first
mismatch is replaced by the target's argmax, and if all match the target adds a bonus token. The
output is therefore exactly what plain greedy decoding would produce.

Sampling (temperature > 0): the standard speculative-sampling rejection scheme (Leviathan et al.
2023, Chen et al. 2023): drafted token x with draft probability q(x) is kept with probability
min(1, p(x) / q(x)); on rejection a token is drawn from normalize(max(0, p - q)); if all are kept a
bonus token is drawn from p. Each emitted token is then distributed exactly as the target's p.
A deterministic proposal (no ``q``, e.g. the n-gram drafter) counts as q = one-hot(x).
"""

from __future__ import annotations

import numpy as np

from backends.base import softmax


def verify_greedy(logits: np.ndarray, drafted: list[int]) -> tuple[int, int]:
    """Return (accepted count, next token) for ``logits`` of shape [len(drafted) + 1, vocab]."""
    choice = np.argmax(logits, axis=-1)
    for i, tok in enumerate(drafted):
        if int(choice[i]) != tok:
            return i, int(choice[i])
    return len(drafted), int(choice[len(drafted)])


def verify_sampling(
    logits: np.ndarray,
    drafted: list[int],
    draft_probs: np.ndarray | None,
    temperature: float,
    rng: np.random.Generator,
) -> tuple[int, int]:
    """Lossless speculative sampling; see the module docstring."""
    p_all = softmax(logits, temperature)
    for i, tok in enumerate(drafted):
        p = p_all[i]
        if draft_probs is None:
            q_tok = 1.0
        else:
            q_tok = float(draft_probs[i][tok])
        if q_tok > 0 and rng.random() < min(1.0, p[tok] / q_tok):
            continue
        if draft_probs is None:
            resid = p.copy()
            resid[tok] = 0.0
        else:
            resid = np.maximum(p - draft_probs[i], 0.0)
        total = resid.sum()
        if total <= 0:  # p == q to rounding: any draw from p is exact
            resid, total = p, p.sum()
        return i, int(rng.choice(resid.shape[-1], p=resid / total))
    p = p_all[len(drafted)]
    return len(drafted), int(rng.choice(p.shape[-1], p=p))
