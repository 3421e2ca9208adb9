"""``learned``: choose each iteration the K that maximizes predicted tokens per second.

Cascade (``policy/cascade.py``) *measures* the utility of each K it tries, in short test trials, and
pays for every trial. This policy learns the two things a K's speed depends on and predicts the
rest:

* **the cost curve** ``c(n)``: wall time of an iteration's verify + bookkeeping for ``n`` verified
  tokens (``n = drafted + 1``), a property of model, drafter, backend and hardware, stable across
  requests. Each ``n`` stands for the lower third of its ``cost_window`` most recent samples
  (robust to the slow spikes of a shared machine); between other measured points it is blended
  with the curve through all of them as if that were ``CURVE_WEIGHT`` samples more (a point seen
  three or four times is noisy). For an ``n`` not measured (or stale: older than
  ``stale_after`` iterations) the curve is extrapolated from the measured points with the fit
  ``c(n) = a + b (n - 1) + g ln(n)`` (``b, g >= 0``). The ``ln`` term is the expert union of a
  memory-bound MoE (a new token adds fewer and fewer unseen experts); with two points only the
  ``ln`` shape is used, which errs on the cheap side for a compute-bound model, so a K is tried
  rather than ruled out, and then measured. An unmeasured ``n`` is tried only up to four times
  the largest one measured (1 -> 4 -> 16 verified tokens: a few steps to reach K = 16, never a
  blind jump to it). Mean unique experts per ``n`` are kept and shown next
  to the costs when routing is known.
* **the draft cost** per drafted token (median of recent ``draft_s / drafted``) and **the
  acceptance** per draft position ``a[i]`` = P(draft i accepted | the drafts before it were), for
  the first ``POSITIONS`` positions (the last stands for every later one). Greedy drafts are not
  independent trials: once the first token agrees the next ones usually do too. Successes and
  failures are counted with exponential forgetting (``accept_halflife`` iterations, drafting or
  not), so a change of text shows within a few dozen iterations; two looks in a row that agree
  far better than the estimate expected (``surprise``) make the old evidence count one
  observation a position, so a text that turned easy shows within a couple of looks.

The expected tokens an iteration emits with K drafted is ``E(K) = 1 + sum_j prod_{i<j} a[i]``
(``j = 1..K``); its predicted time is ``T(K) = K d + c(K + 1)``; the predicted utility (speedup
over no speculation) is ``U(K) = E(K) T(0) / T(K)``. Each iteration runs the K of largest U (ties
and changes smaller than ``hysteresis`` keep the current K). A K whose best case (every draft
accepted, the cheapest cost the curve allows: ``c`` never falls as ``n`` grows) cannot beat K = 0
is never tried.

While speculation is off, the policy *shadow drafts* (``Decision.shadow``): every ``shadow_every``
iterations (further apart where ``shadow_budget`` of a plain step's time would not pay for one),
the drafter proposes ``shadow_len`` tokens that are not verified, and the engine reports how many
of them the target then wrote. That is acceptance evidence at the drafter's cost alone (a verify of
K + 1 tokens on the grown demo costs 2-3 plain steps), so a text that turns easy is seen within
a few dozen tokens. The engine shadows greedy requests only. While off, a plain step that
brings nothing but one more c(1) sample skips re-deciding (up to ``QUIET`` in a row, never past
a shadow draft or probe that is due): the policy's own time counts in tok/s.

Where the engine does not shadow (sampling, a simulator that does not): every ``probe_after`` iterations (doubling
after each probe that does not turn speculation on, up to ``probe_max``; reset when it does) one
iteration drafts a short probe, never more often than keeps the probes' extra time within
``probe_budget`` of the time spent off. Phases as the UI shows them: ``base`` measures ``c(1)``,
``test`` runs a K whose cost is not yet measured (or a probe), ``set`` runs the predicted best K
(K = 0: speculation off).

With ``memory`` on, a new request keeps the cost curve, the draft cost and the acceptance (its
counts scaled down to ``carry_weight`` observations per draft position, so the new text takes
over quickly; with ``carry_prior``, the first position's prior is the rate the last request ended
with, not ``accept_prior``);
the probe interval restarts at half its length (at least ``probe_after``). With ``look_first``, a
new request that would start drafting on that carried acceptance first shadow drafts one token;
if it disagrees, what was carried counts one observation per position. A probe drafts at
most two tokens. :meth:`export_costs` / :meth:`import_costs` hand the cost curve to a
cache outside the policy (the policy itself does no I/O).
"""

from __future__ import annotations

import functools
import math
from collections import deque
from typing import Any, Sequence

from cascade_tui.policy.base import Decision, Observation, Param, Policy, PolicyError
from cascade_tui.policy.static import MAX_K

COSTS_FORMAT = 1  # version of export_costs()'s dict
PROBE_ACCEPT = 0.9  # acceptance a probe is sized for
PROBE_K_MAX = 2  # longest probe draft
REACH = 4  # an unmeasured K is tried only up to this many times the largest n measured
SETTLE = 3  # samples after which a cost point is trusted over the curve
UNSETTLED_FLOOR = 0.5  # an unsettled cost point counts at least this share of its samples
FIRST_LOOK = UNSETTLED_FLOOR  # the same, for one with no curve through other points to compare it with
QUIET = 7  # plain steps with speculation off that may skip re-deciding, at most, in a row
CURVE_WEIGHT = 2.0  # samples' worth of weight the curve through all points has in a settled point's cost
POSITIONS = 4  # draft positions with an acceptance rate of their own; later ones share the last


