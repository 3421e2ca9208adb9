"""The speculative decoder over the in-memory backend of tests/fakes.py."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from backends.model_drafter import ModelDrafter
from backends.ngram import NgramDrafter
from cascade_tui.engine import (
    EndEvent,
    EngineError,
    GenerationConfig,
    IterationEvent,
    ParamEvent,
    PhaseEvent,
    SetParam,
    SpeculativeDecoder,
    StartEvent,
    SwitchPolicy,
)
from cascade_tui.policy import Decision, Observation, make_policy
from cascade_tui.policy.static import StaticPolicy
from fakes import FakeModel, ScriptedClock, moe_cost, reference_greedy

POLICIES = ["off"] + [f"static:{k}" for k in range(1, 9)] + ["cascade", "heuristic", "learned"]


def run(decoder, prompt, **cfg):
    events = list(decoder.generate(prompt, GenerationConfig(**cfg)))
    its = [e for e in events if isinstance(e, IterationEvent)]
    out = [t for e in its for t in e.emitted]
    return events, its, out


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 10_000),
    noise=st.sampled_from([0.0, 0.7, 2.0, 6.0]),
    policy=st.sampled_from(POLICIES),
    drafter=st.sampled_from(["model", "ngram"]),
    prompt=st.lists(st.integers(0, 15), min_size=1, max_size=12),
    max_tokens=st.integers(1, 50),
    n_ctx=st.sampled_from([24, 40, 512]),
    eos=st.sampled_from([None, 3]),
)
def test_greedy_output_equals_plain_decoding(seed, noise, policy, drafter, prompt, max_tokens, n_ctx, eos):
    if len(prompt) >= n_ctx:
        return
    vocab = 16
    target = FakeModel(vocab=vocab, seed=seed, n_ctx=n_ctx, eos=eos)
    if drafter == "model":
        d = ModelDrafter(FakeModel(vocab=vocab, seed=seed, noise=noise, n_ctx=n_ctx, eos=eos))
    else:
        d = NgramDrafter()
    dec = SpeculativeDecoder(target, d, make_policy(policy, {"test_iters": 2} if policy == "cascade" else None))
    events, its, out = run(dec, prompt, max_tokens=max_tokens)
    ref = reference_greedy(FakeModel(vocab=vocab, seed=seed, n_ctx=n_ctx, eos=eos), prompt, max_tokens)
    assert out == ref
    end = events[-1]
    assert isinstance(end, EndEvent) and end.generated_tokens == len(out)
    assert end.reason in ("eos", "max_tokens", "context")
    if end.reason == "max_tokens":
        assert len(out) == max_tokens
    if end.reason == "eos":
        assert len(out) < max_tokens or max_tokens == len(out)
    # the cache holds exactly the committed tokens but the last (after EOS it may also hold the
    # token before EOS and accepted drafts past it; the decoder knows, and trims on reuse)
    committed = list(prompt) + out
    assert target.tokens == dec._cached
    if end.reason == "eos":
        assert target.tokens[: len(committed)] == committed
    else:
        assert target.tokens == committed[:-1]
    for e in its:
        assert 0 <= e.accepted <= len(e.drafted) <= e.k
        assert e.n_past <= n_ctx


def test_acceptance_is_partial_with_a_noisy_drafter_and_total_with_a_perfect_one():
    for noise, lo, hi in [(0.0, 1.0, 1.0), (2.0, 0.1, 0.95)]:
        target = FakeModel(seed=5)
        dec = SpeculativeDecoder(target, ModelDrafter(FakeModel(seed=5, noise=noise)), make_policy("static:4"))
        _, its, out = run(dec, [1, 2, 3], max_tokens=80)
        rate = sum(e.accepted for e in its) / sum(len(e.drafted) for e in its)
        assert lo <= rate <= hi
        assert out == reference_greedy(FakeModel(seed=5), [1, 2, 3], 80)
        # speculation pays in iterations: fewer iterations than tokens
        assert len(its) < len(out)


def test_events_are_complete_and_ordered():
    clock = ScriptedClock()
    target = FakeModel(seed=2, clock=clock, cost=moe_cost())
    dec = SpeculativeDecoder(target, ModelDrafter(FakeModel(seed=2, noise=1.0)), make_policy("cascade"), clock=clock)
    events, its, out = run(dec, [4, 5, 6], max_tokens=60)
    assert isinstance(events[0], StartEvent) and events[0].prompt_tokens == 3
    assert [e.seq for e in events] == list(range(len(events)))
    assert all(b.t >= a.t for a, b in zip(events, events[1:]))
    assert [e.index for e in its] == list(range(len(its)))
    phases = [e for e in events if isinstance(e, PhaseEvent)]
    assert [p.phase for p in phases][:2] == ["base", "test"]
    for e in its:
        assert e.routing is not None and e.routing.shape == (2, len(e.drafted) + 1, 2)
        assert 2.0 <= e.unique_experts <= 8.0
        assert e.iter_s >= e.verify_s > 0
        assert e.text == target.detokenize(e.emitted)
        # the leading ``from_draft`` characters are the accepted drafted tokens' text
        assert e.text[: e.from_draft] == target.detokenize(e.emitted[: e.accepted])
        d = e.to_dict()
        assert d["type"] == "iteration" and isinstance(d["routing"], list)
    assert events[-1].text == target.detokenize(out)


def test_lazy_drafter_catch_up_is_one_batch():
    draft_model = FakeModel(seed=3, noise=0.5)
    drafter = ModelDrafter(draft_model)
    target = FakeModel(seed=3)
    dec = SpeculativeDecoder(target, drafter, make_policy("off"))
    list(dec.generate([1, 2, 3], GenerationConfig(max_tokens=20)))
    assert draft_model.eval_calls == 0  # idle while K = 0
    # resume speculation mid-request: the drafter evaluates the whole missed context in one call
    dec.send(SwitchPolicy("static:3"))
    calls = []
    orig = draft_model.eval

    def spy(tokens):
        calls.append(len(tokens))
        return orig(tokens)

    draft_model.eval = spy
    dec2 = SpeculativeDecoder(FakeModel(seed=3), drafter, make_policy("off"))
    gen = dec2.generate([1, 2, 3], GenerationConfig(max_tokens=30))
    for ev in gen:
        if isinstance(ev, IterationEvent) and ev.index == 10:
            dec2.send(SwitchPolicy("static:3"))
    assert calls[0] == 3 + 11 - 0  # prompt + 11 emitted tokens, in one batch
    assert max(calls[1:]) <= 2  # afterwards only the incremental tokens


def test_control_messages_apply_at_iteration_boundaries_from_another_thread():
    target = FakeModel(seed=4)
    dec = SpeculativeDecoder(target, ModelDrafter(FakeModel(seed=4, noise=1.0)), make_policy("cascade"))
    seen = []
    sender = threading.Thread(target=lambda: [dec.send(SetParam("k_max", 3)), dec.send(SetParam("k_max", 99))])
    for ev in dec.generate([1, 2], GenerationConfig(max_tokens=200)):
        seen.append(ev)
        if isinstance(ev, IterationEvent) and ev.index == 5:
            sender.start()
            sender.join()
    params = [e for e in seen if isinstance(e, ParamEvent)]
    assert [(p.key, p.ok) for p in params] == [("k_max", True), ("k_max", False)]
    assert "out of range" in params[1].error
    assert dec.policy.get("k_max") == 3
    after = [e for e in seen if isinstance(e, IterationEvent) and e.seq > params[1].seq]
    assert after and max(e.k for e in after) <= 3
    out = [t for e in seen if isinstance(e, IterationEvent) for t in e.emitted]
    assert out == reference_greedy(FakeModel(seed=4), [1, 2], 200)


def test_policy_switch_and_cancel():
    dec = SpeculativeDecoder(FakeModel(seed=6), NgramDrafter(), make_policy("off"))
    ks = []
    for ev in dec.generate([1, 2, 1, 2, 1, 2], GenerationConfig(max_tokens=100)):
        if isinstance(ev, IterationEvent):
            ks.append(ev.k)
            if ev.index == 3:
                dec.send(SwitchPolicy("bogus"))
                dec.send(SwitchPolicy("static:2"))
            if ev.index == 8:
                dec.cancel()
        if isinstance(ev, ParamEvent) and ev.key == "policy" and not ev.ok:
            assert "unknown policy" in ev.error
    assert ks[:4] == [0, 0, 0, 0] and set(ks[4:]) <= {2}
    assert len(ks) == 9
    assert ev.reason == "cancelled"


def test_prompt_longer_than_context_is_a_clear_error():
    dec = SpeculativeDecoder(FakeModel(n_ctx=8), None, make_policy("off"))
    with pytest.raises(EngineError, match="context"):
        list(dec.generate(list(range(8)), GenerationConfig()))
    with pytest.raises(EngineError, match="empty"):
        list(dec.generate([], GenerationConfig()))


def test_context_limit_stops_with_reason():
    dec = SpeculativeDecoder(FakeModel(seed=1, n_ctx=16), ModelDrafter(FakeModel(seed=1, noise=1, n_ctx=16)),
                             make_policy("static:5"))
    events, its, out = run(dec, [1, 2, 3], max_tokens=100)
    assert events[-1].reason == "context"
    assert out == reference_greedy(FakeModel(seed=1, n_ctx=16), [1, 2, 3], 100)


def test_second_request_reuses_the_cached_prefix():
    target = FakeModel(seed=8)
    dec = SpeculativeDecoder(target, ModelDrafter(FakeModel(seed=8, noise=1)), make_policy("static:2"))
    _, _, out1 = run(dec, [1, 2, 3, 4], max_tokens=10)
    events, _, out2 = run(dec, [1, 2, 3, 4] + out1 + [5], max_tokens=10)
    assert events[0].reused_tokens == 4 + len(out1) - 1  # the last output token was never evaluated
    assert out2 == reference_greedy(FakeModel(seed=8), [1, 2, 3, 4] + out1 + [5], 10)


def test_cascade_avoids_speculation_when_moe_verification_is_expensive():
    """Verification cost follows unique experts (like a real MoE): when a draft drags in many
    experts and acceptance is poor, Cascade runs mostly at K = 0 while static K loses time."""
    results = {}
    for policy in ["off", "static:4", "cascade"]:
        clock = ScriptedClock()
        target = FakeModel(seed=9, clock=clock, cost=moe_cost(base=1.0, per_expert=0.6))
        drafter = ModelDrafter(FakeModel(seed=9, noise=6.0))
        dec = SpeculativeDecoder(target, drafter, make_policy(policy), clock=clock)
        events, its, out = run(dec, [1, 2, 3], max_tokens=400)
        results[policy] = (clock.now, out, its)
    assert results["static:4"][1] == results["off"][1] == results["cascade"][1]
    assert results["static:4"][0] > results["off"][0] * 1.2  # static speculation hurts here
    assert results["cascade"][0] < results["off"][0] * 1.10  # Cascade's loss stays small
    its = results["cascade"][2]
    assert sum(1 for e in its if e.k == 0) / len(its) >= 0.8


def test_cascade_speculates_when_it_pays():
    results = {}
    for policy in ["off", "cascade"]:
        clock = ScriptedClock()
        target = FakeModel(seed=9, clock=clock, cost=moe_cost(base=1.0, per_expert=0.05))
        drafter = ModelDrafter(FakeModel(seed=9, noise=0.3))
        dec = SpeculativeDecoder(target, drafter, make_policy(policy), clock=clock)
        _, its, out = run(dec, [1, 2, 3], max_tokens=400)
        results[policy] = (clock.now, out, its)
    assert results["cascade"][1] == results["off"][1]
    assert results["cascade"][0] < results["off"][0] / 1.5
    assert np.mean([e.k for e in results["cascade"][2]]) > 2


def test_bounded_catch_up_reads_a_recent_window_and_keeps_output_exact():
    draft_model = FakeModel(seed=12, noise=0.5)
    drafter = ModelDrafter(draft_model, max_catch_up=8)
    calls = []
    orig = draft_model.eval
    draft_model.eval = lambda tokens: (calls.append(len(tokens)), orig(tokens))[1]
    dec = SpeculativeDecoder(FakeModel(seed=12), drafter, make_policy("off"))
    prompt = list(range(1, 31))
    out, late_accepted = [], 0
    for ev in dec.generate(prompt, GenerationConfig(max_tokens=80)):
        if isinstance(ev, IterationEvent):
            out.extend(ev.emitted)
            if ev.index > 41:
                late_accepted += ev.accepted
            if ev.index == 0:
                dec.send(SwitchPolicy("static:3"))  # the prompt is read in full at the first draft
            if ev.index == 12:
                dec.send(SwitchPolicy("off"))
            if ev.index == 40:
                dec.send(SwitchPolicy("static:3"))  # after ~28 skipped tokens: a windowed catch-up
    assert calls[0] == 30 + 1  # the prompt and the first token, in full
    assert 8 in calls[1:] and max(calls[1:]) <= 8
    assert out == reference_greedy(FakeModel(seed=12), prompt, 80)
    assert late_accepted > 0  # the drafter still drafts usefully after the window restart


@pytest.mark.parametrize("policy", ["cascade", "learned"])
def test_each_iteration_says_which_k_its_utility_estimates(policy):
    """``utility_k`` is the K the policy uses next: the next iteration runs it (unless the engine
    clamps it at the end of the budget), so a live view can put the estimate on the right bar."""
    clock = ScriptedClock()
    target = FakeModel(seed=9, clock=clock, cost=moe_cost(base=1.0, per_expert=0.05))
    dec = SpeculativeDecoder(target, ModelDrafter(FakeModel(seed=9, noise=0.3)), make_policy(policy), clock=clock)
    _, its, _ = run(dec, [1, 2, 3], max_tokens=300)
    with_u = [(a, b) for a, b in zip(its, its[1:]) if a.utility is not None]
    assert len(with_u) > len(its) // 2 and any(a.utility_k > 0 for a, _ in with_u)
    assert all(a.utility_k == b.k for a, b in with_u[:-10])
    assert all(e.utility_k is None for e in its if e.utility is None)


class _Shadowing(StaticPolicy):
    """K = 0 always, asking for a shadow draft of ``n`` tokens every iteration; keeps what it saw."""

    name = "shadowing"

    def __init__(self, n: int):
        super().__init__(k=0)
        self.n = n
        self.seen: list[Observation] = []

    def decide(self) -> Decision:
        return Decision(0, "set", "watching", shadow=self.n)

    def observe(self, obs: Observation) -> None:
        self.seen.append(obs)


@pytest.mark.parametrize("noise", [0.0, 1.0, 3.0])
def test_shadow_drafts_report_the_drafters_agreement_and_change_nothing(noise):
    prompt, n = [3, 1, 4], 4
    target = FakeModel(seed=11)
    dec = SpeculativeDecoder(target, ModelDrafter(FakeModel(seed=11, noise=noise)), pol := _Shadowing(n))
    _, its, out = run(dec, prompt, max_tokens=60)
    assert out == reference_greedy(FakeModel(seed=11), prompt, 60)
    assert all(e.drafted == [] and e.accepted == 0 and e.k == 0 for e in its)  # nothing verified
    # replay the comparison independently: each shadow draft is the drafter's own greedy
    # continuation of the context, resolved at its first miss or when every token matched
    reference_drafter = FakeModel(seed=11, noise=noise)
    context, pending, results = list(prompt), None, []
    for e, obs in zip(its, pol.seen):
        assert (obs.shadowed, obs.shadow_checked, obs.shadow_matched) == (len(e.shadow), e.shadow_checked, e.shadow_matched)
        if e.shadow:
            assert pending is None  # one at a time
            left = 60 - (len(context) - len(prompt))  # tokens still to write: a shadow draft is no longer
            assert e.shadow == reference_greedy(reference_drafter, context, n)[:min(n, left)]
            pending = (e.index, e.shadow)
            assert e.draft_s >= 0
        context.extend(e.emitted)
        if e.shadow_checked:
            start, toks = pending
            written = out[start:start + len(toks)]
            matched = next((i for i, (a, b) in enumerate(zip(toks, written)) if a != b), len(toks))
            assert (e.shadow_matched, e.shadow_checked) == (matched, min(matched + 1, len(toks)))
            results.append(matched)
            pending = None
    assert results  # shadows resolved
    if noise == 0.0:
        assert all(m == n for m in results)  # a perfect drafter matches every shadow token
    if noise == 3.0:
        assert min(results) < n


def test_shadow_drafts_are_greedy_only():
    target = FakeModel(seed=4)
    dec = SpeculativeDecoder(target, ModelDrafter(FakeModel(seed=4)), pol := _Shadowing(3))
    _, its, _ = run(dec, [1, 2], max_tokens=20, temperature=0.8, seed=1)
    assert all(not e.shadow and not e.shadow_checked for e in its)
    assert all(o.shadowed == 0 for o in pol.seen)


def test_the_policys_own_time_counts_in_tokens_per_second_but_not_in_what_it_observes():
    """A policy that takes 2 ms to decide and 3 ms to observe (a scripted clock): each iteration
    reports policy_s = 5 ms apart from iter_s; the decode time, and so tok/s, includes it; the
    observations the policy gets do not."""
    from cascade_tui.stats import RunStats

    clock = ScriptedClock()
    seen: list[float] = []

    class Slow(StaticPolicy):
        def decide(self):
            clock.advance(0.002)
            return super().decide()

        def observe(self, obs):
            seen.append(obs.iter_s)
            clock.advance(0.003)
            super().observe(obs)

    target = FakeModel(seed=2, clock=clock, cost=moe_cost())
    dec = SpeculativeDecoder(target, ModelDrafter(FakeModel(seed=2, noise=0.3)), Slow(k=2), clock=clock)
    events, its, _ = run(dec, [4, 5, 6], max_tokens=30)
    assert its and all(abs(e.policy_s - 0.005) < 1e-12 for e in its)
    assert seen == [e.iter_s for e in its]
    stats = RunStats()
    for ev in events:
        stats.add(ev)
    assert stats.decode_s == pytest.approx(sum(e.iter_s for e in its) + 0.005 * len(its))
