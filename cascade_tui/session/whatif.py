"""What another policy would have done on a recorded session: an estimate, not a measurement.

From the recording alone we fit

* the **cost** of an iteration: verification ``a + b * n + c * u`` (n = tokens verified, u =
  unique experts per MoE layer in the batch), drafting ``e0 * k + e1 * (m + k - 1)`` (a model
  drafter evaluates the m tokens it has not seen in one batch, then one token per further draft
  step: every eval costs ``e0 + e1 * tokens``), and a constant for the rest;
* the **acceptance**: under greedy decoding every policy commits the same text, and each draft
  tells where along it the drafter agreed with the target (accepted) or not (the first rejected
  token), so a draft of any length is accepted as far as the agreement runs; positions no draft
  reached take the agreement seen after the same tokens elsewhere. With sampling, the chance that
  draft position i is accepted when the ones before it were;
* the **unique experts** a batch of n tokens touches, from the routing of the tokens the target
  committed (windows of n consecutive tokens);

then run the policy (pure, as in a live session) against them, with the fit's residuals as timing
noise, for the recording's turns and token counts, and report tokens/s. How well the cost fit
explains the recorded iteration times (R^2) is reported with it.

What a recording cannot show is assumed and said so: a verify size never seen (a static:K run
verifies K + 1 tokens only) extrapolates proportionally (the fit's intercept is pulled towards 0);
with sampling, draft positions past the longest recorded draft keep the last measured acceptance.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cascade_tui.engine.decoder import unique_experts
from cascade_tui.policy import Observation, Policy, make_policy

WARMUP = 3  # first iterations of each turn (cold caches) left out of the fit
SEEDS = 8


@dataclass
class IterationRow:
    turn: int
    pos: int  # index within the turn
    k: int  # drafted tokens (what the drafter actually proposed)
    accepted: int
    emitted: int
    n: int  # tokens verified
    u: float | None
    missed: int  # tokens the drafter had not seen before this iteration's draft
    draft_s: float
    verify_s: float
    iter_s: float


@dataclass
class Turn:
    tokens: int  # generated
    prompt_tokens: int  # a model drafter reads them all at its first draft of the turn
    ids: list[int] = field(default_factory=list)  # the generated tokens
    agree: dict[int, bool] = field(default_factory=dict)  # did the drafter agree with the target at position i
    greedy: bool = True
    routing: list = field(default_factory=list)  # committed tokens' routing [layers, top_k], from position -1


def rows_of(events: list, catch_up: int | None = None) -> tuple[list[IterationRow], list[Turn], np.ndarray | None]:
    """Iteration rows, the turns, and the committed tokens' routing ([tokens, layers, top_k])
    when the recording has it. ``catch_up``: the model drafter's bound on what it re-reads after
    a K = 0 stretch (``max_catch_up``)."""
    rows: list[IterationRow] = []
    turns: list[Turn] = []
    committed: list[np.ndarray] = []
    turn = -1
    missed = 0
    first = True
    shadow_at = None  # where the pending shadow draft started (position in the turn's text)
    for ev in events:
        if ev.type == "turn":
            turn += 1
            turns.append(Turn(0, ev.prompt_tokens, greedy=ev.temperature == 0))
            missed, first, shadow_at = ev.prompt_tokens, True, None
        elif ev.type == "iteration":
            k = len(ev.drafted)
            m = missed if first or catch_up is None else min(missed, catch_up)
            shadow = getattr(ev, "shadow", None) or []
            # a K = 0 step with a shadow draft is a plain step plus the drafter's time: the cost
            # fit sees the plain step (the simulation adds shadow drafts where its policy asks)
            shadow_s = ev.draft_s if shadow and not k else 0.0
            rows.append(IterationRow(turn, ev.index, k, ev.accepted, len(ev.emitted), k + 1, ev.unique_experts,
                                     m if k else 0, ev.draft_s - shadow_s, ev.verify_s, ev.iter_s - shadow_s))
            if k:
                first = False
            # a model drafter evaluated its own first k - 1 drafts; what it has not seen of the
            # committed tokens is the rest of them (1 or 2 tokens), or everything since it last drafted
            missed = len(ev.emitted) - min(ev.accepted, k - 1) if k else missed + len(ev.emitted)
            if turns:
                tr = turns[-1]
                p = len(tr.ids)
                if k:  # greedy: accepted drafts agreed with the target, the first rejected one did not
                    for i in range(ev.accepted):
                        tr.agree[p + i] = True
                    if ev.accepted < k:
                        tr.agree[p + ev.accepted] = False
                if shadow:
                    shadow_at = p
                checked = getattr(ev, "shadow_checked", 0)
                if checked and shadow_at is not None:  # a shadow draft's comparison says the same
                    matched = ev.shadow_matched
                    for i in range(matched):
                        tr.agree.setdefault(shadow_at + i, True)
                    if matched < checked:
                        tr.agree.setdefault(shadow_at + matched, False)
                    shadow_at = None
                tr.ids.extend(ev.emitted)
                tr.tokens += len(ev.emitted)
            if ev.routing is not None:
                r = np.asarray(ev.routing)
                rows_r = np.transpose(r[:, : ev.accepted + 1], (1, 0, 2))
                committed.append(rows_r)
                if turns:
                    turns[-1].routing.extend(rows_r)
    routing = np.concatenate(committed) if committed else None
    return rows, turns, routing


def _nnls(X: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Least squares with coefficients >= 0 (costs are not negative): refit without the columns
    that came out negative."""
    cols = list(range(X.shape[1]))
    coef = np.zeros(0)
    while cols:
        coef = np.linalg.lstsq(X[:, cols], y, rcond=None)[0]
        if (coef >= 0).all():
            break
        cols = [c for c, v in zip(cols, coef) if v > 0]
    out = np.zeros(X.shape[1])
    if cols:
        out[cols] = coef
    return out


