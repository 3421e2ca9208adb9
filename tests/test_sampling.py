"""Speculative sampling must leave the target's distribution unchanged (chi-square tests).

Every test is seeded, so it is deterministic; the thresholds are p > 1e-3 for the correct scheme,
and a deliberately wrong scheme must be rejected by the same test, so the test can fail.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy.stats import chisquare

from backends.base import softmax
from backends.model_drafter import ModelDrafter
from backends.ngram import NgramDrafter
from cascade_tui.engine import GenerationConfig, IterationEvent, SpeculativeDecoder
from cascade_tui.engine.acceptance import verify_sampling
from cascade_tui.policy import make_policy
from fakes import FakeModel, ScriptedClock


def chi2_p(counts: np.ndarray, probs: np.ndarray) -> float:
    n = counts.sum()
    expected = probs * n
    keep = expected > 5  # pool rare cells so the chi-square approximation holds
    obs = np.append(counts[keep], counts[~keep].sum())
    exp = np.append(expected[keep], expected[~keep].sum())
    if exp[-1] == 0:
        obs, exp = obs[:-1], exp[:-1]
    return chisquare(obs, exp).pvalue


def _draw_first_tokens(p_logits, q, temperature, n, rng, scheme=verify_sampling):
    """The first emitted token of an iteration whose K draft tokens were drawn from ``q``."""
    counts = np.zeros(p_logits.shape[-1], dtype=np.int64)
    k = q.shape[0]
    for _ in range(n):
        drafted = [int(rng.choice(q.shape[-1], p=q[i])) for i in range(k)]
        n_acc, nxt = scheme(p_logits, drafted, q, temperature, rng)
        first = drafted[0] if n_acc > 0 else nxt
        counts[first] += 1
    return counts


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_verify_sampling_first_token_follows_target(temperature):
    rng = np.random.default_rng(123)
    vocab, k = 8, 3
    p_logits = rng.standard_normal((k + 1, vocab)).astype(np.float32) * 1.5
    q = softmax(rng.standard_normal((k, vocab)) * 1.5, 1.0)  # a drafter that disagrees with p
    counts = _draw_first_tokens(p_logits, q, temperature, 30_000, rng)
    p0 = softmax(p_logits[0], temperature)
    assert chi2_p(counts, p0) > 1e-3
    # the drafter's own distribution is far from p: the test can tell the two apart
    assert chi2_p(counts, q[0]) < 1e-6


def test_a_wrong_acceptance_rule_is_caught():
    """Negative control: accepting every draft (ignoring p/q) must fail the same test."""

    def accept_all(logits, drafted, q, temperature, rng):
        return len(drafted), int(np.argmax(logits[-1]))

    rng = np.random.default_rng(7)
    vocab, k = 8, 3
    p_logits = rng.standard_normal((k + 1, vocab)).astype(np.float32) * 1.5
    q = softmax(rng.standard_normal((k, vocab)) * 1.5, 1.0)
    counts = _draw_first_tokens(p_logits, q, 1.0, 30_000, rng, scheme=accept_all)
    assert chi2_p(counts, softmax(p_logits[0], 1.0)) < 1e-6


def _exact_two_token_distribution(model: FakeModel, prompt, temperature):
    v = model.vocab
    probs = np.zeros((v, v))
    p1 = softmax(model.logits_after(prompt), temperature)
    for a in range(v):
        p2 = softmax(model.logits_after(list(prompt) + [a]), temperature)
        probs[a] = p1[a] * p2
    return probs.ravel()


@pytest.mark.parametrize(
    "policy,drafter",
    [("static:3", "model"), ("static:1", "model"), ("cascade", "model"), ("heuristic", "model"), ("learned", "model"),
     ("static:3", "ngram"), ("off", "model")],
)
def test_engine_samples_the_target_distribution(policy, drafter):
    """End to end through the decoder: the first two generated tokens (which cross an
    accept/reject boundary and the bonus token) follow the target's joint distribution."""
    vocab, temperature, n = 5, 1.0, 5000
    prompt = [1, 2, 1, 2, 1]  # repetitive so the n-gram drafter proposes something
    # learned drafts only where its measured costs say it pays: give it a memory-bound target on
    # a scripted clock (a verify of n tokens costs 1 + 0.05 n, drafting nothing)
    clock = ScriptedClock() if policy == "learned" else None
    target = FakeModel(vocab=vocab, seed=11, sharpness=1.2, clock=clock,
                       cost=(lambda n, u: 1.0 + 0.05 * n) if clock else None)
    d = (ModelDrafter(FakeModel(vocab=vocab, seed=11, noise=1.5, sharpness=1.2))
         if drafter == "model" else NgramDrafter())
    params = {"cascade": {"base_iters": 1, "test_iters": 1}, "learned": {"min_utility": 0.0}}.get(policy)
    dec = SpeculativeDecoder(target, d, make_policy(policy, params), **({"clock": clock} if clock else {}))
    counts = np.zeros(vocab * vocab, dtype=np.int64)
    drafted_any = 0
    # cascade spends its first iteration at K = 0 (t_base): a third token lets its second draft
    max_tokens = 3 if policy in ("cascade", "learned") else 2
    for seed in range(n):
        out = []
        for ev in dec.generate(prompt, GenerationConfig(max_tokens=max_tokens, temperature=temperature, seed=seed)):
            if isinstance(ev, IterationEvent):
                out.extend(ev.emitted)
                drafted_any += bool(ev.drafted)
        counts[out[0] * vocab + out[1]] += 1
    exact = _exact_two_token_distribution(FakeModel(vocab=vocab, seed=11, sharpness=1.2), prompt, temperature)
    assert chi2_p(counts, exact) > 1e-3
    if policy != "off":
        assert drafted_any > n // 2  # speculation really happened


