"""``run_bench``: every policy on every prompt, greedy, interleaved per prompt; and its report.

For each prompt the policies run back to back: ``off`` first, then the others in the order given,
and on every other prompt the same in reverse (ABBA), so slow drift of the machine (thermal
state, other processes) hits all policies alike instead of whichever policy happened to run
last or right after ``off``. All runs are greedy, so every policy must produce exactly
the tokens of ``off``; each run records whether it did (``identical_to_off``).

Throughput is generated tokens / decode time (the sum of the engine's iteration times and the
policy's own time; prompt
prefill is excluded, as in ``run --json``). Aggregates are ratios of sums over prompts, never
means of per-prompt ratios, so a long prompt weighs by its tokens.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

from cascade_tui.policy import Policy, PolicyError, make_policy
from cascade_tui.stats import DecodeRates, mean_k_of


class BenchError(Exception):
    """Bad benchmark input (policy list, parameters, output path). One line for the user."""


# -- policies ------------------------------------------------------------------------------------
def parse_policy_list(spec: str | Sequence[str]) -> list[str]:
    """``"off,static:1,cascade"`` -> labels, validated, deduplicated, ``off`` first (added if
    missing: it is the baseline every other figure is relative to)."""
    items = spec.split(",") if isinstance(spec, str) else list(spec)
    labels: list[str] = []
    for raw in items:
        s = raw.strip()
        if not s:
            raise BenchError(f"empty policy name in {spec!r}")
        try:
            label = make_policy(s).label
        except PolicyError as e:
            msg = str(e)
            raise BenchError(msg if s in msg else f"--policies {s}: {msg}") from None
        if label not in labels:
            labels.append(label)
    if "off" in labels:
        labels.remove("off")
    return ["off", *labels]


def make_policies(labels: Sequence[str], set_params: Mapping[str, Any] | None = None) -> list[Policy]:
    """One fresh policy per label. Each ``--set KEY=VALUE`` goes to every policy that has ``KEY``;
    a key that no listed policy has, or a bad value, is a BenchError."""
    set_params = dict(set_params or {})
    if "k" in set_params:
        raise BenchError("--set k=... is not used by bench: list the draft lengths as static:K in --policies")
    used: set[str] = set()
    out = []
    for label in labels:
        try:
            probe = make_policy(label)
            mine = {k: v for k, v in set_params.items() if k in probe.spec}
            used.update(mine)
            out.append(make_policy(label, mine))
        except PolicyError as e:
            raise BenchError(f"{label}: {e}") from None
    unused = sorted(set(set_params) - used)
    if unused:
        raise BenchError(f"no policy in {', '.join(labels)} has the parameter {unused[0]!r}")
    return out


# -- results ------------------------------------------------------------------------------------
@dataclass
class RunResult:
    """One prompt under one policy."""

    workload: str
    prompt_index: int
    policy: str
    generated_tokens: int
    decode_s: float
    prefill_s: float
    iterations: int
    drafted: int
    accepted: int
    k_hist: Counter
    unique_sum: float
    unique_n: int
    stop_reason: str
    tokens: list[int] = field(repr=False, default_factory=list)
    identical_to_off: bool | None = None
    draft_prefill_s: float = 0.0  # drafter reading the prompt before the request (not in decode_s)
    capture_s: float = 0.0  # routing capture inside the verifies (not in decode_s)
    prompt: str = field(repr=False, default="")
    round_no: int = 0  # which pass over the schedule (--rounds), from 0

    @property
    def tokens_per_s(self) -> float:
        return self.generated_tokens / self.decode_s if self.decode_s > 0 else 0.0

    def to_dict(self) -> dict:
        return {
            "workload": self.workload,
            "prompt_index": self.prompt_index,
            "policy": self.policy,
            "generated_tokens": self.generated_tokens,
            "decode_s": round(self.decode_s, 6),
            "tokens_per_s": round(self.tokens_per_s, 3),
            "prefill_s": round(self.prefill_s, 6),
            "draft_prefill_s": round(self.draft_prefill_s, 6),
            "iterations": self.iterations,
            "acceptance_rate": self.accepted / self.drafted if self.drafted else None,
            "mean_k": mean_k_of(self.k_hist),
            "stop_reason": self.stop_reason,
            "identical_to_off": self.identical_to_off,
            "routing_capture_s": round(self.capture_s, 6),
            "round": self.round_no,
        }


def modal_k(hist: Mapping[int, int]) -> int | None:
    """Most frequent K (the larger one on a tie), None for an empty histogram."""
    return max(hist, key=lambda k: (hist[k], k)) if hist else None


@dataclass
class Aggregate(DecodeRates):
    """One workload under one policy, summed over its prompts."""

    workload: str
    policy: str
    prompts: int
    generated_tokens: int
    decode_s: float
    iterations: int
    drafted: int
    accepted: int
    k_hist: Counter
    mean_unique_experts: float | None
    speedup_vs_off: float | None
    identical_to_off: bool | None
    draft_prefill_s: float = 0.0
    capture_s: float = 0.0

    @property
    def capture_share(self) -> float | None:
        """Routing capture time as a share of decode time (kept out of decode time)."""
        return self.capture_s / self.decode_s if self.decode_s > 0 else None

    def to_dict(self) -> dict:
        return {
            "workload": self.workload,
            "policy": self.policy,
            "tokens_per_s": round(self.tokens_per_s, 3),
            "speedup_vs_off": _round(self.speedup_vs_off),
            "acceptance_rate": _round(self.acceptance_rate),
            "mean_k": round(self.mean_k, 4),
            "mean_unique_experts": _round(self.mean_unique_experts),
            "generated_tokens": self.generated_tokens,
            "identical_to_off": self.identical_to_off,
            "prompts": self.prompts,
            "iterations": self.iterations,
            "decode_s": round(self.decode_s, 6),
            "draft_prefill_s": round(self.draft_prefill_s, 6),
            "routing_capture_s": round(self.capture_s, 6),
            "routing_capture_share": _round(self.capture_share),
            "k_histogram": {str(k): v for k, v in sorted(self.k_hist.items())},
        }


def _round(x: float | None, n: int = 4) -> float | None:
    return None if x is None else round(x, n)


@dataclass
class Recommendation:
    workload: str
    policy: str  # the fastest policy measured ("off" when nothing beat plain decoding)
    speedup_vs_off: float | None
    draft_k: int | None  # the K to give llama-server, None = no draft
    llama_server: str
    text: str

    def to_dict(self) -> dict:
        return {"workload": self.workload, "policy": self.policy, "speedup_vs_off": _round(self.speedup_vs_off),
                "draft_k": self.draft_k, "llama_server": self.llama_server, "text": self.text}


@dataclass
class BenchReport:
    model: str
    draft: str
    backend: str
    policies: list[str]
    workloads: dict[str, tuple[str, ...]]  # the prompts actually scheduled
    sources: dict[str, str]
    max_tokens: int
    runs: list[RunResult] = field(default_factory=list)
    skipped: list[dict] = field(default_factory=list)  # prompts the engine refused
    runs_planned: int = 0
    interrupted: bool = False
    meta: dict = field(default_factory=dict)  # machine, threads, ... (added by the caller)
    # (workload, adaptive policy) -> one {K: predicted utility} per prompt, from Policy.state()
    predictions: dict = field(default_factory=dict)

    @property
    def complete(self) -> bool:
        return not self.interrupted

    # -- aggregation ---------------------------------------------------------------------------
    def _runs(self, workload: str, policy: str, prompts: set[int] | None = None,
              round_no: int | None = None) -> list[RunResult]:
        return [r for r in self.runs if r.workload == workload and r.policy == policy
                and (prompts is None or r.prompt_index in prompts)
                and (round_no is None or r.round_no == round_no)]

    def _prompts_of(self, workload: str, policy: str, round_no: int | None = None) -> set[int]:
        return {r.prompt_index for r in self._runs(workload, policy, round_no=round_no)}

    def ratio(self, workload: str, a: str, b: str, round_no: int | None = None) -> float | None:
        """tokens/s of policy ``a`` / tokens/s of ``b`` over the prompts both completed (in one
        round only, with ``round_no``)."""
        common = self._prompts_of(workload, a, round_no) & self._prompts_of(workload, b, round_no)
        if not common:
            return None
        ta, tb = (_tps(self._runs(workload, p, common, round_no)) for p in (a, b))
        return ta / tb if tb > 0 else None

    @property
    def rounds(self) -> int:
        """Passes over the schedule that have runs (--rounds)."""
        return len({r.round_no for r in self.runs}) or 1

    def round_ratios(self, workload: str, a: str, b: str = "off") -> list[float]:
        """:meth:`ratio` within each round on its own (the spread says how far one round can be trusted)."""
        per = (self.ratio(workload, a, b, rnd) for rnd in sorted({r.round_no for r in self.runs}))
        return [x for x in per if x is not None]

    def per_prompt_speedups(self, workload: str, policy: str) -> list[float]:
        """tokens/s of ``policy`` / tokens/s of ``off`` for each prompt both completed."""
        out = []
        for i in sorted(self._prompts_of(workload, policy) & self._prompts_of(workload, "off")):
            a, b = (_tps(self._runs(workload, p, {i})) for p in (policy, "off"))
            if b > 0:
                out.append(a / b)
        return out

    def aggregate(self, workload: str, policy: str) -> Aggregate | None:
        runs = self._runs(workload, policy)
        if not runs:
            return None
        k_hist: Counter = Counter()
        for r in runs:
            k_hist.update(r.k_hist)
        uniq_n = sum(r.unique_n for r in runs)
        flags = [r.identical_to_off for r in runs if r.identical_to_off is not None]
        return Aggregate(
            workload=workload,
            policy=policy,
            prompts=len(runs),
            generated_tokens=sum(r.generated_tokens for r in runs),
            decode_s=sum(r.decode_s for r in runs),
            iterations=sum(r.iterations for r in runs),
            drafted=sum(r.drafted for r in runs),
            accepted=sum(r.accepted for r in runs),
            k_hist=k_hist,
            mean_unique_experts=sum(r.unique_sum for r in runs) / uniq_n if uniq_n else None,
            speedup_vs_off=self.ratio(workload, policy, "off"),
            identical_to_off=all(flags) if flags else None,
            draft_prefill_s=sum(r.draft_prefill_s for r in runs),
            capture_s=sum(r.capture_s for r in runs),
        )

    # -- what was (not) measured -----------------------------------------------------------------
    def empty_requests(self) -> list[RunResult]:
        """Requests that generated nothing (one per prompt: off's run when there is one)."""
        out, seen = [], set()
        for r in sorted(self.runs, key=lambda r: r.policy != "off"):
            key = (r.workload, r.prompt_index)
            if r.generated_tokens == 0 and key not in seen:
                seen.add(key)
                out.append(r)
        return sorted(out, key=lambda r: (list(self.workloads).index(r.workload), r.prompt_index))

    def empty_workloads(self) -> list[str]:
        """Workloads that ran but generated no token at all: nothing was measured there."""
        return [w for w in self.workloads
                if any(r.workload == w for r in self.runs)
                and not any(r.generated_tokens for r in self.runs if r.workload == w)]

    @property
    def measured_workloads(self) -> list[str]:
        empty = set(self.empty_workloads())
        return [w for w in self.workloads if w not in empty]

    @property
    def nothing_generated(self) -> bool:
        return bool(self.runs) and not any(r.generated_tokens for r in self.runs)

    @property
    def adaptive(self) -> list[str]:
        """The policies that choose K themselves (everything but off and static:K)."""
        return [p for p in self.policies if p != "off" and not p.startswith("static:")]

    # -- does the utility a policy predicts come true? ------------------------------------------
    def utility_check(self) -> dict:
        """Per adaptive policy: its predicted utility of each K (mean over the prompts of a
        workload, and its last one: after the whole workload, what the policy has learned)
        next to the speedup static:K really reached over off on the same prompts, and R^2 of
        prediction against realization over every (workload, K) pair, for both. The mean
        includes the first prompts' predictions, made before most of the cost curve was
        measured; the last one says whether the model, once informed, tells the truth."""
        statics = {int(p.split(":")[1]): p for p in self.policies if p.startswith("static:")}
        out: dict = {}
        for pol in self.adaptive:
            points = []
            for w in self.measured_workloads:
                snaps = self.predictions.get((w, pol)) or []
                for k, label in sorted(statics.items()):
                    vals = [s[k] for s in snaps if s.get(k) is not None]
                    realized = self.ratio(w, label, "off")
                    if vals and realized is not None:
                        points.append({"workload": w, "k": k, "predicted": sum(vals) / len(vals),
                                       "predicted_last": vals[-1], "realized": realized})
            real = [p["realized"] for p in points]
            out[pol] = {"points": points, "r2": r_squared([p["predicted"] for p in points], real),
                        "r2_last": r_squared([p["predicted_last"] for p in points], real)}
        return out

    def results(self) -> list[Aggregate]:
        out = []
        for w in self.measured_workloads:
            for p in self.policies:
                a = self.aggregate(w, p)
                if a is not None:
                    out.append(a)
        return out

    def policy_summary(self, policy: str) -> dict:
        """One adaptive policy against off and against the best static K, per workload."""
        statics = [p for p in self.policies if p.startswith("static:")]
        per_off: dict[str, float] = {}
        per_static: dict[str, dict] = {}
        for w in self.measured_workloads:
            s = self.ratio(w, policy, "off")
            if s is not None:
                per_off[w] = round(s, 4)
            best = max(((p, self.ratio(w, p, "off")) for p in statics), key=lambda x: x[1] or 0.0, default=None)
            if best is not None and best[1] is not None:
                r = self.ratio(w, policy, best[0])
                if r is not None:
                    per_static[w] = {"ratio": round(r, 4), "best_static": best[0],
                                     "best_static_speedup_vs_off": round(best[1], 4)}
        return {
            "speedup_vs_off": per_off,
            "speedup_vs_off_per_round": {w: [round(x, 4) for x in self.round_ratios(w, policy)]
                                         for w in per_off} if self.rounds > 1 else {},
            "worst_speedup_vs_off": min(per_off.values()) if per_off else None,
            "vs_best_static": {
                "per_workload": per_static,
                "min": min(v["ratio"] for v in per_static.values()) if per_static else None,
            },
        }

    def summary(self) -> dict:
        flags = [r.identical_to_off for r in self.runs if r.identical_to_off is not None]
        casc = self.policy_summary("cascade")
        check = self.utility_check()
        return {
            "cascade_speedup_vs_off": casc["speedup_vs_off"],
            "cascade_worst_speedup_vs_off": casc["worst_speedup_vs_off"],
            "cascade_vs_best_static": casc["vs_best_static"],
            "policies": {p: self.policy_summary(p) for p in self.adaptive},
            "utility_r2": {p: (None if v["r2"] is None else round(v["r2"], 4)) for p, v in check.items()},
            "utility_r2_last": {p: (None if v["r2_last"] is None else round(v["r2_last"], 4)) for p, v in check.items()},
            "all_identical_to_off": all(flags) if flags else None,
            "empty_workloads": self.empty_workloads(),
            "empty_requests": [{"workload": r.workload, "prompt_index": r.prompt_index,
                                "stop_reason": r.stop_reason, "prompt": r.prompt[:80]}
                               for r in self.empty_requests()],
            "recommendations": [r.to_dict() for r in self.recommendations()],
        }

    def recommendations(self) -> list[Recommendation]:
        out = []
        for w in self.measured_workloads:
            aggs = {p: a for p in self.policies if (a := self.aggregate(w, p)) is not None}
            if "off" not in aggs:
                continue
            speed = {p: (1.0 if p == "off" else self.ratio(w, p, "off")) for p in aggs}
            best = max((p for p in aggs if speed[p] is not None), key=lambda p: speed[p])
            runner_up = max((p for p in aggs if p not in ("off", best) and speed[p] is not None),
                            key=lambda p: speed[p], default=None)
            if best == "off" or speed[best] <= 1.0:
                k = None
                if runner_up is None:
                    why = "only off was measured"
                else:
                    why = f"no policy beat plain decoding; best was {runner_up} at {speed[runner_up]:.2f}x"
                text = f"{w}: use off ({why})"
                best = "off"
            else:
                if best.startswith("static:"):
                    k = int(best.split(":")[1])
                else:
                    k = modal_k(aggs[best].k_hist) or None
                text = f"{w}: use {best}, {speed[best]:.2f}x the tokens/s of off"
                per = self.per_prompt_speedups(w, best)
                if len(per) > 1 and min(per) <= 1.0:
                    text += f" (not on every prompt: {min(per):.2f}x-{max(per):.2f}x)"
                if runner_up is not None:
                    text += f" (next: {runner_up} {speed[runner_up]:.2f}x)"
                if best not in ("off",) and not best.startswith("static:"):
                    text += f"; its most used K was {modal_k(aggs[best].k_hist)}"
            server = "no draft model (plain decoding)" if k is None else f"--draft-max {k} --draft-min {k}"
            text += f"; closest llama-server setting: {server}"
            if aggs[best].identical_to_off is False:
                text += "; WARNING: its greedy output differed from off"
            out.append(Recommendation(w, best, speed[best], k, server, text))
        return out

    def to_dict(self) -> dict:
        return {
            "model": self.model,
            "draft": self.draft,
            "backend": self.backend,
            "partial": self.interrupted,
            "runs_done": len(self.runs),
            "runs_planned": self.runs_planned,
            "rounds": self.rounds,
            "max_tokens": self.max_tokens,
            "temperature": 0.0,
            "policies": list(self.policies),
            "workloads": {w: {"source": self.sources.get(w, ""), "prompts": len(ps)} for w, ps in self.workloads.items()},
            **self.meta,
            "results": [a.to_dict() for a in self.results()],
            "summary": self.summary(),
            "utility_check": self.utility_check(),
            "runs": [r.to_dict() for r in self.runs],
            "skipped": list(self.skipped),
        }


def r_squared(pred: Sequence[float], real: Sequence[float]) -> float | None:
    """1 - SS_res / SS_tot of ``pred`` against ``real`` (None below 3 points or without spread)."""
    if len(real) < 3:
        return None
    mean = sum(real) / len(real)
    ss_tot = sum((y - mean) ** 2 for y in real)
    if ss_tot <= 0:
        return None
    return 1.0 - sum((y - p) ** 2 for p, y in zip(pred, real)) / ss_tot


def _predicted(policy: Policy) -> dict[int, float]:
    """What a policy predicts per K right now: ``predict(K)`` when it has one (``learned``),
    else the utilities it measured (``cascade``)."""
    pred = getattr(policy, "predict", None)
    if callable(pred):
        kmax = policy.params.get("k_max", 16)
        out = {k: pred(k) for k in range(1, int(kmax) + 1)}
        return {k: u for k, u in out.items() if u is not None}
    return dict(policy.measured_utilities())


def _tps(runs: Sequence[RunResult]) -> float:
    t = sum(r.decode_s for r in runs)
    return sum(r.generated_tokens for r in runs) / t if t > 0 else 0.0


# -- the loop ------------------------------------------------------------------------------------
class _PromptPrefilledDrafter:
    """Wraps a model drafter so that the bench can give it the prompt *before* the timed request.

    The engine excludes the target's prompt prefill from decode time, but a model drafter reads the
    prompt lazily inside the first iteration that drafts, so that iteration would also carry the
    drafter's whole prompt prefill (on the demo pair: ~14 ms against ~36 ms for 64 plain tokens).
    llama-server counts both models' prompt processing as prompt time, not generation time. This
    wrapper keeps the cache the bench filled (``reset`` is a no-op); catching up on tokens
    generated during K=0 stretches stays timed, as it should."""

    def __init__(self, inner):
        self.inner = inner
        self.name = getattr(inner, "name", "drafter")

    def prefill(self, ids: Sequence[int]) -> None:
        self.inner.reset()
        fill = getattr(self.inner, "prefill", None) or self.inner._sync
        fill(list(ids))

    def reset(self) -> None:
        pass

    def propose(self, context, k, temperature, rng):
        return self.inner.propose(context, k, temperature, rng)

    def close(self) -> None:
        self.inner.close()


def _can_prefill(drafter) -> bool:
    return drafter is not None and (callable(getattr(drafter, "prefill", None)) or callable(getattr(drafter, "_sync", None)))


ProgressFn = Callable[[int, int, "str | None"], None]  # (runs done, runs planned, current run or None)


def _compare_with_off(runs: list[RunResult]) -> None:
    """Set ``identical_to_off`` on one prompt's runs (None where off did not run)."""
    off = next((r.tokens for r in runs if r.policy == "off"), None)
    for r in runs:
        r.identical_to_off = None if off is None else r.tokens == off


def run_bench(
    models,
    workloads: Mapping[str, Sequence[str]] | Mapping[str, Any],
    policies: Sequence[str] | str,
    *,
    max_tokens: int = 128,
    n_prompts: int | None = None,
    set_params: Mapping[str, Any] | None = None,
    progress: ProgressFn | None = None,
    seed: int = 0,
    warmup: bool = True,
    time_draft_prefill: bool = False,
    rounds: int = 1,
    clock: Callable[[], float] = time.perf_counter,
) -> BenchReport:
    """Run every policy on the first ``n_prompts`` prompts of each workload (all for ``None``).

    ``models``: a :class:`cascade_tui.runtime.LoadedModels`. ``workloads``: name -> prompts (a
    list of strings, or a :class:`cascade_tui.workloads.Workload`). A KeyboardInterrupt stops the
    benchmark and returns what was measured (``report.interrupted`` is then True; the run that
    was in flight is dropped).

    A model drafter is given the prompt before each timed request (its time is recorded as
    ``draft_prefill_s``, outside decode time, like the target's prefill) unless
    ``time_draft_prefill`` is True, in which case it reads the prompt inside the first drafting
    iteration, as the engine does on its own.

    ``rounds``: the whole schedule that many times, each round with fresh policy objects (an
    adaptive policy starts cold, as in a new process) and the ABBA order flipped from one round
    to the next, so each prompt sees both orders; aggregates pool every round, and
    :meth:`BenchReport.round_ratios` gives each round's own speedup.
    """
    if rounds < 1:
        raise BenchError(f"rounds must be at least 1 (got {rounds})")
    from cascade_tui.engine import EngineError, GenerationConfig, SpeculativeDecoder
    from cascade_tui.stats import RunStats

    labels = parse_policy_list(policies)
    make_policies(labels, set_params)  # validate everything before the first run
    sched: dict[str, tuple[str, ...]] = {}
    sources: dict[str, str] = {}
    for name, w in workloads.items():
        prompts = tuple(getattr(w, "prompts", w))
        sched[name] = prompts if n_prompts is None else prompts[:n_prompts]
        sources[name] = getattr(w, "source", "given")
    total = sum(len(p) for p in sched.values()) * len(labels) * rounds
    report = BenchReport(
        model=models.model_path, draft=models.draft_label, backend=models.backend, policies=labels,
        workloads=sched, sources=sources, max_tokens=max_tokens, runs_planned=total,
    )
    cfg = GenerationConfig(max_tokens=max_tokens, temperature=0.0, seed=seed)
    prefill_drafter = not time_draft_prefill and _can_prefill(models.drafter)
    drafter = _PromptPrefilledDrafter(models.drafter) if prefill_drafter else models.drafter
    report.meta["draft_prefill"] = "untimed (before each request, like the target's)" if prefill_drafter else (
        "timed (inside the first drafting iteration)" if models.drafter is not None else "none")
    decoder = SpeculativeDecoder(models.target, drafter, make_policy("off"), clock=clock)
    done = 0
    try:
        if warmup and total:  # touch both models' weights once so the first timed run is not penalised
            first = next(p for ps in sched.values() for p in ps)
            decoder.policy = make_policy("static:2")
            try:
                for _ in decoder.generate(first, GenerationConfig(max_tokens=min(8, max_tokens), temperature=0.0)):
                    pass
            except EngineError:
                pass
        for rnd in range(rounds):
            for w, prompts in sched.items():
                # one policy object per label for the whole workload: an adaptive policy carries what
                # it learned from one prompt to the next, as in a chat or server session
                policies = make_policies(labels, set_params)
                for i, prompt in enumerate(prompts):
                    first_run = len(report.runs)  # this prompt's runs are appended from here
                    # ABBA: on every other prompt the policies run in reverse, so that none is always
                    # the one right after off or the last (this VM's speed wanders by 20% within a
                    # minute: a policy that never drafted read 0.94x and 0.98x of off, always running last)
                    # (and from one round to the next the other way round: each prompt sees both orders)
                    for pol in (policies if (i + rnd) % 2 == 0 else policies[::-1]):
                        if progress:
                            where = f"round {rnd + 1}/{rounds} " if rounds > 1 else ""
                            progress(done, total, f"{where}{w} #{i + 1} {pol.label}")
                        decoder.policy = pol
                        stats = RunStats()
                        draft_prefill_s = 0.0
                        try:
                            if prefill_drafter and pol.label != "off":
                                t0 = clock()
                                drafter.prefill(models.target.tokenize(prompt))
                                draft_prefill_s = clock() - t0
                            for ev in decoder.generate(prompt, cfg):
                                stats.add(ev)
                        except EngineError as e:  # e.g. the prompt does not fit the context: skip it
                            kept = [r for r in report.runs if (r.workload, r.prompt_index, r.round_no) != (w, i, rnd)]
                            done -= len(report.runs) - len(kept)
                            report.runs = kept
                            skip = {"workload": w, "prompt_index": i, "reason": str(e)}
                            if skip not in report.skipped:  # (every round meets it again)
                                report.skipped.append(skip)
                            report.runs_planned -= len(labels)
                            total = report.runs_planned
                            break
                        tokens = list(stats.emitted)
                        report.runs.append(RunResult(
                            workload=w, prompt_index=i, policy=pol.label,
                            generated_tokens=stats.generated_tokens, decode_s=stats.decode_s,
                            prefill_s=stats.prefill_s, draft_prefill_s=draft_prefill_s,
                            iterations=stats.iterations, drafted=stats.drafted,
                            accepted=stats.accepted, k_hist=Counter(stats.k_hist),
                            unique_sum=stats.unique_sum, unique_n=stats.unique_n,
                            stop_reason=stats.reason, tokens=tokens,
                            identical_to_off=None,  # below, once off has run on this prompt
                            capture_s=stats.capture_s, prompt=prompt, round_no=rnd,
                        ))
                        if pol.label in report.adaptive:
                            report.predictions.setdefault((w, pol.label), []).append(_predicted(pol))
                        done += 1
                    _compare_with_off(report.runs[first_run:])
        if progress:
            progress(len(report.runs), report.runs_planned, None)
    except KeyboardInterrupt:
        report.interrupted = True
        if report.runs:  # the prompt that was running: compare what it has
            last = report.runs[-1]
            _compare_with_off([r for r in report.runs
                               if (r.workload, r.prompt_index, r.round_no) == (last.workload, last.prompt_index, last.round_no)])
    return report