def _varied(x: np.ndarray) -> bool:
    """At least two values that each occur often enough to fit a slope on."""
    values, counts = np.unique(x, return_counts=True)
    return int((counts >= max(8, 0.05 * len(x))).sum()) >= 2


def _significant(X: np.ndarray, y: np.ndarray, col: int) -> bool:
    """Is column ``col``'s least-squares coefficient positive and over 3 standard errors?"""
    coef, *_ = np.linalg.lstsq(X, y, rcond=None)
    resid = y - X @ coef
    dof = max(1, len(y) - X.shape[1])
    try:
        cov = np.linalg.inv(X.T @ X) * float(resid @ resid) / dof
    except np.linalg.LinAlgError:
        return False
    se = float(np.sqrt(max(cov[col, col], 0.0)))
    if coef[col] <= 0:
        return False
    return se == 0.0 or coef[col] / se > 3.0  # se 0: an exact fit


@dataclass
class CostModel:
    a: float  # verify: per eval
    b: float  # verify: per token
    c: float  # verify: per unique expert per layer
    e0: float  # draft: per drafter eval
    e1: float  # draft: per token the drafter evaluates
    other: float  # the rest of an iteration
    r2: float  # of the iteration time over the fitted iterations
    n_fit: int
    cv: float = 0.0  # root-mean-square error relative to the mean iteration time
    residuals: np.ndarray = field(repr=False, default_factory=lambda: np.zeros(1))
    verify_sizes: tuple[int, ...] = ()
    assumptions: list[str] = field(default_factory=list)

    def verify(self, n: int, u: float | None) -> float:
        return self.a + self.b * n + self.c * (u or 0.0)

    def draft(self, k: int, missed: int) -> float:
        return 0.0 if k <= 0 else self.e0 * k + self.e1 * (missed + k - 1)

    def iteration(self, k: int, u: float | None, missed: int) -> float:
        return self.draft(k, missed) + self.verify(k + 1, u) + self.other

    def describe(self) -> str:
        us = 1e3
        text = (f"verify {self.a * us:.3f} ms + {self.b * us:.3f} ms x tokens"
                + (f" + {self.c * us:.3f} ms x unique experts" if self.c else "")
                + f"; draft {self.e0 * us:.3f} ms x evals + {self.e1 * us:.3f} ms x tokens drafted or caught up"
                + f"; other {self.other * us:.3f} ms")
        return text