def _median(xs) -> float:
    s = sorted(xs)
    m = len(s)
    return s[m // 2] if m % 2 else 0.5 * (s[m // 2 - 1] + s[m // 2])


def _typical(xs) -> float:
    """The cost a point stands for: the lower third of its recent samples. A busy machine only
    ever slows an iteration down, so the noise is one-sided; a low quantile ignores a run of slow
    samples that would move the median (the bias is the same for every n, so U barely moves)."""
    s = sorted(xs)
    return s[(len(s) - 1) // 3]


def expected_emitted(a: float | Sequence[float], k: int) -> float:
    """Tokens an iteration emits on average with ``k`` drafted. ``a``: the acceptance of every
    position, or per position ``a[i]`` = P(draft ``i`` accepted | drafts before it accepted), the
    last rate standing for every later position."""
    return expected_emitted_upto(a, max(k, 0))[-1]


def expected_emitted_upto(a: float | Sequence[float], kmax: int) -> list[float]:
    """:func:`expected_emitted` for every K = 0..kmax, in one pass."""
    rates = [a] if isinstance(a, (int, float)) else a
    out, total, p = [1.0], 1.0, 1.0
    for i in range(kmax):
        p *= rates[min(i, len(rates) - 1)]
        total += p
        out.append(total)
    return out


def _fit_curve(points: dict[int, float]) -> tuple[float, float, float]:
    """See :func:`_fit_points` (memoized: between two decisions most points keep their cost)."""
    return _fit_points(tuple(sorted(points.items())))


@functools.lru_cache(maxsize=256)
def _fit_points(items: tuple[tuple[int, float], ...]) -> tuple[float, float, float]:
    """(a, b, g) of ``c(n) = a + b (n - 1) + g ln(n)`` fitted to ``{n: cost}``, b, g >= 0.

    One point: flat. Two points: the ``ln`` shape through both (the optimistic one). Three or
    more: least squares over the non-negative combinations (both terms, ``ln`` only, linear only,
    flat), the best that fits."""
    points = dict(items)
    ns = sorted(points)
    if not ns:
        return 0.0, 0.0, 0.0
    if len(ns) == 1:
        return points[ns[0]], 0.0, 0.0
    if len(ns) == 2:
        n0, n1 = ns
        f0, f1 = math.log(n0), math.log(n1)
        g = max(0.0, (points[n1] - points[n0]) / (f1 - f0))
        return points[n0] - g * f0, 0.0, g
    # the normal equations of the full model once; each model takes its rows and columns
    xs, lgs, y = [n - 1.0 for n in ns], [math.log(n) for n in ns], [points[n] for n in ns]
    sx = slg = sxx = sxl = sll = r0 = rx = rl = 0.0
    for x, lg, yi in zip(xs, lgs, y):
        sx += x
        slg += lg
        sxx += x * x
        sxl += x * lg
        sll += lg * lg
        r0 += yi
        rx += x * yi
        rl += lg * yi
    m = float(len(ns))
    fits = [_solve3(m, sx, slg, sxx, sxl, sll, r0, rx, rl),  # both terms
            _solve2(m, slg, sll, r0, rl, "g"),  # ln only
            _solve2(m, sx, sxx, r0, rx, "b"),  # linear only
            (r0 / m, 0.0, 0.0)]  # flat
    best: tuple[float, tuple[float, float, float]] | None = None
    for fit in fits:
        if fit is None:
            continue
        a, b, g = fit
        if b < 0 or g < 0:
            continue
        sse = sum((a + b * x + g * lg - yi) ** 2 for x, lg, yi in zip(xs, lgs, y))
        if best is None or sse < best[0] - 1e-18:
            best = (sse, fit)
    return best[1] if best else (points[ns[0]], 0.0, 0.0)


def _solve2(m: float, s: float, ss: float, r0: float, r: float, term: str) -> tuple[float, float, float] | None:
    """Least squares of ``y = a + c t`` from its sums (count m, sum t, sum t^2, sum y, sum t y):
    (a, b, g) with c as ``term`` ("b" or "g"); None when the points cannot tell a from c."""
    det = m * ss - s * s
    if det <= 1e-12 * m * ss:
        return None
    a, c = (ss * r0 - s * r) / det, (m * r - s * r0) / det
    return (a, c, 0.0) if term == "b" else (a, 0.0, c)


def _solve3(m: float, sx: float, sl: float, sxx: float, sxl: float, sll: float,
            r0: float, rx: float, rl: float) -> tuple[float, float, float] | None:
    """Least squares of ``y = a + b x + g l`` from its sums (the symmetric normal equations by
    their cofactors, no elimination loop: this runs on every cost change); None when singular."""
    c00, c01, c02 = sxx * sll - sxl * sxl, sxl * sl - sx * sll, sx * sxl - sxx * sl
    det = m * c00 + sx * c01 + sl * c02
    if abs(det) <= 1e-12 * max(m * sxx * sll, 1e-300):
        return None
    c11, c12, c22 = m * sll - sl * sl, sx * sl - m * sxl, m * sxx - sx * sx
    return ((c00 * r0 + c01 * rx + c02 * rl) / det,
            (c01 * r0 + c11 * rx + c12 * rl) / det,
            (c02 * r0 + c12 * rx + c22 * rl) / det)


class _Curve:
    """The cost model at one moment: ``pts`` (n -> cost), the sample count and fastest sample of
    each, the window that makes a point trusted and the points that came from the cache.
    A decision asks for every K's cost, so :meth:`costs` works them all out in one pass (and
    each curve fit is a small least-squares problem, memoized)."""

    def __init__(self, pts: dict[int, float], counts: dict[int, int], fastest: dict[int, float],
                 window: int, imported: frozenset[int]):
        self.pts, self.counts, self.fastest, self.window, self.imported = pts, counts, fastest, window, imported
        self.settled = {n: c for n, c in pts.items() if counts[n] >= SETTLE or n in imported}
        self._costs: list[float | None] = [None]  # index n: c(n), worked out up to len - 1
        self._lowers: list[float | None] = [None]
        self._fits: dict[int | None, tuple[float, float, float]] = {}

    def _fit_all(self) -> tuple[float, float, float]:
        """The fit through every point (shared with every unmeasured n)."""
        if None not in self._fits:
            self._fits[None] = _fit_curve(self.pts)
        return self._fits[None]

    def _fit_without(self, n: int) -> tuple[float, float, float]:
        if n not in self.pts:  # every unmeasured n shares the fit through all points
            return self._fit_all()
        if n not in self._fits:
            self._fits[n] = _fit_curve({m: c for m, c in self.pts.items() if m != n})
        return self._fits[n]

    def cost(self, n: int) -> float | None:
        """Predicted verify + bookkeeping seconds for ``n`` verified tokens (None: nothing known);
        see :meth:`costs`."""
        return self.costs(n)[n]

    def costs(self, nmax: int) -> list[float | None]:
        """``c(n)`` for every n = 1..nmax, at index n (index 0: None), and maybe more.

        A point with ``SETTLE`` samples or more stands for them (their lower third, or median:
        the ``stat`` of the snapshot), leaning on the curve through all points as on
        ``CURVE_WEIGHT`` samples where it lies between other points (four or more); one with fewer, the
        smaller of its samples and the curve through the other points (a first slow sample must
        not rule a K out); anything else comes from the curve."""
        out = self._costs
        if len(out) > nmax:
            return out
        pts, settled, counts = self.pts, self.settled, self.counts
        n = len(out)
        # the cost never falls as n grows: a prediction is at least the largest settled cost below n
        floor = max((out[m] for m in settled if m < n), default=0.0)
        while n <= nmax:
            out.append(self._cost(n, floor) if pts else None)
            if n in settled:
                floor = max(floor, out[n])
            n += 1
        return out

    def _cost(self, n: int, floor: float) -> float | None:
        pts = self.pts
        measured = n in pts
        if measured and (n == 1 or n in self.settled or self.counts[n] >= self.window):
            # (c(1), the baseline of every utility, is always taken as measured). SETTLE samples
            # are enough: the point stands for the lower third of them (the fastest of three), so
            # a busy moment rules nothing out unless it lasts; trying an expensive K until a whole
            # window had filled cost the demo 10 slow iterations of K = 12 at a time
            imported = n in self.imported
            if n == 1 or len(pts) < 4 or not (self.counts[n] >= SETTLE or imported) \
                    or not min(pts) < n < max(pts):
                return pts[n]
            # a few samples of a shared machine are noisy (on the cost pair at agreement 0.95, four
            # samples of c(16) read 17% above its true cost and K = 7 ran where 15 paid): the point
            # leans on the curve through all the points (four or more) as on CURVE_WEIGHT samples
            # of its own, less as its samples fill the window. Only between measured points: an
            # extrapolation from c(1..3) put c(12) 28% above the truth
            a, b, g = self._fit_all()
            fit = max(a + b * (n - 1) + g * math.log(n), 1e-12)
            k = self.window if imported else self.counts[n]  # a cached point: a whole window's
            return (k * pts[n] + CURVE_WEIGHT * fit) / (k + CURVE_WEIGHT)
        n_others = len(pts) - measured
        if measured and n_others < 2:
            # no curve to compare the first samples with: optimism buys one more look (one slow
            # moment must not switch speculation off; at 0.75 rather than the UNSETTLED_FLOOR allowed
            # elsewhere, one 2x-slow first sample of c(4) kept a text at acceptance 0.97 off for
            # 250 iterations in 4 of 40 seeds)
            return FIRST_LOOK * pts[n]
        if not n_others:
            return None
        a, b, g = self._fit_without(n)
        pred = max(a + b * (n - 1) + g * math.log(n), floor, 1e-12)
        # optimism for a point seen fewer than SETTLE times: at most 1/UNSETTLED_FLOOR below its
        # samples, so a first slow sample does not rule the K out
        return max(min(pred, pts[n]), UNSETTLED_FLOOR * pts[n]) if measured else pred

    def lower(self, n: int) -> float | None:
        """The cheapest ``c(n)`` can be: cost never falls as n grows, so at least the fastest
        sample of any settled point at or below n (settled and the fastest, so one slow moment
        of the machine cannot rule a K out); see :meth:`lowers`."""
        return self.lowers(n)[n]

    def lowers(self, nmax: int) -> list[float | None]:
        """:meth:`lower` for every n = 1..nmax, at index n."""
        out = self._lowers
        if len(out) > nmax:
            return out
        n = len(out)
        lo = max((self.fastest[m] for m in self.settled if m < n), default=None)
        while n <= nmax:
            if n in self.settled:
                lo = self.fastest[n] if lo is None else max(lo, self.fastest[n])
            out.append(lo)
            n += 1
        return out


class LearnedPolicy(Policy):
    name = "learned"
    summary = "learns the cost curve and the acceptance rate online; runs the K of highest predicted tok/s"
    PARAMS = (
        Param("k_max", int, 16, 1, MAX_K, "largest K considered"),
        Param("base_iters", int, 1, 1, 64, "K=0 iterations that measure c(1), the cost of a plain step, before any draft"),
        Param("cost_window", int, 9, 1, 1024, "recent samples per verified-token count its cost comes from (their lower third)"),
        Param("stale_after", int, 2048, 16, 10_000_000, "iterations after which a cost point is re-measured before use"),
        Param("accept_halflife", float, 48.0, 1.0, 100_000.0, "iterations after which an acceptance observation counts half"),
        Param("accept_prior", float, 0.5, 0.0, 1.0, "acceptance assumed before any draft was verified"),
        Param("optimism", float, 0.5, 0.0, 10.0,
              "decide with the acceptance this many standard errors above its estimate (thin evidence: try); "
              "only while probing (shadow drafts look cheaply, so they decide on the estimate)"),
        Param("hysteresis", float, 0.01, 0.0, 1.0, "change K only when the prediction improves by more than this fraction"),
        Param("min_utility", float, 1.0, 0.0, 100.0, "speculate only where the predicted U reaches this"),
        Param("refresh_every", int, 16, 0, 1_000_000,
              "while speculating, every this many iterations one re-measures c(1) or the runner-up K (0: never)"),
        Param("probe_after", int, 16, 1, 1_000_000, "iterations with speculation off before a probe drafts again"),
        Param("probe_max", int, 512, 1, 10_000_000, "longest interval between probes"),
        Param("probe_budget", float, 0.02, 0.001, 1.0,
              "share of the time with speculation off that probes may cost (their extra time over a plain "
              "step); spaces probes further apart than probe_after where a probe is expensive"),
        Param("shadow", bool, True, None, None,
              "while speculation is off, draft without verifying and compare with the target's tokens (greedy)"),
        Param("shadow_len", int, 4, 1, 64, "tokens a shadow draft proposes"),
        Param("shadow_every", int, 6, 1, 1_000_000, "iterations with speculation off between shadow drafts (at least)"),
        Param("shadow_budget", float, 0.015, 0.001, 1.0,
              "share of a plain step's time shadow drafts may cost; spaces them further apart than shadow_every "
              "where a shadow draft is expensive"),
        Param("look_first", bool, True, None, None,
              "a new request that would start speculating on carried acceptance shadow drafts once first"),
        Param("surprise", float, 0.01, 0.0, 1.0,
              "two looks at the drafter in a row that agreed this much better than the acceptance estimate made "
              "likely mean the text turned easy: earlier evidence then counts one observation per position (0: never)"),
        Param("memory", bool, True, None, None, "carry the learned costs and acceptance over to the next request"),
        Param("carry_weight", float, 4.0, 0.0, 1000.0, "observations per draft position of acceptance evidence carried into a new request"),
        Param("carry_prior", bool, True, None, None,
              "with memory, a new request's first draft position starts from the acceptance the last one "
              "ended with instead of accept_prior"),
    )

    def __init__(self, **overrides):
        super().__init__(**overrides)
        self._forget()

    def _validate_all(self) -> None:
        if self.get("probe_after") > self.get("probe_max"):
            raise PolicyError(
                f"probe_after ({self.get('probe_after')}) must not exceed probe_max ({self.get('probe_max')})")

    def _on_param_change(self, key: str) -> None:
        if key == "accept_prior":  # set by hand: it applies now (a later request may carry another)
            self._prior0 = self.get("accept_prior")
        if key == "cost_window":
            w = self.get("cost_window")
            self._costs = {n: deque(d, maxlen=w) for n, d in self._costs.items()}
        self._decide()

    # -- learned state -----------------------------------------------------------------------
    def _forget(self) -> None:
        self._n = 0  # iterations observed
        self._costs: dict[int, deque[float]] = {}  # n verified -> recent verify+bookkeeping times
        self._cost_at: dict[int, int] = {}  # n -> iteration of its latest sample
        self._uniq: dict[int, float] = {}  # n -> running mean unique experts per MoE layer
        self._draft = deque(maxlen=self.get("cost_window"))  # recent draft seconds per token
        self._draft_memo: float | None = None  # their median (None: to work out again)
        # decayed accepted / rejected drafts per draft position (the last one pools the later
        # positions): greedy drafts are not independent trials; once the first token agrees the
        # next ones usually do too (the demo on math: 0.55 at position 1, 0.92 at 2 and 3), and
        # one pooled rate made short drafts look better and long ones worse than they are
        self._succ = [0.0] * POSITIONS
        self._fail = [0.0] * POSITIONS
        self._ever_drafted = False
        self._prior0 = self.get("accept_prior")
        self._looks: deque[float] = deque(maxlen=2)  # P(at least as good) of the last looks
        self._off_for = 0  # consecutive iterations with speculation off
        self._probe_every = self.get("probe_after")
        self._probe_extra: float | None = None  # what the last probe cost over a plain step (s)
        self._probing = False
        self._shadow_ok: bool | None = None  # does the engine shadow draft (None: not asked yet)
        self._shadow_pending = 0  # iterations a shadow draft has been waiting for its result
        self._since_shadow = 1 << 30  # iterations since the last shadow draft (none yet: due)
        self._shadow_costs: deque[float] = deque(maxlen=5)  # what recent shadow drafts cost (s)
        self._shadow_first = True  # the next shadow draft is the request's first (the drafter reads the prompt)
        self._look_first = False  # a new request with carried acceptance: shadow draft before verifying
        self._since_refresh = 0  # iterations since the last upkeep sample
        self._maintaining = False
        self._refreshes = 0
        self._imported: set[int] = set()  # cost points that came from the cache, not measured here
        self._decision = Decision(0, "base", f"measuring c(1): {self.get('base_iters')} iterations at K=0")
        self._pred: dict[int, float] | None = {}  # reported U per K (None: not worked out yet)
        self._quiet = 0  # plain steps that may skip re-deciding (speculation off, nothing due)

    def reset(self) -> None:
        if not self.get("memory"):
            costs = self.export_costs() if self._imported else None
            self._forget()
            if costs:  # a cache seeds every request, memory or not
                self.import_costs(costs)
            return
        # each position keeps at most carry_weight observations (its rate stays, its weight
        # shrinks so the new text takes over quickly). Scaling the total instead left the first
        # position, one trial per draft against many at the pooled deep one, with a fraction of
        # an observation: it fell back to the prior and a new request at 95% agreement started
        # with speculation off for 67 iterations
        w = self.get("carry_weight")
        if self.get("carry_prior") and self._ever_drafted and self._shadow_ok:
            # one pseudo-observation of accept_prior (0.5) next to carry_weight observations kept
            # the first position 10% below a drafter that always agreed (4 of 4 read 0.9), and the
            # rest compounded it: U(16) read 2.19 where static:16 reached 2.39. Only where the
            # engine shadow drafts (greedy): a new text's first look (look_first) then puts the
            # prior back when the text changed; without one (sampling, probes) a hard request's
            # prior slowed finding an easy one after it (scripted: 94 iterations against 84)
            self._prior0 = self.acceptance_by_position()[0]
        else:
            self._prior0 = self.get("accept_prior")
        for i in range(POSITIONS):
            total = self._succ[i] + self._fail[i]
            if total > w:
                f = w / total
                self._succ[i] *= f
                self._fail[i] *= f
        self._off_for = 0
        # the probe interval restarts shorter (halved, at least probe_after), not from scratch:
        # a run of hard requests keeps probes rare, an easy one after them is still found soon
        self._probe_every = max(self.get("probe_after"), self._probe_every // 2)
        self._probing = False
        self._shadow_ok, self._shadow_pending = None, 0  # a new request (greedy or not): ask again
        self._shadow_first = True
        self._look_first = bool(self.get("look_first")) and self._ever_drafted
        self._looks.clear()  # a new text: its looks are judged among themselves
        self._since_shadow = 1 << 30  # a new text: look at once
        self._decide()

    def export_costs(self) -> dict[str, Any]:
        """The learned cost curve, for a cache kept outside the policy (JSON-ready)."""
        return {
            "format": COSTS_FORMAT,
            "costs": {str(n): _typical(d) for n, d in sorted(self._costs.items()) if d},
            "samples": {str(n): len(d) for n, d in sorted(self._costs.items()) if d},
            "unique_experts": {str(n): u for n, u in sorted(self._uniq.items())},
            "draft_per_token": _median(self._draft) if self._draft else None,
        }

    def import_costs(self, data: dict[str, Any]) -> bool:
        """Start from a cost curve :meth:`export_costs` wrote (another run on the same model,
        drafter, backend, device and threads). Points measured in this run win. Returns False
        (and changes nothing) for data of another format."""
        try:
            if int(data.get("format", -1)) != COSTS_FORMAT:
                return False
            costs = {int(n): float(c) for n, c in data["costs"].items()}
            d = data.get("draft_per_token")
            d = None if d is None else float(d)
        except (AttributeError, KeyError, TypeError, ValueError):
            return False
        if any(n < 1 or not c > 0 or not math.isfinite(c) for n, c in costs.items()):
            return False
        for n, c in costs.items():
            if n not in self._costs or n in self._imported:
                self._costs[n] = deque([c], maxlen=self.get("cost_window"))
                self._cost_at[n] = self._n
                self._imported.add(n)
        if d is not None and d >= 0 and math.isfinite(d) and not self._draft:
            self._draft.append(d)
            self._draft_memo = None
        self._decide()
        return True

    # -- the model ---------------------------------------------------------------------------
    def acceptance(self) -> float:
        """The share of drafted positions accepted (recent, decayed): what is shown."""
        succ, total = sum(self._succ), sum(self._succ) + sum(self._fail)
        return (succ + self._prior0) / (total + 1.0)  # one pseudo-observation of the prior

    def acceptance_by_position(self, optimism: float = 0.0) -> list[float]:
        """P(draft position i accepted | the positions before it were), i = 0..POSITIONS-1 (the
        last stands for every later one). Each rate starts from one pseudo-observation of the
        previous position's (the first: ``accept_prior``, or with ``carry_prior`` the rate the
        last request ended with), so a position rarely reached follows the one before it.
        ``optimism``: that many standard errors added to the first position's rate (decisions, below): whether the drafter agrees at all is what a short try finds out;
        optimism at every position compounded into long drafts that one lucky draft justified
        (after one 3/3 and one 3/0 draft, K = 15 looked like U = 2.2)."""
        rates, prior = [], self._prior0
        for s, f in zip(self._succ, self._fail):
            p = (s + prior) / (s + f + 1.0)
            rates.append(p)
            prior = p
        if optimism:
            s, f, p = self._succ[0], self._fail[0], rates[0]
            rates[0] = min(1.0, p + optimism * math.sqrt(p * (1.0 - p) / (s + f + 2.0)))
        return rates

    def _acceptance_to_decide(self) -> list[float]:
        """The acceptance decisions use: the estimates, the first position's plus ``optimism``
        standard errors. With plenty of recent evidence it is the estimate; with little (early on,
        or after a stretch without drafting, as the evidence fades) it leans towards trying, so one
        unlucky draft cannot switch speculation off for long, and a text that got easier is found."""
        # shadow drafts look at the drafter every few iterations for the drafter's time alone: no
        # need to buy a look with optimism (on the demo's real text it turned speculation on after
        # one lucky shadow draft: 0.7-1.4% lost on prose, scripts/sim_policies.py, docs/BENCHMARKS.md)
        return self.acceptance_by_position(0.0 if self._shadowing() and self._shadow_ok else self.get("optimism"))

    def _is_fresh(self, n: int) -> bool:
        """Has the cost point ``n`` samples, measured within ``stale_after`` iterations or cached?"""
        return bool(self._costs.get(n)) and (
            n in self._imported or self._cost_at.get(n, -1) >= self._n - self.get("stale_after"))

    def _fresh_costs(self, stat=_typical) -> dict[int, float]:
        return {n: stat(d) for n, d in self._costs.items() if self._is_fresh(n)}

    def _curve(self, stat=_typical) -> _Curve:
        """The cost model as it stands, each point's samples summed up by ``stat``."""
        pts = self._fresh_costs(stat)
        return _Curve(pts, {n: len(self._costs[n]) for n in pts}, {n: min(self._costs[n]) for n in pts},
                      self.get("cost_window"), frozenset(self._imported))

    def cost(self, n: int) -> float | None:
        """Predicted verify + bookkeeping seconds for ``n`` verified tokens (None: nothing known);
        see :meth:`_Curve.cost`."""
        return self._curve().cost(n)

    def _draft_per_token(self) -> float:
        if self._draft_memo is None:
            self._draft_memo = _median(self._draft) if self._draft else 0.0
        return self._draft_memo

    def predict(self, k: int, curve: _Curve | None = None) -> float | None:
        """Predicted utility of ``k`` (speedup over K=0), None until c(1) is known: what is reported
        (the TUI, the bench's utility check). It takes the median of each point's samples, an
        unbiased typical time, where decisions take the robust lower third."""
        return self._utility_at(k, self.acceptance_by_position(), curve or self._curve(_median))

    def _utilities(self, a: float | Sequence[float], curve: _Curve, kmax: int) -> dict[int, float | None]:
        """:meth:`_utility_at` for every K = 0..kmax at once (one pass: a decision needs all of
        them every iteration, and K at a time cost half a millisecond, 4% of a grown-demo step)."""
        t0 = curve.cost(1)
        if t0 is None or t0 <= 0:
            return {k: None for k in range(kmax + 1)}
        d = self._draft_per_token()
        costs = curve.costs(kmax + 1)
        out: dict[int, float | None] = {0: 1.0}
        for k, e in enumerate(expected_emitted_upto(a, kmax)[1:], start=1):
            tk = k * d + costs[k + 1]
            out[k] = e * t0 / tk if tk > 0 else None
        return out

    def _utility_at(self, k: int, a: float | Sequence[float], curve: _Curve) -> float | None:
        """Predicted U of one K; ``a``: one acceptance for every position, or one per position."""
        t0 = curve.cost(1)
        if k == 0 or t0 is None or t0 <= 0:
            return None if t0 is None or t0 <= 0 else 1.0
        tk = k * self._draft_per_token() + curve.cost(k + 1)
        return expected_emitted(a, k) * t0 / tk if tk > 0 else None

    def _best_cases_beat_off(self, kmax: int, curve: _Curve) -> list[bool]:
        """For K = 0..kmax (index K; 0 is False): could K beat plain decoding if every draft
        were accepted, at the cheapest cost the curve allows?"""
        t0, d = curve.cost(1), self._draft_per_token()
        lowers = curve.lowers(kmax + 1)
        return [False] + [t0 is None or lowers[k + 1] is None or (k + 1) * t0 > k * d + lowers[k + 1]
                          for k in range(1, kmax + 1)]

    # -- decisions ---------------------------------------------------------------------------
    def _decide(self) -> None:
        """Recompute the decision from what is known (called after each observation, except
        the plain steps :attr:`_quiet` allows to skip it)."""
        self._quiet = 0
        typical = self._curve()  # one snapshot of the costs for every K below
        fresh = typical.pts
        have = len(self._costs.get(1, ()))
        if 1 in self._imported:
            pass  # a cached c(1): the first plain steps of this run replace it as they come
        elif 1 not in fresh or have < self.get("base_iters"):
            left = self.get("base_iters") - have if 1 in fresh else 1
            self._decision = Decision(0, "base", f"measuring c(1): {max(left, 1)} iterations at K=0")
            self._pred = {}
            return
        kmax = self.get("k_max")
        a_dec = self._acceptance_to_decide()
        pred = self._utilities(a_dec, typical, kmax)
        # explore geometrically: an unmeasured K only up to REACH times the largest n measured
        reach = REACH * max(fresh)
        if not self._draft:
            reach = min(reach, REACH)  # the drafter's own cost is unknown yet: nothing long
        allowed = [k for k, ok in enumerate(self._best_cases_beat_off(kmax, typical))
                   if ok and (k + 1 in fresh or k + 1 <= reach)]
        # what is reported (utility, state) is the plain prediction, not the optimistic one; it is
        # worked out when asked for (the engine asks for the chosen K's only: one cost, not 17)
        self._pred = None
        cur = self._decision.k if self._decision.phase in ("set", "test") else 0
        best = max(allowed, key=lambda k: (pred[k], -k)) if allowed else 0
        best_u = pred[best] if allowed else 1.0
        if best_u < self.get("min_utility"):
            best, best_u = 0, 1.0
        cur_u = pred.get(cur) if cur <= kmax else None
        if cur_u is not None and cur != best and best_u <= cur_u * (1.0 + self.get("hysteresis")) \
                and (cur == 0 or cur_u >= self.get("min_utility")):
            best, best_u = cur, cur_u  # not worth the change
        a = self.acceptance()
        if best == 0:
            why_off = (f"no K beats plain decoding: best predicted U(K={max(allowed, key=lambda k: pred[k])})="
                       f"{max(pred[k] for k in allowed):.2f}" if allowed else
                       "no K can beat plain decoding even if every draft were accepted")
            short = [k for k in allowed if k <= PROBE_K_MAX] or allowed[:1]
            k = max(short, key=lambda k: (self._utility_at(k, PROBE_ACCEPT, typical), -k)) if short else 0
            shadow_gap = self._shadow_interval(typical)
            if allowed and self._shadowing() and shadow_gap <= self._probe_interval(typical, k):
                # watch the drafter instead of probing, where that looks more often for the same
                # share of the time: a verify of many tokens can cost several plain steps
                d = self._keep_reason(Decision(0, "set", f"{why_off}; speculation off, shadow drafting"))
                due = not self._shadow_pending and self._since_shadow >= shadow_gap
                self._decision = Decision(d.k, d.phase, d.reason, shadow=self.get("shadow_len") if due else 0)
                if not due and not self._shadow_pending:  # plain steps until the next shadow draft
                    self._quiet = min(QUIET, shadow_gap - self._since_shadow - 1)
                return
            unseen = not self._ever_drafted  # no draft verified yet: only the prior decided
            # else a short probe (at most PROBE_K_MAX drafts, where it would pay most if the
            # drafter now agreed)
            if allowed and (unseen or self._off_for >= self._probe_interval(typical, k)):
                self._probing = True
                why = "no draft verified yet" if unseen else f"acceptance unseen for {self._off_for} iterations"
                self._decision = Decision(k, "test", f"probing K={k}: {why}")
                return
            self._decision = self._keep_reason(Decision(0, "set", f"{why_off}; speculation off"))
            if allowed:  # plain steps until the next probe
                self._quiet = min(QUIET, self._probe_interval(typical, k) - self._off_for - 1)
            else:
                self._quiet = QUIET
            return
        if self._look_first and self._shadowing():
            # a new request: the acceptance carried over is another text's. One shadow draft looks
            # at this one first, for the drafter's time (extraction prompt 7 after prompt 6, which the
            # drafter wrote almost alone: 12 rejected K=4 drafts, 0.65-0.84x of off)
            due = not self._shadow_pending
            self._decision = Decision(0, "test", "new request: one shadow draft looks at the text before drafting",
                                      shadow=1 if due else 0)
            return
        measured = (best + 1) in typical.settled and (best + 1) not in self._imported
        every = self.get("refresh_every")
        if measured and every and self._since_refresh >= every:
            # one iteration of upkeep: c(1) every other time, else the runner-up K, so that one
            # unlucky sample (a slow moment of the machine) cannot decide for good
            others = [k for k in allowed if k != best]
            if self._refreshes % 2 == 0 or not others:
                k, why = 0, "re-measuring c(1)"
            else:
                k = max(others, key=lambda k: (pred[k], -k))
                why = f"re-measuring the runner-up K={k} (predicted U={pred[k]:.2f})"
            self._decision = Decision(k, "test", f"{why}: one iteration, then K={best} again")
            self._maintaining = True
            return
        phase = "set" if measured else "test"
        reason = (f"K={best}: highest predicted tok/s (U={best_u:.2f} at acceptance {a:.2f})" if measured
                  else f"trying K={best}: predicted U={best_u:.2f} from the cost curve, cost not yet measured")
        self._decision = self._keep_reason(Decision(best, phase, reason))

    def _look(self, checked: int, matched: int) -> None:
        """Count one look at the drafter (a verified draft or a shadow draft's result): ``matched``
        of ``checked`` positions agreed before the first miss.

        With ``surprise`` on, two looks in a row that agreed better than the estimate made likely
        (every position up to the miss agreeing, that often, multiplied over both looks, below
        ``surprise``) mean the text turned easy: what came before counts one observation per
        position, so these looks decide. After 150 iterations at acceptance 0.1, acceptance 0.97
        took 17-250 iterations (mean 71, 40 seeds) to turn speculation on: each shadow draft adds
        one observation a position while the old failures fade with ``accept_halflife``. The
        same rule for looks worse than expected (speculation on and the text turning hard) cost
        the demo's code 0.5-1.5% in replays: a run of misses at high acceptance is common in real
        code, and a verified draft adds evidence every iteration anyway."""
        rates = self.acceptance_by_position()
        last = POSITIONS - 1
        up = math.prod(rates[min(i, last)] for i in range(matched))  # P(at least this good)
        looks = self._looks
        looks.append(up)
        limit = self.get("surprise")
        if limit and len(looks) == 2 and looks[0] * up < limit:
            self._forget_text()
            looks.clear()  # the next looks are judged against the new text
        for i in range(matched):
            self._succ[min(i, last)] += 1.0
        if matched < checked:
            self._fail[min(matched, last)] += 1.0

    def _forget_text(self) -> None:
        """What the acceptance says counts one observation per position, no more (its rates stay),
        and the first position's prior is ``accept_prior`` again: the text changed, so the rate an
        earlier request ended with says nothing about this one (kept, it held a text that turned
        easy after a hard request, or hard after an easy one, near the old rate)."""
        self._prior0 = self.get("accept_prior")
        for i in range(POSITIONS):
            total = self._succ[i] + self._fail[i]
            if total > 1.0:
                self._succ[i] /= total
                self._fail[i] /= total

    def _shadowing(self) -> bool:
        """Shadow drafts stand in for probes: on, and the engine has not declined one."""
        return self.get("shadow") and self._shadow_ok is not False

    def _shadow_interval(self, curve: _Curve) -> int:
        """Iterations off between shadow drafts: ``shadow_every``, and at least what keeps them
        within ``shadow_budget`` of the time (the drafter's catch-up and ``shadow_len`` evals)."""
        c1 = curve.cost(1)
        cost = self._shadow_costs[-1] if self._shadow_costs else self.get("shadow_len") * self._draft_per_token()
        if not cost or not c1 or c1 <= 0:
            return 2 * self.get("shadow_every")  # nothing known yet: a guess on the rare side
        floor = math.ceil(cost / (self.get("shadow_budget") * c1))
        return max(self.get("shadow_every"), min(floor, self.get("probe_max")))

    def _probe_interval(self, curve: _Curve, k: int) -> int:
        """Iterations off before the next probe: ``probe_after``, doubled after each probe that
        did not turn speculation on, and at least what keeps probes within ``probe_budget`` of
        the time (a probe verifies k + 1 tokens and makes the drafter catch up: on the grown demo
        that is two plain steps more: probing every 16 steps, math ran at 0.93x of off, with the
        budget 0.96x)."""
        c1 = curve.cost(1)
        extra = self._probe_extra
        if extra is None and c1 and k:
            ck = curve.cost(k + 1)
            extra = None if ck is None else max(k * self._draft_per_token() + ck - c1, 0.0)
        floor = math.ceil(extra / (self.get("probe_budget") * c1)) if extra and c1 and c1 > 0 else 0
        return max(self._probe_every, min(floor, self.get("probe_max")))

    def _keep_reason(self, d: Decision) -> Decision:
        """Keep the previous reason text while K and phase stay (its numbers would otherwise
        change every iteration and flood the transition log)."""
        old = self._decision
        if (old.k, old.phase) == (d.k, d.phase) and old.reason.split(":")[0] == d.reason.split(":")[0]:
            return Decision(d.k, d.phase, old.reason, d.shadow)
        return d

    def decide(self) -> Decision:
        d = self._decision
        return Decision(min(d.k, self.get("k_max")), d.phase, d.reason, d.shadow)

    def observe(self, obs: Observation) -> None:
        # the decision the engine ran (control messages apply before it asks, so it is this one)
        asked_shadow = self._decision.shadow > 0
        self._n += 1
        n = obs.drafted + 1
        c = max(obs.iter_s - obs.draft_s, 0.0)
        w = self.get("cost_window")
        if n in self._imported:  # a measured point replaces the cached one
            self._imported.discard(n)
            self._costs[n] = deque(maxlen=w)
        catch_up = obs.drafted > 0 and self._off_for > 0  # the drafter re-reads what it skipped
        self._costs.setdefault(n, deque(maxlen=w)).append(c)
        self._cost_at[n] = self._n
        if obs.unique_experts is not None:
            u0 = self._uniq.get(n)
            self._uniq[n] = obs.unique_experts if u0 is None else 0.9 * u0 + 0.1 * obs.unique_experts
        if obs.drafted > 0 and not catch_up:  # a catch-up also re-reads skipped tokens: not a per-token cost
            self._draft.append(obs.draft_s / obs.drafted)
            self._draft_memo = None
        # evidence fades per iteration, drafted or not: after a long stretch without speculation
        # the next probe's outcome decides, not what the text was like long ago
        decay = 0.5 ** (1.0 / self.get("accept_halflife"))
        self._succ = [x * decay for x in self._succ]
        self._fail = [x * decay for x in self._fail]
        prior = self.get("accept_prior")  # a carried prior is old evidence too: it fades back the same way
        self._prior0 = prior + (self._prior0 - prior) * decay
        if obs.drafted > 0:
            self._ever_drafted = True
            self._look(obs.drafted, obs.accepted)
        # a shadow draft: asked for and not made means the engine does not shadow (probe instead)
        if obs.shadowed > 0:
            self._shadow_ok, self._shadow_pending, self._since_shadow = True, 1, 0
            # a request's first shadow draft also reads the prompt (a long chat context can cost
            # many plain steps): it does not price the others
            if not self._shadow_first:
                self._shadow_costs.append(obs.draft_s)
            self._shadow_first = False
        elif asked_shadow and obs.k == 0 and not self._shadow_pending:
            self._shadow_ok = False
        else:
            self._since_shadow += 1
            if self._shadow_pending:
                self._shadow_pending += 1
        if self._look_first and obs.shadow_checked > 0 and obs.shadow_matched == 0:
            # the new text's first look disagrees with what was carried over: what was carried
            # counts one observation per position, no more, and this text's evidence decides
            self._forget_text()
        if obs.shadow_checked > 0 or obs.drafted > 0:
            self._look_first = False  # this text has been looked at
        if obs.shadow_checked > 0:  # its result: the same evidence as a verified draft's
            self._look(obs.shadow_checked, min(obs.shadow_matched, obs.shadow_checked))
            self._shadow_pending = 0
        elif self._shadow_pending > self.get("shadow_len") + 1:
            self._shadow_pending = 0  # never resolved (cannot happen in the engine): do not wait for ever
        was_probe = self._probing
        self._probing = False
        if self._maintaining:
            self._maintaining = False
            self._since_refresh = 0
            self._refreshes += 1
        else:
            self._since_refresh += 1
        if obs.drafted == 0 and obs.k == 0:
            self._off_for += 1
        elif obs.drafted > 0:
            self._off_for = 0
        if self._quiet > 0 and obs.k == 0 and obs.drafted == 0 and obs.shadowed == 0 and obs.shadow_checked == 0 \
                and not asked_shadow and not was_probe:
            # speculation off, a plain step, nothing new but one more c(1) sample and fading
            # evidence: the decision stands (re-deciding every plain step cost 0.2 ms, 1.4% of
            # the demo's plain decoding on extraction)
            self._quiet -= 1
        else:
            self._decide()
        if was_probe:
            c1 = self._curve().cost(1)
            if c1 is not None:  # the drafter's catch-up included: what probing really costs
                self._probe_extra = max(obs.iter_s - c1, 0.0)
            if self._decision.k == 0:  # the probe did not turn speculation on: wait longer
                self._probe_every = min(self._probe_every * 2, self.get("probe_max"))
            else:
                self._probe_every = self.get("probe_after")

    # -- reporting ---------------------------------------------------------------------------
    def utility(self) -> float | None:
        if self._pred is None:  # just the chosen K's, not the whole table
            k = self._decision.k
            if k == 0:  # 1 by definition, once c(1) is known (no curve needed)
                return 1.0 if self._is_fresh(1) and _median(self._costs[1]) > 0 else None
            return self.predict(k)
        return self._pred.get(self._decision.k) if self._pred else None

    def _reported(self) -> dict[int, float]:
        """The predicted U of every K that is reported: the median of each point's samples and the
        plain acceptance estimate (:meth:`predict`), where decisions take the lower third and,
        while probing, an optimistic acceptance."""
        if self._pred is None:
            self._pred = {k: u for k, u in self._utilities(self.acceptance_by_position(), self._curve(_median),
                                                             self.get("k_max")).items() if u is not None}
        return self._pred

    def measured_utilities(self) -> dict[int, float]:
        """Predicted U of every K whose verify cost was measured in this run."""
        fresh = self._fresh_costs()
        return {k: u for k, u in self._reported().items() if k > 0 and (k + 1) in fresh and (k + 1) not in self._imported}

    def t_base(self) -> float | None:
        return self.cost(1)

    def backoff(self) -> int | None:
        if self._decision.k == 0 and self._decision.phase == "set":
            if self._shadowing():
                return max(self._shadow_interval(self._curve()) - self._since_shadow, 0)
            return max(self._probe_interval(self._curve(), PROBE_K_MAX) - self._off_for, 0)
        return None

    def _state_extra(self) -> dict:
        return {
            "acceptance": round(self.acceptance(), 4),
            "acceptance_by_position": [round(p, 4) for p in self.acceptance_by_position()],
            "draft_per_token": self._draft_per_token(),
            "costs": {str(n): c for n, c in sorted(self._fresh_costs().items())},
            "unique_experts": {str(n): round(u, 3) for n, u in sorted(self._uniq.items())},
            "predicted": {str(k): round(u, 4) for k, u in sorted(self._reported().items())},
            "cached_points": sorted(self._imported),
        }
