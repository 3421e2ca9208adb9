"""Cascade: utility-driven choice of the speculation length K (arXiv 2506.20675, DESIGN section 3).

Speculation utility of K::

    U(K) = ETR(K) / (t_iter(K) / t_base)

ETR = mean tokens emitted per iteration (accepted + 1), t_iter = mean wall time of a whole
iteration with K, t_base = mean time of a K = 0 iteration. U is the predicted speedup over plain
decoding, measured, not modelled.

A request moves through three phases:

* ``base``: a few K = 0 iterations measure t_base (at the start, and again when the last K = 0
  sample is older than ``base_refresh`` iterations). Every K = 0 iteration anywhere refreshes t_base.
* ``test``: up to ``max_trials`` trials of ``test_iters`` iterations each. The first trial uses the
  best non-zero K seen in this request (``k_start`` at first). If K = 1 already gives U below
  ``min_utility`` the test ends at K = 0. Otherwise hill-climb: keep moving in the direction that
  raised U, reverse once if the first move lowered it (the step after the reversal is compared
  with the first trial), stop when consecutive U are within ``tolerance``, past a local maximum,
  at K = 0 or at ``k_max``. The best trial wins; if its U is
  below ``min_utility`` the winner is K = 0.
* ``set``: ``set_iters`` iterations at the winner. Each consecutive landing on K = 0 multiplies the
  set phase by ``backoff`` (exponential back-off, capped at ``set_max``); a non-zero winner resets it.

The first iteration after a K = 0 stretch also pays for the drafter catching up on the tokens it
skipped; it runs but is not counted in a trial, so a one-off cost does not read as a slow K.

With ``memory`` on (the default), a new request on the same policy object (the next prompt of a
chat or a benchmark) keeps what the last one learned: t_base and the utility measured per K (each
counts for ``forget_after`` iterations), and resumes an interrupted set phase at K > 0 instead of
re-measuring and re-testing from scratch. A back-off is carried over for at most ``set_iters``
iterations and its doubling starts again (a hard request says little about the next one, and one
noisy test would otherwise keep a chat from speculating for hundreds of iterations).
``memory=false`` restarts every request afresh, as the paper describes.

Iterations the engine clamped to a shorter K (end of the token budget, the context) count as time
passing, not as measurements of the decided K; lowering ``k_max`` below the running K moves the
trial or set phase to the new maximum.
"""

from __future__ import annotations

from collections import deque

from cascade_tui.policy.base import Decision, Observation, Param, Policy, PolicyError
from cascade_tui.policy.static import MAX_K


