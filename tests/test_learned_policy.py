"""The ``learned`` policy on its own, driven by scripted cost models with noise and partial
acceptance (no engine, no backend), plus its cost cache through a real session."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest

from cascade_tui.policy import LearnedPolicy, Observation, PolicyError, make_policy
from cascade_tui.policy.learned import _fit_curve, _median, expected_emitted
from fakes import grown_demo

# verify time (s) for n = 1..9 tokens measured on an H100 with a Mixtral-shaped MoE (DESIGN 5)
H100 = [2.81, 4.28, 5.60, 6.20, 7.02, 7.49, 7.75, 7.94, 8.69]


def memory_bound(n: int) -> float:
    return (H100[n - 1] if n <= 9 else 8.69 + 0.3 * (n - 9)) * 1e-3


def compute_bound(n: int) -> float:  # the demo pair on a CPU: cost follows tokens
    return (0.13 + 0.36 * n) * 1e-3


def run(spec, cost, draft_s, accept, iters=400, seed=0, requests=1, params=None, policy=None, shadow=False,
        shadows=None):
    """Tokens per second of ``spec`` and the K it ran each iteration. Timings carry log-normal
    noise (sigma 0.15) and a 2x spike on 10% of iterations; each drafted position is accepted with
    probability ``accept`` (a number, a tuple of rates per draft position given the earlier ones were
    accepted, the last for every later position, or a function of the iteration returning either).
    ``shadow``: act as an engine that shadow drafts (``Decision.shadow``), the draft resolved at
    once (the engine resolves it over the next few tokens) and its tokens paid at ``draft_s``
    each; otherwise as one that does not (sampling). ``shadows``: a list that gets the iteration
    of each shadow draft asked for."""
    rng = np.random.default_rng(seed)
    pol = policy or make_policy(spec, params)
    toks, t, ks = 0, 0.0, []
    i = 0
    for _ in range(requests):
        pol.reset()
        for _ in range(iters):
            dec = pol.decide()
            k = dec.k
            a = accept(i) if callable(accept) else accept

            def accepted(n):
                acc = 0
                while acc < n and rng.random() < (a[min(acc, len(a) - 1)] if isinstance(a, tuple) else a):
                    acc += 1
                return acc

            acc = accepted(k)
            s = dec.shadow if k == 0 and shadow else 0
            if dec.shadow and k == 0 and shadows is not None:
                shadows.append(i)
            matched = accepted(s)
            c = cost(k + 1) * math.exp(rng.normal(0, 0.15)) * (2.0 if rng.random() < 0.1 else 1.0)
            d = (k + s) * draft_s * math.exp(rng.normal(0, 0.1))
            pol.observe(Observation(k=k, drafted=k, accepted=acc, draft_s=d, verify_s=c, iter_s=c + d,
                                    shadowed=s, shadow_checked=min(matched + 1, s), shadow_matched=matched))
            toks += acc + 1
            t += c + d
            ks.append(k)
            i += 1
    return toks / t, ks


def mean_rate(spec, *args, seeds=range(6), **kw):
    return float(np.mean([run(spec, *args, seed=s, **kw)[0] for s in seeds]))


STATICS = [f"static:{k}" for k in (1, 2, 3, 4, 6, 8, 12, 16)]


@pytest.mark.parametrize("accept", [0.8, 0.95])
def test_learned_matches_the_best_static_k_where_speculation_pays(accept):
    args = (memory_bound, 0.3e-3, accept)
    best = max(mean_rate(s, *args) for s in STATICS)
    learned = mean_rate("learned", *args)
    # 400 iterations include the exploration (about 10% of them); the real bench measures longer
    assert learned >= 0.93 * best, (learned / best)
    assert learned >= 0.97 * mean_rate("cascade", *args)


def test_learned_stays_near_off_where_speculation_never_pays():
    args = (compute_bound, 0.15e-3, 0.6)
    off = mean_rate("off", *args)
    assert mean_rate("learned", *args) >= 0.95 * off
    assert max(mean_rate(s, *args) for s in STATICS[:3]) < 0.85 * off  # it really never pays



def test_learned_stays_near_off_when_the_first_draft_is_mostly_wrong_and_the_rest_agree():
    """The demo's math prompts: a greedy draft's first token is accepted 45% of the time, the next
    ones 90% given the first was. One pooled rate read this as ~0.7 everywhere, found K = 2 worth
    it and lost 16-19% to off; per-position rates see that no K pays. Probes stay within budget."""
    args = (grown_demo, 0.5e-3, (0.45, 0.9))
    off = mean_rate("off", *args, iters=128, requests=3)
    assert max(mean_rate(s, *args, iters=128, requests=3) for s in STATICS[:3]) < 0.95 * off  # none pays
    assert mean_rate("learned", *args, iters=128, requests=3) >= 0.97 * off


def test_learned_beats_every_static_k_when_acceptance_changes_mid_request():
    def accept(i):
        return 0.95 if (i // 100) % 2 == 0 else 0.3

    args = (memory_bound, 0.3e-3, accept)
    learned = mean_rate("learned", *args)
    assert learned > max(mean_rate(s, *args) for s in STATICS)


def test_learned_reaches_long_drafts_when_they_pay():
    rate, ks = run("learned", memory_bound, 0.3e-3, 1.0, iters=300)
    top = Counter(ks[100:]).most_common(1)[0][0]
    assert top >= 12
    assert rate >= 0.95 * run("static:16", memory_bound, 0.3e-3, 1.0, iters=300)[0]


def test_learned_never_tries_a_k_whose_best_case_cannot_beat_off():
    """Verify cost proportional to tokens and a drafter slower than the target: once c(2) = 2 c(1)
    and the drafter's own cost d are seen (the first drafting iteration also catches the drafter
    up, so d needs a second one), no K can win even with every draft accepted
    ((K+1) c(1) < K d + c(2), with room for the timing noise): speculation stops for good."""
    def cost(n):
        return 1e-3 * n

    never = {"probe_after": 1_000_000, "probe_max": 1_000_000}
    for seed in range(4):
        rate, ks = run("learned", cost, 1.5e-3, 1.0, iters=300, seed=seed, params=never)
        spec = [k for k in ks if k > 0]
        assert set(spec) <= {1, 2, 3} and len(spec) <= 5, Counter(ks)
        assert max(i for i, k in enumerate(ks) if k > 0) < 20
        assert rate >= 0.97 * run("off", cost, 1.5e-3, 1.0, iters=300, seed=seed)[0]


def test_probes_find_acceptance_that_rose_while_speculation_was_off():
    def accept(i):
        return 0.1 if i < 150 else 0.97

    on_late = []
    for seed in range(6):
        _, ks = run("learned", memory_bound, 0.3e-3, accept, iters=600, seed=seed)
        assert Counter(ks[:150])[0] > 100  # off while drafts were rejected
        on_late.append(np.mean([k > 0 for k in ks[450:]]))
    # a probe saw the change and turned speculation back on (one unlucky probe may wait longer)
    assert sorted(on_late)[1] > 0.9, on_late


def _back_on(ks, start):
    """Iterations after ``start`` until speculation runs 8 iterations in a row."""
    for j in range(start, len(ks) - 8):
        if all(k > 0 for k in ks[j:j + 8]):
            return j - start
    return len(ks) - start


def test_shadow_drafts_find_acceptance_that_rose_sooner_than_probes_and_cost_little():
    """The grown demo: verifying 3 tokens costs 2.2 plain steps, drafting one 3% of one. Probes
    within their budget come every ~100 iterations; shadow drafts look every ~10."""
    def accept(i):
        return 0.1 if i < 150 else 0.97

    shadowed, probed = [], []
    for seed in range(6):
        _, ks = run("learned", grown_demo, 0.35e-3, accept, iters=600, seed=seed, shadow=True)
        assert Counter(ks[:150])[0] > 120  # off while the drafter disagreed (shadows verify nothing)
        shadowed.append(_back_on(ks, 150))
        probed.append(_back_on(run("learned", grown_demo, 0.35e-3, accept, iters=600, seed=seed)[1], 150))
    assert sorted(shadowed)[3] < 40, shadowed
    assert sorted(shadowed)[3] < 0.75 * sorted(probed)[3], (shadowed, probed)
    # where speculation never pays, watching the drafter stays within a few percent of off
    for seed in range(4):
        rate = run("learned", grown_demo, 0.35e-3, 0.1, iters=400, seed=seed, shadow=True)[0]
        assert rate >= 0.97 * run("off", grown_demo, 0.35e-3, 0.1, iters=400, seed=seed)[0]


def test_two_looks_far_better_than_expected_mean_the_text_turned_easy():
    """After 150 iterations at acceptance 0.1 the failures fade slowly (``accept_halflife``), and
    each shadow draft adds one observation a position; two shadow drafts in a row that agree
    where the estimate gave that under 1% (``surprise``) make the old evidence count one
    observation a position, and speculation comes back about twice as soon."""
    def accept(i):
        return 0.1 if i < 150 else 0.97

    def back_on(surprise):
        return [_back_on(run("learned", grown_demo, 0.35e-3, accept, iters=400, seed=s, shadow=True,
                             params={"surprise": surprise})[1], 150) for s in range(12)]

    fast, slow = back_on(0.01), back_on(0.0)
    assert np.median(fast) < 0.7 * np.median(slow) and max(fast) < 60, (fast, slow)
    # while the text stays hard, nothing is surprising: speculation stays off as before
    rate = run("learned", grown_demo, 0.35e-3, 0.1, iters=400, seed=3, shadow=True)[0]
    assert rate >= 0.97 * run("off", grown_demo, 0.35e-3, 0.1, iters=400, seed=3)[0]


def test_with_speculation_off_plain_steps_skip_most_decisions():
    """Off, a plain step brings one more c(1) sample and fading evidence, nothing else: the
    decision is worked out again at least every 8 plain steps and whenever a shadow draft is due
    or resolved, not on every step (0.2 ms an iteration, 1.4% of the demo's plain decoding)."""
    p = LearnedPolicy()
    calls = []
    utilities = p._utilities
    p._utilities = lambda *a, **k: calls.append(1) or utilities(*a, **k)
    asked = []
    _, ks = run("learned", grown_demo, 0.35e-3, 0.1, iters=400, policy=p, shadow=True, shadows=asked)
    off = sum(k == 0 for k in ks[50:])
    assert off > 300 and len(asked) > 20
    assert len(calls) < 0.5 * 400, len(calls)  # (each full decision works out U for every K once)
    gaps = [b - a for a, b in zip(asked, asked[1:])]
    assert min(gaps) >= p.get("shadow_every") and max(gaps) < 3 * np.median(gaps)  # still on time


def test_an_engine_that_does_not_shadow_gets_probes_instead():
    asked = []
    _, ks = run("learned", grown_demo, 0.35e-3, 0.1, iters=400, seed=1, requests=2, shadows=asked)
    assert 1 <= len(asked) <= 2  # asked once per request, then probes
    late = ks[100:400]
    assert 0 < sum(k > 0 for k in late) < 20  # probes: a few short drafts while off
    asked = []
    _, ks = run("learned", grown_demo, 0.35e-3, 0.1, iters=400, seed=1, requests=2, shadow=True, shadows=asked)
    assert len(asked) > 20
    # shadow drafts are spaced by shadow_every at least, within a request
    gaps = [b - a for a, b in zip(asked, asked[1:]) if (a < 400) == (b < 400)]
    assert min(gaps) >= LearnedPolicy().get("shadow_every")


def test_probes_stay_where_they_look_more_often_than_shadow_drafts():
    """A verify that costs no more for more tokens and a drafter at half a plain step a token: a
    probe (K = 2: two draft tokens, no extra verify cost) looks more often within its budget than a
    4-token shadow draft within its own, so probes stay (and keep what they verify); on an
    H100-like memory-bound MoE the shadow drafts look more often (every ~28 iterations against
    ~61) and are used."""
    def flat(n):
        return 1e-3

    asked = []
    _, ks = run("learned", flat, 0.5e-3, 0.1, iters=400, seed=2, shadow=True, shadows=asked)
    # (the request's first shadow draft, which also reads the prompt, does not price the others:
    # a second one measures what they cost)
    assert len(asked) <= 2 and sum(k > 0 for k in ks[10:]) > 0
    # one 400-iteration run's ratio to off moves with the seed (0.96-1.02 over 12 seeds at this
    # noise): the floor holds for the mean of six
    ratios = [run("learned", flat, 0.5e-3, 0.1, iters=400, seed=s, shadow=True)[0]
              / run("off", flat, 0.5e-3, 0.1, iters=400, seed=s)[0] for s in range(6)]
    assert sum(ratios) / len(ratios) >= 0.97
    asked = []
    rate, ks = run("learned", memory_bound, 0.3e-3, 0.1, iters=400, seed=2, shadow=True, shadows=asked)
    assert len(asked) > 5 and min(b - a for a, b in zip(asked, asked[1:])) > 20
    assert rate >= 0.97 * run("off", memory_bound, 0.3e-3, 0.1, iters=400, seed=2)[0]


def test_a_cost_curve_from_the_cache_starts_the_next_run_informed():
    """Where speculation does not pay (a compute-bound CPU MoE, every verified token costs), a
    cold start pays to find that out by drafting; a run that starts from the cache knows the costs
    and drafts less. (Where every K pays, exploring costs nothing: 1 -> 4 -> 16 verified tokens
    in three iterations, with or without the cache.)"""
    first = make_policy("learned")
    run("learned", compute_bound, 0.3e-3, 0.5, iters=300, policy=first)
    costs = first.export_costs()
    assert costs["costs"]["1"] == pytest.approx(compute_bound(1), rel=0.3)
    cold_rate = warm_rate = cold_drafts = warm_drafts = 0.0
    for seed in range(8):
        cold, warm = make_policy("learned"), make_policy("learned")
        assert warm.import_costs(costs)
        rate, ks = run("learned", compute_bound, 0.3e-3, 0.5, iters=40, policy=cold, seed=seed)
        cold_rate, cold_drafts = cold_rate + rate, cold_drafts + sum(k > 0 for k in ks)
        rate, ks = run("learned", compute_bound, 0.3e-3, 0.5, iters=40, policy=warm, seed=seed)
        warm_rate, warm_drafts = warm_rate + rate, warm_drafts + sum(k > 0 for k in ks)
    assert warm_drafts < cold_drafts and warm_rate > 1.03 * cold_rate, (warm_drafts, cold_drafts, warm_rate / cold_rate)
    assert not make_policy("learned").import_costs({"format": 99, "costs": {}})
    assert not make_policy("learned").import_costs({"format": 1, "costs": {"1": -1.0}})


def test_expected_emitted_and_curve_fit():
    assert expected_emitted(0.0, 5) == 1.0
    assert expected_emitted(1.0, 5) == 6.0
    assert expected_emitted(0.5, 2) == pytest.approx(1.75)
    a, b, g = _fit_curve({n: 1.0 + 0.5 * (n - 1) for n in (1, 2, 4, 8)})
    assert (a, b, g) == pytest.approx((1.0, 0.5, 0.0), abs=1e-9)
    a, b, g = _fit_curve({1: 1.0, 2: 2.0})  # two points: the concave (optimistic) ln shape
    assert b == 0 and a + g * math.log(4) == pytest.approx(3.0)


def test_curve_fit_is_the_best_non_negative_least_squares_model():
    """The closed-form fit (it runs on every cost change) against numpy's least squares over the
    same four models (both terms, ln only, linear only, flat), keeping the best with b, g >= 0."""
    rng = np.random.default_rng(7)
    for _ in range(300):
        ns = np.sort(rng.choice(np.arange(1, 18), size=rng.integers(3, 8), replace=False))
        y = 0.01 * (1 + rng.uniform(0, 0.4) * (ns - 1) * (rng.random() < 0.5) + rng.uniform(0, 1) * np.log(ns))
        y = y * (1 + rng.normal(0, 0.08, size=len(ns)))
        best = None
        for use_b, use_g in ((1, 1), (0, 1), (1, 0), (0, 0)):
            cols = [np.ones(len(ns))] + ([ns - 1.0] if use_b else []) + ([np.log(ns)] if use_g else [])
            coef = np.linalg.lstsq(np.stack(cols, axis=1), y, rcond=None)[0]
            b = coef[1] if use_b else 0.0
            g = coef[1 + use_b] if use_g else 0.0
            if b < 0 or g < 0:
                continue
            sse = float(np.sum((coef[0] + b * (ns - 1) + g * np.log(ns) - y) ** 2))
            if best is None or sse < best[0] - 1e-18:
                best = (sse, (coef[0], b, g))
        fit = _fit_curve({int(n): float(c) for n, c in zip(ns, y)})
        grid = np.arange(1, 18)
        want = best[1][0] + best[1][1] * (grid - 1) + best[1][2] * np.log(grid)
        got = fit[0] + fit[1] * (grid - 1) + fit[2] * np.log(grid)
        assert np.allclose(got, want, rtol=1e-7), (ns, y, fit, best)


def test_reported_utility_is_one_at_k0_and_the_chosen_ks_prediction_otherwise():
    p = LearnedPolicy()
    assert p.utility() is None  # c(1) not measured yet
    run("learned", memory_bound, 0.3e-3, 0.9, iters=60, policy=p)
    k = p.decide().k
    lazy = p.utility()  # worked out for the chosen K alone
    table = p.state()["predicted"]  # the whole table (what the TUI and the bench read)
    assert k > 0 and lazy == pytest.approx(p.predict(k)) and lazy == pytest.approx(table[str(k)], abs=1e-4)
    assert p.utility() == lazy  # now read from the table
    p.set("k_max", 1)
    p.set("min_utility", 100.0)  # nothing reaches it: speculation off
    assert p.decide().k == 0 and p.utility() == 1.0


def test_learned_parameters_and_state():
    p = LearnedPolicy()
    with pytest.raises(PolicyError):
        p.set("probe_after", 10_000)  # above probe_max
    st = p.state()
    assert st["phase"] == "base" and st["k"] == 0 and "acceptance" in st
    run("learned", memory_bound, 0.3e-3, 0.9, iters=80, policy=p)
    st = p.state()
    assert st["t_base"] == pytest.approx(memory_bound(1), rel=0.3)
    assert st["utilities"] and all(u > 0 for u in st["utilities"].values())
    assert st["reason"]


def test_reason_text_only_changes_with_the_decision():
    """A phase event is emitted whenever (phase, reason) changes: the reason must not carry
    numbers that move every iteration, or the transition log floods."""
    p = make_policy("learned")
    _, ks = run("learned", memory_bound, 0.3e-3, 0.95, iters=300, policy=p)
    changes_k = sum(1 for a, b in zip(ks, ks[1:]) if a != b)
    reasons = []
    rng = np.random.default_rng(3)
    for _ in range(200):
        d = p.decide()
        reasons.append((d.k, d.phase, d.reason))
        c = memory_bound(d.k + 1) * math.exp(rng.normal(0, 0.1))
        p.observe(Observation(k=d.k, drafted=d.k, accepted=d.k, draft_s=0.0, verify_s=c, iter_s=c))
    distinct_changes = sum(1 for a, b in zip(reasons, reasons[1:]) if a != b)
    k_changes = sum(1 for a, b in zip(reasons, reasons[1:]) if a[:2] != b[:2])
    assert distinct_changes <= k_changes + 2, (distinct_changes, k_changes, changes_k)


def test_the_first_shadow_draft_of_a_request_does_not_price_the_rest():
    """The request's first shadow draft also makes the drafter read the prompt (a long chat
    context: many plain steps' worth); shadow drafts must not then become rare for the request."""
    pol = LearnedPolicy()
    c1, d = 12e-3, 0.35e-3
    saw = []
    for i in range(200):
        dec = pol.decide()
        s = dec.shadow if dec.k == 0 else 0
        ds = (0.5 if s and not saw else s * d) + dec.k * d  # the first: 0.5 s reading the prompt
        if s:
            saw.append(i)
        acc = 0
        pol.observe(Observation(k=dec.k, drafted=dec.k, accepted=acc, draft_s=ds, verify_s=c1 * (1 + dec.k),
                                iter_s=c1 * (1 + dec.k) + ds, shadowed=s, shadow_checked=1 if s else 0))
    assert len(saw) > 10 and max(b - a for a, b in zip(saw, saw[1:])) < 20, saw


def test_a_new_request_looks_at_its_text_before_drafting_on_carried_acceptance():
    """A request the drafter writes almost alone, then one it cannot guess (the demo's extraction
    prompts 6 and 7): the acceptance carried over says "draft". One shadow draft of one token
    first, for the drafter's time, spares verified drafts that would all be rejected (in-process
    on the demo: 3-12 rejected drafting iterations, 0.56-0.91x of off, without it)."""
    def second_request_drafts(look_first: bool, seed: int) -> tuple[int, int]:
        def accept(i):
            return 0.98 if i < 200 else 0.02

        pol = make_policy("learned", {"look_first": look_first})
        _, ks = run("learned", grown_demo, 0.35e-3, accept, iters=200, requests=2, seed=seed, shadow=True,
                    policy=pol)
        assert Counter(ks[100:200])[0] < 15  # the first request speculated
        return sum(1 for k in ks[200:240] if k > 0), ks[200]

    looked = [second_request_drafts(True, s) for s in range(6)]
    blind = [second_request_drafts(False, s) for s in range(6)]
    assert all(first == 0 for _, first in looked)  # its first iteration is the look, at K = 0
    assert all(first > 0 for _, first in blind)
    assert sum(n for n, _ in looked) < 0.5 * sum(n for n, _ in blind), (looked, blind)


def test_a_new_request_starts_from_the_acceptance_the_last_one_ended_with():
    """A drafter that always agrees: the next request's first position used to start from its 4
    carried observations plus one pseudo-observation of ``accept_prior`` (0.5), so it read 0.9
    and compounded into U(16) 10% below what K = 16 reaches. With ``carry_prior`` the prior is
    the rate the last request ended with, once the engine has shown it shadow drafts (greedy:
    the second request's first look); without memory, or where the engine does not shadow
    (sampling: probes), it is ``accept_prior``. A new text that disagrees at its first look puts
    it back to ``accept_prior`` too."""
    def first_rate(params, shadow=True) -> tuple[float, float]:
        pol = make_policy("learned", params)
        run("learned", grown_demo, 0.35e-3, 1.0, iters=120, requests=2, seed=3, shadow=shadow, policy=pol)
        pol.reset()
        # U(16) against what the same cost curve says with every draft accepted (the truth here)
        ideal = pol._utility_at(16, 1.0, pol._curve(_median))
        return pol.acceptance_by_position()[0], pol.predict(16) / ideal

    carried, u_carried = first_rate(None)
    plain, u_plain = first_rate({"carry_prior": False})
    assert carried >= 0.98 and plain <= 0.91
    assert first_rate(None, shadow=False)[0] <= 0.91  # probes only: nothing says the next text is alike
    assert u_carried > 0.97 and u_plain < 0.9, (u_carried, u_plain)

    pol = make_policy("learned", {"memory": False})
    run("learned", grown_demo, 0.35e-3, 1.0, iters=120, seed=3, shadow=True, policy=pol)
    pol.reset()
    assert pol.acceptance_by_position()[0] == pol.get("accept_prior")  # nothing carried

    pol = make_policy("learned")  # turned off by hand mid-session: the next request uses accept_prior
    run("learned", grown_demo, 0.35e-3, 1.0, iters=120, requests=2, seed=3, shadow=True, policy=pol)
    pol.reset()
    pol.set("carry_prior", False)
    pol.reset()
    assert pol.acceptance_by_position()[0] <= 0.91

    # a new text whose first look disagrees: the carried prior goes back to accept_prior
    pol = make_policy("learned")
    run("learned", grown_demo, 0.35e-3, 1.0, iters=120, requests=2, seed=3, shadow=True, policy=pol)
    pol.reset()
    assert pol.acceptance_by_position()[0] >= 0.98
    look = pol.decide()
    assert look.k == 0 and look.shadow == 1  # look_first
    pol.observe(Observation(k=0, drafted=0, accepted=0, draft_s=1e-4, verify_s=grown_demo(1),
                            iter_s=grown_demo(1) + 1e-4, shadowed=1))
    pol.observe(Observation(k=0, drafted=0, accepted=0, draft_s=0.0, verify_s=grown_demo(1),
                            iter_s=grown_demo(1), shadow_checked=1, shadow_matched=0))
    assert pol.acceptance_by_position()[0] < 0.7
    pol.set("accept_prior", 0.2)  # by hand: applies now
    low = pol.acceptance_by_position()[0]
    pol.set("accept_prior", 0.8)
    assert pol.acceptance_by_position()[0] > low


def test_a_settled_cost_point_leans_on_the_curve_through_the_others():
    """Three samples of c(16) that all read 20% high (a slow stretch of the machine), between
    points measured right: c(16) stands between its samples and the curve through all the
    points, as if the curve were CURVE_WEIGHT samples more, so a K = 15 that pays is not lost to
    three unlucky samples; a full window (or a cached point) outweighs the curve more, c(1) is
    always its own samples, and a point beyond every other one is not pulled towards an
    extrapolation (from c(1..3), c(12) would read 28% high)."""
    from cascade_tui.policy.learned import CURVE_WEIGHT, _Curve, _fit_curve

    def true_cost(n):
        return 30e-3 + 7.8e-3 * (n - 1) + 24.4e-3 * math.log(n)

    pts = {n: true_cost(n) for n in (1, 4, 9, 13, 17)}
    pts[16] = 1.2 * true_cost(16)
    a, b, g = _fit_curve(pts)
    fit16 = a + b * 15 + g * math.log(16)
    for k, imported in ((3, False), (9, False), (1, True)):
        counts = {n: 9 for n in pts} | {16: k}
        curve = _Curve(pts, counts, pts, 9, frozenset({16}) if imported else frozenset())
        w = 9 if imported else k  # a cached point weighs a whole window
        assert curve.cost(16) == pytest.approx((w * pts[16] + CURVE_WEIGHT * fit16) / (w + CURVE_WEIGHT), rel=1e-9)
        assert true_cost(16) < curve.cost(16) < pts[16]
        assert curve.cost(1) == pts[1]
        # a prediction (an n not measured) is at least every settled cost below it, blended ones too
        costs = curve.costs(20)
        assert all(costs[n] >= max(costs[16], costs[17]) for n in (18, 19, 20))
        assert all(costs[n] >= costs[4] for n in (5, 6, 7, 8))
    # fewer than SETTLE samples: the unsettled rule (its samples or the curve, the smaller), no blend
    few = _Curve(pts, {n: 9 for n in pts} | {16: 2}, pts, 9, frozenset())
    assert few.cost(16) <= pts[16]
    # beyond every other point: its samples stand (no extrapolated curve to lean on)
    top = {n: true_cost(n) for n in (1, 2, 3)} | {12: true_cost(12)}
    assert _Curve(top, {n: 9 for n in top}, top, 9, frozenset()).cost(12) == top[12]
    # three points only: no fit to lean on, the samples stand
    three = {1: pts[1], 16: pts[16], 17: pts[17]}
    assert _Curve(three, {n: 9 for n in three}, three, 9, frozenset()).cost(16) == pts[16]