def test_sampling_is_reproducible_with_a_seed():
    def sample(seed):
        dec = SpeculativeDecoder(FakeModel(seed=1), ModelDrafter(FakeModel(seed=1, noise=1)), make_policy("static:3"))
        return [t for ev in dec.generate([1, 2], GenerationConfig(max_tokens=30, temperature=0.8, seed=seed))
                if isinstance(ev, IterationEvent) for t in ev.emitted]

    assert sample(5) == sample(5)
    assert any(sample(5) != sample(s) for s in range(6, 9))


def _exact_three_token_distribution(model: FakeModel, prompt, temperature):
    v = model.vocab
    probs = np.zeros((v, v, v))
    p1 = softmax(model.logits_after(prompt), temperature)
    for a in range(v):
        p2 = softmax(model.logits_after(list(prompt) + [a]), temperature)
        for b in range(v):
            p3 = softmax(model.logits_after(list(prompt) + [a, b]), temperature)
            probs[a, b] = p1[a] * p2[b] * p3
    return probs.ravel()


def _three_tokens(policy: str, n: int, drafter: str = "model"):
    """Counts of the first three generated tokens; the first iteration drafts two tokens (K = 3
    clamped by the budget), so draft positions 1 and 2 are both verified by sampling."""
    vocab, temperature = 4, 1.0
    prompt = [1, 2, 1, 2, 1]
    target = FakeModel(vocab=vocab, seed=13, sharpness=1.2)
    d = (ModelDrafter(FakeModel(vocab=vocab, seed=13, noise=1.5, sharpness=1.2))
         if drafter == "model" else NgramDrafter())
    dec = SpeculativeDecoder(target, d, make_policy(policy))
    counts = np.zeros(vocab ** 3, dtype=np.int64)
    second_position = 0
    for seed in range(n):
        out = []
        for ev in dec.generate(prompt, GenerationConfig(max_tokens=3, temperature=temperature, seed=seed)):
            if isinstance(ev, IterationEvent):
                out.extend(ev.emitted)
                second_position += len(ev.drafted) >= 2 and ev.accepted >= 1  # position 2 was verified
        counts[(out[0] * vocab + out[1]) * vocab + out[2]] += 1
    exact = _exact_three_token_distribution(FakeModel(vocab=vocab, seed=13, sharpness=1.2), prompt, temperature)
    return counts, exact, second_position


def test_the_second_draft_position_samples_the_target_distribution():
    counts, exact, second = _three_tokens("static:3", 6000)
    assert second > 1000  # the second draft position was reached often
    assert chi2_p(counts, exact) > 1e-3


def test_using_the_first_positions_draft_probabilities_everywhere_is_caught(monkeypatch):
    """Negative control (issue 10): a mutation that verifies every draft position against the
    drafter's distribution at position 0 must fail the three-token test."""
    import cascade_tui.engine.decoder as decoder

    def first_position_everywhere(logits, drafted, draft_probs, temperature, rng):
        wrong = None if draft_probs is None else np.repeat(draft_probs[:1], len(draft_probs), axis=0)
        return verify_sampling(logits, drafted, wrong, temperature, rng)

    monkeypatch.setattr(decoder, "verify_sampling", first_position_everywhere)
    counts, exact, second = _three_tokens("static:3", 6000)
    assert second > 1000
    assert chi2_p(counts, exact) < 1e-6
