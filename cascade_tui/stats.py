"""Summary statistics computed from the event stream (``run --json``, ``sessions show``, bench).
They depend on the events alone, so a recording read back gives the numbers the run printed."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Iterable, Mapping

if TYPE_CHECKING:  # numpy-free at run time: the CLI imports this before llama.cpp loads
    from cascade_tui.engine.events import Event


def fmt(x: float | None, spec: str, none: str = "-") -> str:
    """``format(x, spec)``, or ``none`` for a missing number (tables, panels, reports)."""
    return none if x is None else format(x, spec)


MIN_K0 = 2  # K = 0 iterations needed before their mean time is a baseline worth quoting (the line says how many)


def mean_k_of(hist: Mapping[int, int]) -> float:
    """Mean K of a histogram K -> iterations."""
    n = sum(hist.values())
    return sum(k * c for k, c in hist.items()) / n if n else 0.0


class DecodeRates:
    """Rates derived from ``generated_tokens``, ``decode_s``, ``drafted``, ``accepted`` and
    ``k_hist``: shared by one request's stats and the benchmark's aggregates."""

    generated_tokens: int
    decode_s: float
    drafted: int
    accepted: int
    k_hist: Mapping[int, int]

    @property
    def tokens_per_s(self) -> float:
        return self.generated_tokens / self.decode_s if self.decode_s > 0 else 0.0

    @property
    def acceptance_rate(self) -> float | None:
        return self.accepted / self.drafted if self.drafted else None

    @property
    def mean_k(self) -> float:
        return mean_k_of(self.k_hist)


@dataclass
class RunStats(DecodeRates):
    """Statistics of an event stream: one turn, or several summed (``prompt_tokens``, times and
    counts add up; ``text`` joins the answers; ``policy`` and ``temperature`` are the first
    turn's)."""

    turns: int = 0
    prompt_tokens: int = 0
    generated_tokens: int = 0
    iterations: int = 0
    drafted: int = 0
    accepted: int = 0
    decode_s: float = 0.0  # sum of iteration times and the policy's own time (prefill excluded)
    prefill_s: float = 0.0
    wall_s: float = 0.0
    text: str = ""
    reason: str = ""
    policy: str = ""
    temperature: float = 0.0
    k_hist: Counter = field(default_factory=Counter)
    phase_hist: Counter = field(default_factory=Counter)
    utility_sum: float = 0.0
    utility_n: int = 0
    unique_sum: float = 0.0
    unique_n: int = 0
    capture_s: float = 0.0  # routing capture, kept out of decode_s (and so out of tok/s)
    k0_s: float = 0.0  # time of the K = 0 iterations (a measured plain step: the speedup's baseline)
    k0_n: int = 0
    emitted: list[int] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    switches: int = 0  # times speculation turned on or off (K = 0 <-> K > 0) between iterations
    shadow_drafts: int = 0  # K = 0 iterations that drafted without verifying (Decision.shadow)
    shadow_checked: int = 0  # shadow-drafted positions compared with the target's tokens
    shadow_matched: int = 0  # ... that matched (before each draft's first miss)
    _last_on: bool | None = field(default=None, repr=False)

    def speculation_line(self) -> str:
        """One line saying what speculation did, e.g. ``speculation: on for 62% of iterations
        (switched on/off 5 times), 1.41x vs no speculation (estimated)``."""
        share = self.speculation_share
        if not self.iterations:
            return "speculation: nothing was generated"
        if not share:
            return f"speculation: off for all {self.iterations} iterations (policy {self.policy or '?'})"
        text = f"speculation: on for {share:.0%} of iterations"
        if self.switches:
            text += f" (switched on/off {self.switches} time{'s' if self.switches != 1 else ''})"
        est = self.estimated_speedup
        if est is not None:
            text += f", {est:.2f}x vs no speculation (estimated from {self.k0_n} plain steps)"
        else:
            text += "; no speedup estimate (too few plain steps to compare with; try --policy off)"
        return text

    @property
    def t_base(self) -> float | None:
        """Mean time of a K = 0 iteration in this stream, None when there was none."""
        return self.k0_s / self.k0_n if self.k0_n else None

    @property
    def estimated_speedup(self) -> float | None:
        """Speedup over no speculation, estimated as tokens/s x the measured K = 0 iteration
        time (None with fewer than MIN_K0 K = 0 iterations, e.g. a static:K run)."""
        tb = self.t_base if self.k0_n >= MIN_K0 else None
        return self.tokens_per_s * tb if tb and self.decode_s > 0 else None

    @property
    def shadow_match_rate(self) -> float | None:
        """Share of shadow-drafted positions the target then wrote (None: no shadow draft)."""
        return self.shadow_matched / self.shadow_checked if self.shadow_checked else None

    @property
    def speculation_share(self) -> float | None:
        """Share of iterations with K > 0."""
        return 1.0 - self.k_hist.get(0, 0) / self.iterations if self.iterations else None

    def add(self, ev: Event) -> None:  # dispatches on ev.type: no engine import needed
        if ev.type == "turn":
            self._last_on = None  # a new request: its first K is not a switch
            if not self.turns:
                self.policy, self.temperature = ev.policy, ev.temperature
            self.turns += 1
            self.prompt_tokens += ev.prompt_tokens
            self.prefill_s += ev.prefill_s
        elif ev.type == "iteration":
            self.iterations += 1
            self.drafted += len(ev.drafted)
            self.accepted += ev.accepted
            # the policy's own time counts: a user waits for it too (learned: ~0.1 ms an
            # iteration, under 1% of a grown-demo step); policies themselves see iter_s only
            self.decode_s += ev.iter_s + (getattr(ev, "policy_s", 0.0) or 0.0)
            self.capture_s += getattr(ev, "capture_s", 0.0) or 0.0
            self.k_hist[ev.k] += 1
            on = ev.k > 0
            if self._last_on is not None and on != self._last_on:
                self.switches += 1
            self._last_on = on
            self.phase_hist[ev.phase] += 1
            self.emitted.extend(ev.emitted)
            if getattr(ev, "shadow", None):
                self.shadow_drafts += 1
            self.shadow_checked += getattr(ev, "shadow_checked", 0) or 0
            self.shadow_matched += getattr(ev, "shadow_matched", 0) or 0
            if ev.k == 0:  # a plain step; a shadow draft's time (draft_s) is not part of one
                self.k0_s += ev.iter_s - ev.draft_s
                self.k0_n += 1
            if ev.utility is not None:
                self.utility_sum += ev.utility
                self.utility_n += 1
            if ev.unique_experts is not None:
                self.unique_sum += ev.unique_experts
                self.unique_n += 1
        elif ev.type == "end":
            self.generated_tokens += ev.generated_tokens
            self.wall_s += ev.wall_s
            self.text += ev.text
            self.reason = ev.reason
        elif ev.type == "error":
            self.errors.append(ev.message)

    def to_dict(self) -> dict:
        speedup = self.estimated_speedup
        return {
            "text": self.text,
            "stop_reason": self.reason,
            "prompt_tokens": self.prompt_tokens,
            "generated_tokens": self.generated_tokens,
            "iterations": self.iterations,
            "wall_s": round(self.wall_s, 6),
            "prefill_s": round(self.prefill_s, 6),
            "decode_s": round(self.decode_s, 6),
            "routing_capture_s": round(self.capture_s, 6),
            "tokens_per_s": round(self.tokens_per_s, 3),
            "drafted_tokens": self.drafted,
            "accepted_tokens": self.accepted,
            "acceptance_rate": self.acceptance_rate,
            "mean_accepted": self.accepted / self.iterations if self.iterations else 0.0,
            "mean_k": self.mean_k,
            "k_histogram": {str(k): v for k, v in sorted(self.k_hist.items())},
            "phase_iterations": dict(sorted(self.phase_hist.items())),
            "mean_utility": self.utility_sum / self.utility_n if self.utility_n else None,
            "mean_unique_experts": self.unique_sum / self.unique_n if self.unique_n else None,
            "speculation_share": self.speculation_share,
            "speculation_switches": self.switches,
            "shadow_drafts": self.shadow_drafts,
            "shadow_match_rate": self.shadow_match_rate,
            "estimated_speedup": None if speedup is None else round(speedup, 4),
        }


def stats_by_turn(events: Iterable[Event]) -> list[RunStats]:
    """One :class:`RunStats` per turn of a stream (events before the first turn are ignored)."""
    out: list[RunStats] = []
    for ev in events:
        if ev.type == "turn":
            out.append(RunStats())
        if out:
            out[-1].add(ev)
    return out


def total_stats(events: Iterable[Event]) -> RunStats:
    st = RunStats()
    for ev in events:
        st.add(ev)
    return st


def run_summary(stats: RunStats, header: Mapping, session_path: str | None) -> dict:
    """The object ``run --json`` prints: the statistics plus what ran (from the session header)."""
    out = stats.to_dict()
    machine = header.get("machine") or {}
    out.update({
        "model": (header.get("model") or {}).get("path"),
        "backend": header.get("backend"),
        "draft": (header.get("draft") or {}).get("name"),
        "policy": stats.policy or (header.get("policy") or {}).get("name"),
        "temperature": stats.temperature,
        # where the target's layers ran: "cpu", or the GPU(s) and how many layers went there
        "device": machine.get("device"),
        "offloaded_layers": machine.get("offloaded_layers"),
        "session": session_path,
    })
    return out