def fit_cost(rows: list[IterationRow]) -> CostModel:
    fit = [r for r in rows if r.pos >= WARMUP] or rows
    n = np.array([r.n for r in fit], float)
    u = np.array([r.u if r.u is not None else 0.0 for r in fit], float)
    v = np.array([r.verify_s for r in fit])
    counts = {int(x): int((n == x).sum()) for x in np.unique(n)}
    # a verify size counts as seen when enough iterations had it (not a lone clamped last one)
    sizes = tuple(sorted(x for x, c in counts.items() if c >= max(8, 0.05 * len(n)))) or tuple(counts)
    keep = np.isin(n, sizes)
    n, u, v = n[keep], u[keep], v[keep]
    assumptions = []
    # with one size the per-eval and per-token costs cannot be told apart: cost proportional to
    # the tokens verified (no intercept)
    cols = ([np.ones_like(n)] if len(sizes) > 1 else []) + [n]
    if len(sizes) == 1:
        assumptions.append(f"every iteration verified {sizes[0]} tokens: other sizes are extrapolated "
                           "proportionally to the tokens verified")
    X = np.stack(cols, axis=1)
    use_u = any(r.u is not None for r in fit) and np.ptp(u) > 0 and _significant(np.column_stack([X, u]), v, X.shape[1])
    coef = _nnls(np.column_stack([X, u]) if use_u else X, v)
    a = coef[0] if len(sizes) > 1 else 0.0
    b = coef[len(cols) - 1]
    c = coef[-1] if use_u else 0.0
    drafting = [r for r in fit if r.k > 0]
    e0 = e1 = 0.0
    if drafting:
        k = np.array([r.k for r in drafting], float)
        m = np.array([min(r.missed, 10_000) for r in drafting], float)
        d = np.array([r.draft_s for r in drafting])
        evals, toks = k, m + k - 1  # drafter evals, tokens it evaluates
        if _varied(evals) or _varied(toks):
            e0, e1 = _nnls(np.stack([evals, toks], axis=1), d)
        else:
            e1 = float(_nnls(toks.reshape(-1, 1), d)[0])
            assumptions.append(f"every draft had {int(k[0])} token{'s' if k[0] != 1 else ''} and read the same "
                               "number: other lengths are extrapolated proportionally to the tokens the drafter "
                               "evaluates")
    if len(sizes) == 1 and e0 + e1 > 0:
        # one verify size: the per-eval overhead is the runtime's, on this machine. Take the
        # drafter's one-token eval for it (the drafter is small, so that is nearly all per-call
        # overhead; its split into e0 and e1 is often not identified when every draft has the same
        # length, but the sum is), the rest of the verify time per token
        a = min(e0 + e1, 0.5 * float(np.mean(v)))
        rest = v - a - (c * u if use_u else 0.0)
        b = max(0.0, float(np.mean(rest)) / sizes[0])
        assumptions[0] = (f"every iteration verified {sizes[0]} tokens: other sizes are extrapolated with the "
                          "drafter's per-eval overhead and the rest of the time per token")
    pred = np.array([CostModel(a, b, c, e0, e1, 0.0, 0, 0).iteration(r.k, r.u, r.missed) for r in fit])
    it = np.array([r.iter_s for r in fit])
    other = float(np.mean(it - pred))
    pred = pred + other
    ss_res = float(np.sum((it - pred) ** 2))
    ss_tot = float(np.sum((it - it.mean()) ** 2))
    r2 = 1.0 - ss_res / ss_tot if ss_tot > 0 else 1.0
    cv = float(np.sqrt(ss_res / len(it)) / it.mean()) if len(it) and it.mean() > 0 else 0.0
    return CostModel(float(a), float(b), float(c), float(e0), float(e1), other, r2, len(fit), cv,
                     residuals=(it - pred) / np.maximum(pred, 1e-12), verify_sizes=sizes, assumptions=assumptions)


@dataclass
class Acceptance:
    rates: list[float]  # P(position i accepted | positions < i accepted)
    measured: int  # positions with data

    def rate(self, i: int) -> float:
        if not self.rates:
            return 0.0
        return self.rates[min(i, len(self.rates) - 1)]

    def draw(self, k: int, rng: np.random.Generator) -> int:
        acc = 0
        while acc < k and rng.random() < self.rate(acc):
            acc += 1
        return acc

    def expected(self, k: int) -> float:
        p, total = 1.0, 0.0
        for i in range(k):
            p *= self.rate(i)
            total += p
        return total


def fit_acceptance(rows: list[IterationRow]) -> Acceptance:
    rates = []
    longest = max((r.k for r in rows), default=0)
    for i in range(longest):
        reached = [r for r in rows if r.k > i and r.accepted >= i]
        if len(reached) < 3:
            break
        rates.append(sum(1 for r in reached if r.accepted > i) / len(reached))
    return Acceptance(rates, len(rates))


