"""Policies compared on the demo's real text without the machine's noise.

`cascade-tui bench` on this 2-core VM moves 20-30% from one 128-token request to the next (a
request that drafted nothing measured 0.80x of `off`, one with one or two drafting
iterations 1.20x), so a 2-3% change of policy
cannot be seen in it. This script measures what a policy sees on the demo pair once, and replays
it exactly:

1. the target's greedy answer (N tokens) to each built-in prompt (4 per workload), and at every
   position of it the drafter's agreement run: how many of its greedy tokens from there match
   the answer (real llama.cpp, the grown demo target and the demo drafter; cached in --cache);
2. then each policy is driven through the engine's loop over those answers: a draft of K at
   position i has min(run[i], K) accepted; a shadow draft resolves where the engine would; each
   verify of n tokens costs the grown demo's measured c(n) (``--costs``, ms; noise: log-normal
   sigma 0.12 and a 1.6x spike on 5% of iterations, as on this VM), a draft 0.35 ms a token
   + 0.15 ms a token the drafter catches up (at most 32) + 0.2 ms a call. ``--drift SLOW,DWELL`` adds a
   machine that is SLOW times slower during busy stretches (every cost, the drafter's too), each
   stretch DWELL seconds on average: what a neighbour's job does to this VM.

Each policy runs the 4 prompts of a workload in turn (one policy object, as `bench` does), for
--seeds noise seeds; printed: tokens/s vs `off` per workload (ratio of total times).

    python scripts/sim_policies.py learned learned@shadow=false cascade static:4
    python scripts/sim_policies.py learned@accept_halflife=16+optimism=0.5   # parameters: @k=v+k=v
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import cascade_tui.runtime  # noqa: F401  (llama.cpp before numpy)
import numpy as np

from cascade_tui.policy import Observation, make_policy

# verify + bookkeeping ms per verified-token count, grown demo on this VM (2026-12-01)
COSTS = {1: 12.5, 2: 21.9, 3: 27.0, 4: 32.0, 5: 37.5, 12: 90.0, 16: 104.0}
WORKLOADS = ("code", "extraction", "math")


def agreement_runs(n_tokens: int, cache: Path, n_prompts: int = 4) -> dict:
    if cache.is_file():
        data = json.loads(cache.read_text())
        if data.get("tokens") == n_tokens and data.get("prompts", 4) >= n_prompts:
            return {w: runs[:n_prompts] for w, runs in data["runs"].items()}
    from cascade_tui.runtime import ModelOptions, load_models
    from cascade_tui.workloads.builtin import CODE, EXTRACTION, MATH

    models = load_models(ModelOptions(threads=1))
    target, drafter = models.target, models.drafter
    rng = np.random.default_rng(0)
    runs: dict[str, list[list[int]]] = {}
    for w, prompts in zip(WORKLOADS, (CODE, EXTRACTION, MATH)):
        runs[w] = []
        for p in prompts[:n_prompts]:
            ids = target.tokenize(p)
            target.truncate(0)
            nxt = int(np.argmax(target.eval(ids).logits[-1]))
            out: list[int] = []
            while len(out) < n_tokens:
                out.append(nxt)
                nxt = int(np.argmax(target.eval([nxt]).logits[-1]))
            drafter.reset()
            run = []
            for i in range(n_tokens):
                d = drafter.propose(ids + out[:i], 16, 0.0, rng).tokens
                m = 0
                while m < len(d) and i + m < n_tokens and d[m] == out[i + m]:
                    m += 1
                run.append(m)
            runs[w].append(run)
            print(f"{w} prompt {len(runs[w])}: drafter's first token agrees at "
                  f"{np.mean([r > 0 for r in run]):.0%} of positions", file=sys.stderr)
    models.close()
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_text(json.dumps({"tokens": n_tokens, "prompts": n_prompts, "runs": runs}))
    return runs


def cost_of(costs: dict[int, float]):
    pts = sorted(costs.items())

    def cost(n: int) -> float:
        for (n0, c0), (n1, c1) in zip(pts, pts[1:]):
            if n <= n1:
                return 1e-3 * (c0 + (c1 - c0) * (n - n0) / (n1 - n0))
        slope = (pts[-1][1] - pts[-2][1]) / (pts[-1][0] - pts[-2][0])
        return 1e-3 * (pts[-1][1] + slope * (n - pts[-1][0]))
    return cost


def draft_cost(k: int, missed: int) -> float:
    """A draft of k tokens after the drafter missed ``missed`` (it re-reads at most 32, the
    engine's ``draft_catch_up``): measured in the engine on the grown demo, 2026-12-02 (a 4-token
    shadow draft 20 tokens after the last one: 4.3 ms against 0.35 ms a drafted token)."""
    return 0.0 if k <= 0 else 1e-3 * (0.35 * k + 0.15 * min(missed, 32) + 0.2)


class Machine:
    """How slow the machine is at each moment: 1, or ``slow`` during a busy stretch; stretches
    of each last an exponential time of mean ``dwell`` seconds (``slow`` 1: a steady machine)."""

    def __init__(self, slow: float, dwell: float, rng):
        self.slow, self.dwell, self.rng = slow, dwell, rng
        self.t, self.busy = 0.0, False
        self.switch = rng.exponential(dwell) if slow != 1.0 else math.inf

    def factor(self) -> float:
        return self.slow if self.busy else 1.0

    def advance(self, dt: float) -> None:
        self.t += dt
        while self.t > self.switch:
            self.busy = not self.busy
            self.switch += self.rng.exponential(self.dwell)


def simulate(policy, run: list[int], cost, rng, machine: Machine | None = None) -> float:
    """Decode time of one answer under ``policy`` (the engine's loop, shadow drafts included)."""
    n, pos, total, missed, pending = len(run), 0, 0.0, 0, None
    while pos < n:
        d = policy.decide()
        k = max(0, min(d.k, n - pos - 1))
        s = 0
        if k == 0 and d.shadow and pending is None:
            s = min(d.shadow, n - pos)
            pending = (pos, s, min(run[pos], s))
        acc = min(run[pos], k)
        emitted = acc + 1
        c = cost(k + 1) * math.exp(rng.normal(0, 0.12)) * (1.6 if rng.random() < 0.05 else 1.0)
        ds = draft_cost(k, missed) + draft_cost(s, missed)
        if machine is not None:
            f = machine.factor()
            c, ds = c * f, ds * f
            machine.advance(c + ds)
        if k or s:
            missed = 0
        checked = matched = 0
        if pending is not None:
            start, length, m = pending
            end = start + (m if m < length else length - 1)  # the token whose comparison resolves it
            if pos <= end < pos + emitted:
                checked, matched, pending = (m + 1 if m < length else length), m, None
        policy.observe(Observation(k=k, drafted=k, accepted=acc, draft_s=ds, verify_s=c, iter_s=c + ds,
                                   shadowed=s, shadow_checked=checked, shadow_matched=matched))
        missed += emitted
        pos += emitted
        total += c + ds
    return total


def policy_of(spec: str):
    name, _, rest = spec.partition("@")
    return make_policy(name, dict(kv.split("=", 1) for kv in rest.split("+")) if rest else None)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("policies", nargs="+", help="policy specs; parameters as NAME@key=value+key=value")
    ap.add_argument("--tokens", type=int, default=128)
    ap.add_argument("--prompts", type=int, default=4, help="first N built-in prompts per workload (math and extraction have 8)")
    ap.add_argument("--seeds", type=int, default=12)
    ap.add_argument("--first-seed", type=int, default=0, help="seeds --first-seed .. + --seeds - 1")
    ap.add_argument("--costs", default=json.dumps(COSTS), help="JSON {verified tokens: ms}")
    ap.add_argument("--cache", type=Path, default=Path("/tmp/cascade-sim-agreement.json"))
    ap.add_argument("--drift", default="1,1", metavar="SLOW,DWELL",
                    help="a machine that is SLOW times slower in busy stretches, each stretch (busy or "
                         "not) DWELL seconds on average (default 1,1: steady)")
    a = ap.parse_args()
    runs = agreement_runs(a.tokens, a.cache, a.prompts)
    cost = cost_of({int(k): float(v) for k, v in json.loads(a.costs).items()})
    slow, dwell = (float(x) for x in a.drift.split(","))
    print(f"{'workload':<11}" + "".join(f"{p:>{max(10, len(p) + 2)}}" for p in a.policies))
    for w in WORKLOADS:
        times = {}
        for spec in ["off", *a.policies]:
            ts = []
            for seed in range(a.first_seed, a.first_seed + a.seeds):
                rng = np.random.default_rng(seed)
                pol = policy_of(spec)
                machine = Machine(slow, dwell, np.random.default_rng(10_000 + seed))
                t = 0.0
                for run in runs[w]:
                    pol.reset()
                    t += simulate(pol, run, cost, rng, machine)
                ts.append(t)
            times[spec] = float(np.mean(ts))
        print(f"{w:<11}" + "".join(f"{times['off'] / times[p]:>{max(10, len(p) + 2)}.3f}x"[:-1] + "x"
                                    for p in a.policies))


if __name__ == "__main__":
    main()