class CascadePolicy(Policy):
    name = "cascade"
    summary = "the paper's utility-driven test/set phases: tests a few K, runs the best, backs off when U < 1"
    PARAMS = (
        Param("base_iters", int, 3, 1, 64, "K=0 iterations that measure t_base at start and at each refresh"),
        Param("base_refresh", int, 100, 1, 1_000_000, "refresh t_base when the last K=0 sample is this many iterations old"),
        Param("base_window", int, 8, 1, 1024, "most recent K=0 iteration times averaged into t_base"),
        Param("test_iters", int, 4, 1, 256, "iterations per test trial"),
        Param("max_trials", int, 4, 1, 64, "trials per test phase"),
        Param("set_iters", int, 16, 1, 1_000_000, "iterations of a set phase at a non-zero K"),
        Param("backoff", float, 2.0, 1.0, 64.0, "set-phase growth factor for each consecutive landing on K=0"),
        Param("set_max", int, 4096, 1, 10_000_000, "longest set phase"),
        Param("tolerance", float, 0.10, 0.0, 10.0, "stop testing when consecutive U differ by at most this fraction"),
        Param("k_start", int, 1, 1, MAX_K, "first K tried in a request"),
        Param("k_max", int, 8, 1, MAX_K, "largest K tried"),
        Param("min_utility", float, 1.0, 0.0, 100.0, "speculate only where the best U reaches this"),
        Param("memory", bool, True, None, None, "carry t_base and measured U over to the next request"),
        Param("forget_after", int, 512, 1, 1_000_000,
              "iterations after which a measured U no longer decides where a test starts"),
    )

    def __init__(self, **overrides):
        super().__init__(**overrides)
        self._forget()

    def _validate_all(self) -> None:
        if self.get("k_start") > self.get("k_max"):
            raise PolicyError(f"k_start ({self.get('k_start')}) must not exceed k_max ({self.get('k_max')})")
        if self.get("set_iters") > self.get("set_max"):
            raise PolicyError(f"set_iters ({self.get('set_iters')}) must not exceed set_max ({self.get('set_max')})")

    def _on_param_change(self, key: str) -> None:
        if key == "base_window":
            self._base = deque(self._base, maxlen=self.get("base_window"))
        if key == "k_max" and self._k > self.get("k_max"):
            # the running trial or set phase is for a K no longer allowed: carry on at the new
            # maximum, measured afresh (nothing of it is credited to the old K)
            self._k = self.get("k_max")
            self._window = []
            self._reason = f"k_max lowered to {self._k}: K={self._k}"

    # -- state -------------------------------------------------------------------------------
    def reset(self) -> None:
        """A new request. With ``memory`` and something learned, carry it over (module docstring)."""
        if not self.get("memory") or self._tb() is None or not self._last_test:
            self._forget()
            return
        self._window = []
        self._warmup = self._k > 0  # the drafter starts the request cold: don't count that step
        # a back-off (a K = 0 set phase, doubled per landing) is carried into a new request for at
        # most set_iters iterations, and the doubling starts over: the last request's hard text
        # says little about this one's, and one noisy test would otherwise keep a chat from
        # speculating for hundreds of iterations
        self._zero_landings = 0
        if self._phase != "set" or self._left <= 0:
            self._after_set()
        elif self._k == 0:
            self._left = min(self._left, self.get("set_iters"))
            self._reason = f"new request: speculation stays off for {self._left} more iterations, then a test"
        else:
            self._reason = f"new request: resuming the set phase at K={self._k} ({self._left} iterations left)"

    def _forget(self) -> None:
        self._base: deque[float] = deque(maxlen=self.get("base_window"))
        self._since_base = 0  # iterations since the last K=0 sample
        self._seen: dict[int, tuple[float, int]] = {}  # K -> (latest measured U, iteration it was measured)
        self._n = 0  # iterations observed
        self._zero_landings = 0
        self._phase = "base"
        self._k = 0
        self._left = self.get("base_iters")  # iterations left in a base or set phase
        self._window: list[Observation] = []  # counted observations of the running trial / set
        self._trials: list[tuple[int, float]] = []
        self._dir = 1
        self._reversed = False
        self._warmup = False  # next iteration resumes drafting after K=0: run it, don't count it
        self._why = ""  # how the last trial compared with the one before (for the reason text)
        self._set_len = 0
        self._last_test: list[tuple[int, float]] = []
        self._reason = f"measuring t_base: {self._left} iterations at K=0"

    def _tb(self) -> float | None:
        return sum(self._base) / len(self._base) if self._base else None

    def _u(self, window: list[Observation]) -> float | None:
        tb = self._tb()
        if not window or tb is None or tb <= 0:
            return None
        etr = sum(o.emitted for o in window) / len(window)
        t = sum(o.iter_s for o in window) / len(window)
        return etr / (t / tb) if t > 0 else None

    def utility(self) -> float | None:
        if self._k == 0:
            return 1.0 if self._tb() is not None else None
        u = self._u(self._window)
        if u is None and self._phase == "set" and self._k in self._seen:
            u = self._seen[self._k][0]
        return u

    def measured_utilities(self) -> dict[int, float]:
        """The U measured per K that still counts (not older than ``forget_after``)."""
        horizon = self._n - self.get("forget_after")
        return {k: u for k, (u, at) in self._seen.items() if at >= horizon}

    def _measured(self, k: int, u: float) -> None:
        self._seen[k] = (u, self._n)

    def t_base(self) -> float | None:
        return self._tb()

    def backoff(self) -> int | None:
        return self._left if self._phase == "set" and self._k == 0 else None

    def _state_extra(self) -> dict:
        return {
            "set_len": self._set_len,
            "left": self._left,
            "zero_landings": self._zero_landings,
            "last_test": [{"k": k, "utility": u} for k, u in self._last_test],
            "best_k": self._best_k(),
        }

    def _best_k(self) -> int:
        fresh = {k: u for k, u in self.measured_utilities().items() if k <= self.get("k_max")}
        if not fresh:
            return self.get("k_start")
        return max(fresh, key=lambda k: (fresh[k], -k))

    # -- decisions ---------------------------------------------------------------------------
    def decide(self) -> Decision:
        return Decision(min(self._k, self.get("k_max")), self._phase, self._reason)

    def observe(self, obs: Observation) -> None:
        self._n += 1
        if obs.k == 0:
            self._base.append(obs.iter_s)
            self._since_base = 0
        else:
            self._since_base += 1
        # the engine ran a shorter draft than decided (end of the token budget, the context):
        # the iteration passes, but says nothing about the decided K
        clamped = obs.k != self.decide().k

        if self._phase == "base":
            self._left -= 1
            if self._left <= 0:
                self._start_test()
        elif self._phase == "test":
            if self._warmup:
                self._warmup = False
                return
            if clamped:
                return
            self._window.append(obs)
            if len(self._window) >= self.get("test_iters"):
                self._end_trial()
        else:  # set
            if self._warmup:
                self._warmup = False
            elif not clamped:
                self._window.append(obs)
            self._left -= 1
            if self._left <= 0:
                if self._k > 0:
                    u = self._u(self._window)
                    if u is not None:
                        self._measured(self._k, u)
                self._after_set()

    def _after_set(self) -> None:
        if self._since_base >= self.get("base_refresh") or self._tb() is None:
            self._phase, self._k, self._left = "base", 0, self.get("base_iters")
            self._window = []
            self._reason = (f"refreshing t_base: last K=0 sample {self._since_base} iterations ago, "
                            f"{self._left} iterations at K=0")
        else:
            self._start_test()

    def _start_test(self) -> None:
        self._phase = "test"
        self._trials = []
        self._dir = 1
        self._reversed = False
        k = min(self._best_k(), self.get("k_max"))
        self._begin_trial(k, f"testing K={k} ({'best K so far' if self._seen else 'k_start'})")

    def _begin_trial(self, k: int, reason: str) -> None:
        if self._k == 0 and k > 0:
            self._warmup = True
        self._k = k
        self._window = []
        self._reason = reason

    def _end_trial(self) -> None:
        u = self._u(self._window)
        if u is None:  # no t_base (cannot happen after a base phase); measure it first
            self._phase, self._k, self._left, self._window = "base", 0, self.get("base_iters"), []
            self._reason = f"no t_base yet: {self._left} iterations at K=0"
            return
        self._trials.append((self._k, u))
        self._measured(self._k, u)
        nxt = self._next_candidate()
        if nxt is None:
            self._choose()
        else:
            self._begin_trial(nxt, f"U(K={self._k})={u:.2f}{self._why}: testing K={nxt}")

    def _next_candidate(self) -> int | None:
        trials = self._trials
        k, u = trials[-1]
        if len(trials) >= self.get("max_trials"):
            return None
        tested = {t[0] for t in trials}
        self._why = ""
        if len(trials) == 1:
            if u < self.get("min_utility"):
                if k == 1:
                    return None  # K=1 already loses: speculation off
                self._dir = -1  # a long draft loses: look shorter
            else:
                self._dir = 1
            cand = k + self._dir
        else:
            # compare with the trial this one stepped from: after the reversal that is the first
            # trial (K0), not the one that went the other way (K0 + 1)
            pk, pu = trials[0] if self._reversed and len(trials) == 3 else trials[-2]
            if abs(u - pu) <= self.get("tolerance") * max(abs(pu), abs(u)):
                return None  # flat: more trials would not pay
            if u > pu:
                cand = k + self._dir  # keep climbing
                self._why = f" > U(K={pk})={pu:.2f}"
            elif len(trials) == 2 and not self._reversed:
                self._reversed = True  # the first step went downhill: try the other side
                self._dir = -self._dir
                cand = trials[0][0] + self._dir
                self._why = f" < U(K={pk})={pu:.2f}, reversing"
            else:
                return None  # past a local maximum
        if cand < 1 or cand > self.get("k_max") or cand in tested:
            return None
        return cand

    def _choose(self) -> None:
        best_k, best_u = max(self._trials, key=lambda t: (t[1], -t[0]))
        self._last_test = list(self._trials)
        if best_u < self.get("min_utility"):
            best_k = 0
        if best_k == 0:
            self._zero_landings += 1
            n = self.get("set_iters") * self.get("backoff") ** self._zero_landings
        else:
            self._zero_landings = 0
            n = self.get("set_iters")
        self._set_len = int(min(n, self.get("set_max")))
        self._phase, self._k, self._left, self._window = "set", best_k, self._set_len, []
        tried = ", ".join(f"U({k})={u:.2f}" for k, u in self._trials)
        if best_k == 0:
            bk, bu = max(self._trials, key=lambda t: (t[1], -t[0]))
            self._reason = (f"U(K={bk})={bu:.2f} < {self.get('min_utility'):g}: speculation off for "
                            f"{self._set_len} iterations (tested {tried})")
        else:
            self._reason = f"U(K={best_k})={best_u:.2f} is the best of {tried}: K={best_k} for {self._set_len} iterations"
