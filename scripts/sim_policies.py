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

Another pair (the cost pair: ``scripts/bench_cost_pairs.py`` writes its ``cycle-prompts.jsonl``):
``--model T.gguf --draft D.gguf --prompts-file P.jsonl`` replays its texts, with its verify costs
and drafter speed measured once (the fastest of 7 evals per point) and cached with the runs.
``--utility learned`` also prints the policy's predicted U per K (after each request, mean)
against the speedup each static:K given reached in the replay, and R^2:

    python scripts/sim_policies.py static:4 static:16 learned --model /tmp/cost-pair/cost-target-cpu-s0.gguf \
        --draft /tmp/cost-pair/cost-draft-cpu-a0.95-s0.gguf --prompts-file cycle-prompts.jsonl --prompts 8 --utility learned
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


def agreement_runs(n_tokens: int, cache: Path, n_prompts: int = 4, pair: dict | None = None) -> tuple[dict, dict | None]:
    """({workload: [agreement run per position, per prompt]}, the pair's measured costs or None), cached
    in ``cache``. ``pair``: another
    model pair than the demo's, ``{"model": PATH, "draft": PATH, "prompts": {workload: [text]}}``
    (its costs are measured too, under the key ``"costs"``: see :func:`measure_costs`)."""
    key = None if pair is None else {"model": str(pair["model"]), "draft": str(pair["draft"]),
                                     "prompts": pair["prompts"]}
    if cache.is_file():
        data = json.loads(cache.read_text())
        if data.get("tokens") == n_tokens and data.get("prompts", 4) >= n_prompts and data.get("pair") == key:
            return {w: runs[:n_prompts] for w, runs in data["runs"].items()}, data.get("costs")
    from cascade_tui.runtime import ModelOptions, load_models
    from cascade_tui.workloads.builtin import CODE, EXTRACTION, MATH

    if pair is None:
        models = load_models(ModelOptions(threads=1))
        sets = dict(zip(WORKLOADS, (CODE, EXTRACTION, MATH)))
    else:
        models = load_models(ModelOptions(model=str(pair["model"]), draft=str(pair["draft"]), threads=1, routing=False))
        sets = pair["prompts"]
    target, drafter = models.target, models.drafter
    rng = np.random.default_rng(0)
    runs: dict[str, list[list[int]]] = {}
    for w, prompts in sets.items():
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
    costs = None if pair is None else measure_costs(target, drafter)
    models.close()
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_text(json.dumps({"tokens": n_tokens, "prompts": n_prompts, "runs": runs, "pair": key,
                                 "costs": costs}))
    return runs, costs


def measure_costs(target, drafter, ns=(1, 2, 3, 5, 9, 13, 17), reps: int = 7) -> dict:
    """A pair's verify cost per verified-token count (ms, the fastest of ``reps`` evals after
    64 tokens of context: this VM's noise is one-sided) and its drafter's ms per drafted token."""
    import time

    rng = np.random.default_rng(1)
    ctx = [int(t) for t in rng.integers(10, 200, 64)]
    out = {}
    for n in ns:
        best = math.inf
        for _ in range(reps):
            target.truncate(0)
            target.eval(ctx)
            t0 = time.perf_counter()
            target.eval(ctx[:n])
            best = min(best, time.perf_counter() - t0)
        out[str(n)] = round(1e3 * best, 3)
    best = math.inf
    for _ in range(reps):
        drafter.reset()
        drafter.propose(ctx, 1, 0.0, rng)  # reads the context
        t0 = time.perf_counter()
        drafter.propose(ctx, 16, 0.0, rng)
        best = min(best, time.perf_counter() - t0)
    print(f"measured costs (ms): {out}; draft {1e3 * best / 16:.3f} ms a token", file=sys.stderr)
    return {"verify_ms": out, "draft_ms_per_token": round(1e3 * best / 16, 4)}


def cost_of(costs: dict[int, float]):
    pts = sorted(costs.items())

    def cost(n: int) -> float:
        for (n0, c0), (n1, c1) in zip(pts, pts[1:]):
            if n <= n1:
                return 1e-3 * (c0 + (c1 - c0) * (n - n0) / (n1 - n0))
        slope = (pts[-1][1] - pts[-2][1]) / (pts[-1][0] - pts[-2][0])
        return 1e-3 * (pts[-1][1] + slope * (n - pts[-1][0]))
    return cost


def draft_cost(k: int, missed: int, per_token_ms: float = 0.35) -> float:
    """A draft of k tokens after the drafter missed ``missed`` (it re-reads at most 32, the
    engine's ``draft_catch_up``): measured in the engine on the grown demo, 2026-12-02 (a 4-token
    shadow draft 20 tokens after the last one: 4.3 ms against 0.35 ms a drafted token)."""
    return 0.0 if k <= 0 else 1e-3 * (per_token_ms * (k + 0.43 * min(missed, 32)) + 0.2)


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


def simulate(policy, run: list[int], cost, rng, machine: Machine | None = None, draft_ms: float = 0.35) -> float:
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
        ds = draft_cost(k, missed, draft_ms) + draft_cost(s, missed, draft_ms)
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