class Agreement:
    """Where along a greedy turn's text the drafter agrees with the target. Under greedy decoding
    every policy commits the same tokens, and a draft starting at position p is accepted for as
    long as the drafter agrees at p, p + 1, ... (given the true prefix, which it has while it
    agrees). Positions no draft reached take the agreement seen after the same two tokens
    elsewhere (then one token, then the turn's rate)."""

    def __init__(self, turn: Turn):
        ids, known = turn.ids, turn.agree
        by2: dict[tuple, list[bool]] = {}
        by1: dict[tuple, list[bool]] = {}
        for q, a in known.items():
            by2.setdefault(tuple(ids[max(0, q - 2):q]), []).append(a)
            by1.setdefault(tuple(ids[max(0, q - 1):q]), []).append(a)
        rate = sum(known.values()) / len(known) if known else 0.0
        self.prob = []
        for q in range(len(ids)):
            if q in known:
                self.prob.append(1.0 if known[q] else 0.0)
                continue
            for table, key in ((by2, tuple(ids[max(0, q - 2):q])), (by1, tuple(ids[max(0, q - 1):q]))):
                seen = table.get(key, [])
                if len(seen) >= 2:
                    self.prob.append(sum(seen) / len(seen))
                    break
            else:
                self.prob.append(rate)
        self.known = len(known)

    def accept(self, p: int, k: int, rng: np.random.Generator) -> int:
        acc = 0
        while acc < k and p + acc < len(self.prob):
            q = self.prob[p + acc]
            if q < 1.0 and (q <= 0.0 or rng.random() >= q):
                break
            acc += 1
        return acc


class UniqueExperts:
    """Unique experts per layer of n consecutive committed tokens (mean over windows)."""

    def __init__(self, routing: np.ndarray | None):
        self.routing = routing
        self._cache: dict[int, float] = {}

    @staticmethod
    def at(turn: Turn, p: int, n: int) -> float | None:
        """Unique experts of the batch verified at position ``p`` (n tokens from position p - 1),
        from the committed tokens' routing; None past what the recording holds."""
        rows = turn.routing[p:p + n]
        if len(rows) < n or not rows:
            return None
        return unique_experts(np.transpose(np.stack(rows), (1, 0, 2)))  # [layers, n, top_k]

    def __call__(self, n: int) -> float | None:
        r = self.routing
        if r is None or len(r) == 0:
            return None
        if n not in self._cache:
            n_eff = min(n, len(r))
            step = max(1, (len(r) - n_eff) // 400)  # at most ~400 windows
            vals = []
            for s in range(0, len(r) - n_eff + 1, step):
                vals.append(unique_experts(np.transpose(r[s:s + n_eff], (1, 0, 2))))
            self._cache[n] = float(np.mean(vals))
        return self._cache[n]


@dataclass
class Prediction:
    policy: str
    tokens_per_s: float
    decode_s: float
    tokens: int
    iterations: int
    mean_k: float
    acceptance_rate: float | None

    def to_dict(self) -> dict[str, Any]:
        return {"policy": self.policy, "tokens_per_s": round(self.tokens_per_s, 3), "decode_s": round(self.decode_s, 6),
                "tokens": self.tokens, "iterations": self.iterations, "mean_k": round(self.mean_k, 4),
                "acceptance_rate": None if self.acceptance_rate is None else round(self.acceptance_rate, 4)}


def simulate(policy: Policy, cost: CostModel, acceptance: Acceptance, unique: UniqueExperts,
             turns: list[Turn], seed: int = 0, noise: bool = True, catch_up: int | None = None) -> Prediction:
    """Run ``policy`` against the fitted models for the recorded turns (same token counts)."""
    rng = np.random.default_rng(seed)
    t = 0.0
    iters = drafted = accepted = 0
    k_sum = 0
    for turn in turns:
        policy.reset()
        done = 0
        missed = turn.prompt_tokens
        first = True
        track = Agreement(turn) if turn.greedy and turn.agree else None
        while done < turn.tokens:
            decision = policy.decide()
            k = max(0, min(decision.k, turn.tokens - done - 1))
            acc = track.accept(done, k, rng) if track is not None else acceptance.draw(k, rng)
            # a shadow draft (greedy turns, as the engine): drafted, compared, not verified
            s = min(decision.shadow, turn.tokens - done) if not k and turn.greedy else 0
            matched = (track.accept(done, s, rng) if track is not None else acceptance.draw(s, rng)) if s else 0
            u = UniqueExperts.at(turn, done, k + 1)
            if u is None:
                u = unique(k + 1)
            reads = missed if first or catch_up is None else min(missed, catch_up)  # a drafter catch-up
            m = reads if k else 0
            dt = cost.iteration(k, u, m)
            if noise and cost.residuals.size:
                dt *= max(0.05, 1.0 + float(rng.choice(cost.residuals)))
            shadow_s = cost.draft(s, reads)  # 0 without a shadow draft
            dt += shadow_s
            policy.observe(Observation(k=k, drafted=k, accepted=acc, draft_s=cost.draft(k, m) + shadow_s,
                                       verify_s=cost.verify(k + 1, u), iter_s=dt, unique_experts=u,
                                       shadowed=s, shadow_checked=min(matched + 1, s), shadow_matched=matched))
            emitted = min(acc + 1, turn.tokens - done)
            if s:  # the drafter read what it missed and its own first s - 1 drafts
                missed = emitted - min(matched, s - 1, emitted)
            else:
                missed = emitted - min(acc, k - 1) if k else missed + emitted
            if k or s:
                first = False
            done += emitted
            t += dt
            iters += 1
            k_sum += k
            drafted += k
            accepted += acc
    total = sum(tr.tokens for tr in turns)
    return Prediction(policy.label, total / t if t > 0 else 0.0, t, total, iters, k_sum / iters if iters else 0.0,
                      accepted / drafted if drafted else None)


def predict(cost: CostModel, acceptance: Acceptance, unique: UniqueExperts, turns: list[Turn], spec: str,
            params: dict | None = None, seeds: int = SEEDS, catch_up: int | None = None) -> Prediction:
    """The mean over ``seeds`` simulations of policy ``spec`` (a fresh policy per seed)."""
    runs = [simulate(make_policy(spec, params), cost, acceptance, unique, turns, seed=s, catch_up=catch_up)
            for s in range(seeds)]
    t = sum(r.decode_s for r in runs) / len(runs)
    accs = [r.acceptance_rate for r in runs if r.acceptance_rate is not None]
    return Prediction(runs[0].policy, runs[0].tokens / t if t > 0 else 0.0, t, runs[0].tokens,
                      round(sum(r.iterations for r in runs) / len(runs)), sum(r.mean_k for r in runs) / len(runs),
                      sum(accs) / len(accs) if accs else None)


@dataclass
class WhatIf:
    cost: CostModel
    acceptance: Acceptance
    unique: UniqueExperts
    turns: list[Turn]
    recorded_policy: str
    recorded_tokens_per_s: float
    recorded_iterations: int
    catch_up: int | None = None

    @classmethod
    def from_events(cls, header: dict, events: list) -> WhatIf:
        from cascade_tui.stats import total_stats

        catch_up = (header.get("draft") or {}).get("max_catch_up")
        rows, turns, routing = rows_of(events, catch_up)
        if len(rows) < 8:
            raise ValueError(f"the recording has {len(rows)} iterations; what-if needs at least 8 to fit a cost model")
        st = total_stats(events)
        return cls(fit_cost(rows), fit_acceptance(rows), UniqueExperts(routing), [t for t in turns if t.tokens > 0],
                   st.policy or (header.get("policy") or {}).get("name", "?"), st.tokens_per_s, st.iterations, catch_up)

    def predict(self, spec: str, params: dict | None = None) -> Prediction:
        return predict(self.cost, self.acceptance, self.unique, self.turns, spec, params, catch_up=self.catch_up)

    def run(self, spec: str, params: dict | None = None) -> dict[str, Any]:
        target = self.predict(spec, params)
        off = self.predict("off")
        try:
            check = self.predict(self.recorded_policy)
        except Exception:  # a recorded policy this version does not know
            check = None
        notes = list(self.cost.assumptions)
        if self.acceptance.measured < 16:
            notes.append(f"acceptance measured for draft positions 1..{self.acceptance.measured}; "
                         "later positions keep the last rate")
        return {
            "estimate": True,
            "recorded": {"policy": self.recorded_policy, "tokens_per_s": round(self.recorded_tokens_per_s, 3),
                         "iterations": self.recorded_iterations},
            "model_check": None if check is None else {
                **check.to_dict(),
                "error_vs_recorded": round(check.tokens_per_s / self.recorded_tokens_per_s - 1, 4)
                if self.recorded_tokens_per_s else None},
            "predicted": {**target.to_dict(), "speedup_vs_off": round(target.tokens_per_s / off.tokens_per_s, 4)
                          if off.tokens_per_s else None},
            "predicted_off": off.to_dict(),
            "cost_model": {"verify_per_eval_s": self.cost.a, "verify_per_token_s": self.cost.b,
                           "verify_per_unique_expert_s": self.cost.c, "draft_per_eval_s": self.cost.e0,
                           "draft_per_token_s": self.cost.e1, "other_s": self.cost.other,
                           "r2": round(self.cost.r2, 4), "typical_error": round(self.cost.cv, 4),
                           "iterations_fitted": self.cost.n_fit, "verify_sizes_seen": list(self.cost.verify_sizes),
                           "text": self.cost.describe()},
            "acceptance_per_position": [round(r, 4) for r in self.acceptance.rates],
            "assumptions": notes,
        }