def _pair(a) -> dict | None:
    if not (a.model or a.draft or a.prompts_file):
        return None
    if not (a.model and a.draft and a.prompts_file):
        sys.exit("--model, --draft and --prompts-file go together")
    prompts: dict[str, list[str]] = {}
    try:
        for line in Path(a.prompts_file).read_text().splitlines():
            if line.strip():
                row = json.loads(line)
                prompts.setdefault(row.get("workload", "custom"), []).append(row["prompt"])
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        sys.exit(f"--prompts-file {a.prompts_file}: not a JSONL file of {{\"prompt\": ...}} lines ({e})")
    return {"model": Path(a.model).resolve(), "draft": Path(a.draft).resolve(), "prompts": prompts}


def utility_check(snaps: dict, times: dict, w: str) -> list[tuple[int, float, float]]:
    """(K, mean predicted U, realized static:K speedup) for each static:K simulated."""
    out = []
    for spec, t in times.items():
        if spec.startswith("static:") and spec.split(":")[1].isdigit():
            k = int(spec.split(":")[1])
            vals = [u for snap in snaps.get(w, []) if (u := snap.get(k)) is not None]
            if vals:
                out.append((k, float(np.mean(vals)), times["off"] / t))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("policies", nargs="+", help="policy specs; parameters as NAME@key=value+key=value")
    ap.add_argument("--tokens", type=int, default=128)
    ap.add_argument("--prompts", type=int, default=4, help="first N prompts per workload (built-in math and extraction have 8)")
    ap.add_argument("--seeds", type=int, default=12)
    ap.add_argument("--first-seed", type=int, default=0, help="seeds --first-seed .. + --seeds - 1")
    ap.add_argument("--costs", default=None, help="JSON {verified tokens: ms} (default: the grown demo's, or "
                                                    "what was measured on --model)")
    ap.add_argument("--draft-ms", type=float, default=None, help="drafter ms a token (default: 0.35, or measured)")
    ap.add_argument("--model", help="another pair's target GGUF (with --draft and --prompts-file)")
    ap.add_argument("--draft", help="that pair's drafter GGUF")
    ap.add_argument("--prompts-file", help="JSONL of {prompt, workload} for that pair (e.g. the cost pair's "
                                           "cycle-prompts.jsonl)")
    ap.add_argument("--cache", type=Path, default=None, help="agreement runs (and a pair's costs) cached here")
    ap.add_argument("--drift", default="1,1", metavar="SLOW,DWELL",
                    help="a machine that is SLOW times slower in busy stretches, each stretch (busy or "
                         "not) DWELL seconds on average (default 1,1: steady)")
    ap.add_argument("--utility", metavar="POLICY",
                    help="also print POLICY's mean predicted U per K (after each request) against the "
                         "speedup each static:K given reached, and R^2")
    a = ap.parse_args()
    pair = _pair(a)
    cache = a.cache or Path("/tmp/cascade-sim-agreement.json" if pair is None else
                            f"/tmp/cascade-sim-{Path(a.draft).stem}.json")
    runs, measured = agreement_runs(a.tokens, cache, a.prompts, pair)
    costs = json.loads(a.costs) if a.costs else (measured or {}).get("verify_ms") or COSTS
    cost = cost_of({int(k): float(v) for k, v in costs.items()})
    draft_ms = a.draft_ms if a.draft_ms is not None else (measured or {}).get("draft_ms_per_token", 0.35)
    slow, dwell = (float(x) for x in a.drift.split(","))
    specs = list(a.policies) + ([a.utility] if a.utility and a.utility not in a.policies else [])
    print(f"{'workload':<11}" + "".join(f"{p:>{max(10, len(p) + 2)}}" for p in a.policies))
    points = []
    for w in runs:
        times, snaps = {}, {}
        for spec in ["off", *specs]:
            ts = []
            for seed in range(a.first_seed, a.first_seed + a.seeds):
                rng = np.random.default_rng(seed)
                pol = policy_of(spec)
                machine = Machine(slow, dwell, np.random.default_rng(10_000 + seed))
                t = 0.0
                for run in runs[w]:
                    pol.reset()
                    t += simulate(pol, run, cost, rng, machine, draft_ms)
                    if spec == a.utility:
                        snaps.setdefault(w, []).append({k: pol.predict(k) for k in range(1, 17)})
                ts.append(t)
            times[spec] = float(np.mean(ts))
        print(f"{w:<11}" + "".join(f"{times['off'] / times[p]:>{max(10, len(p) + 2)}.3f}x"[:-1] + "x"
                                    for p in a.policies))
        if a.utility:
            pts = utility_check(snaps, times, w)
            points += pts
            print("  " + ", ".join(f"K={k} {u:.2f}/{r:.2f}" for k, u, r in pts))
    if a.utility and points:
        from cascade_tui.bench.runner import r_squared

        r2 = r_squared([u for _, u, _ in points], [r for _, _, r in points])
        print(f"{a.utility} predicted / realized over {len(points)} points: R^2 "
              + (f"{r2:.3f}" if r2 is not None else "- (too few points or no spread)"))


if __name__ == "__main__":
    main()
