"""The speculative decoding loop: draft -> verify -> accept -> rollback, one event per iteration.

Invariants the target's KV cache keeps: it holds every committed token except the last one
(``context[-1]``), whose logits the next iteration needs. An iteration therefore verifies the batch
``[context[-1]] + drafted`` (K + 1 tokens) in one ``eval`` and afterwards rolls the cache back to
the committed prefix. K = 0 is exactly plain decoding, through the same code.

A policy may ask a K = 0 iteration to *shadow* draft (``Decision.shadow``, greedy requests only):
the drafter proposes a few tokens that are not verified; the engine compares them with the tokens
the target then emits (this iteration's and the next ones') and reports, when the comparison ends
(first mismatch, or every shadow token matched), how many matched. It tells the policy whether the
drafter now agrees without paying for a verify of K + 1 tokens. The output cannot change: the
target alone decides every token.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Iterator, Sequence

import numpy as np

from backends.base import Draft, Drafter, Target
from cascade_tui.engine.acceptance import verify_greedy, verify_sampling
from cascade_tui.engine.control import Cancel, ControlChannel, ControlMessage, SetParam, SwitchPolicy
from cascade_tui.engine.events import (
    EndEvent,
    Event,
    IterationEvent,
    ParamEvent,
    PhaseEvent,
    StartEvent,
)
from cascade_tui.engine.text import TextStream
from cascade_tui.policy import Observation, Policy, PolicyError, make_policy


class EngineError(Exception):
    """A request the engine cannot run (e.g. the prompt does not fit the context). One line."""


@dataclass
class GenerationConfig:
    max_tokens: int = 128
    temperature: float = 0.0  # 0 = greedy
    seed: int = 0
    stop_at_eos: bool = True


def unique_experts(routing: np.ndarray | None) -> float | None:
    """Mean over MoE layers of the number of distinct experts the batch touched."""
    if routing is None or routing.size == 0:
        return None
    return float(np.mean([len(np.unique(layer)) for layer in routing]))


class SpeculativeDecoder:
    """Runs requests against one target (+ optional drafter) under a policy.

    ``generate`` is a generator of events; consumers (the session, bench) iterate it. ``send``
    may be called from any thread; messages take effect between iterations. Events are stamped
    with one ``seq`` counter and one clock for the decoder's whole life, so the requests of a
    multi-turn session form one ordered stream.
    """

    def __init__(
        self,
        target: Target,
        drafter: Drafter | None,
        policy: Policy,
        *,
        clock: Callable[[], float] = time.perf_counter,
    ):
        self.target = target
        self.drafter = drafter
        self.policy = policy
        self.clock = clock
        self.control = ControlChannel()
        self._cached: list[int] = []  # tokens in the target's KV cache
        self._seq = 0
        self._t0 = clock()  # events' ``t`` counts from here
        self._turn = 0  # requests started so far

    # -- control -----------------------------------------------------------------------------
    def send(self, msg: ControlMessage) -> None:
        self.control.send(msg)

    def cancel(self, reason: str = "cancelled") -> None:
        self.send(Cancel(reason))

    def _drop_stale_cancels(self) -> None:
        """At the start of a request: a pending Cancel was meant for the request that already
        ended; parameter changes and switches sent in between stay queued for the first boundary."""
        for msg in self.control.drain():
            if not isinstance(msg, Cancel):
                self.control.send(msg)

    def apply_control(self) -> tuple[list[Event], str | None]:
        """Apply pending messages; return their events and the cancel reason (None: go on)."""
        events: list[Event] = []
        cancelled = None
        for msg in self.control.drain():
            if isinstance(msg, Cancel):
                cancelled = msg.reason
                continue
            if isinstance(msg, SetParam):
                key, value = msg.key, msg.value
                apply = lambda: self.policy.set(msg.key, msg.value)  # noqa: E731
            elif isinstance(msg, SwitchPolicy):
                key, value = "policy", msg.spec

                def apply():
                    self.policy = make_policy(msg.spec, msg.params)
                    return msg.spec
            else:
                continue
            try:
                ev = ParamEvent(key=key, value=apply())
            except PolicyError as e:
                ev = ParamEvent(key=key, value=value, ok=False, error=str(e))
            ev.policy, ev.params = self.policy.label, self.policy.params
            events.append(self.stamp(ev))
        return events, cancelled

    def forget(self) -> None:
        """Empty both KV caches: the next request shares nothing with the last."""
        self.target.truncate(0)
        self._cached = []
        if self.drafter is not None:
            self.drafter.reset()

    def stamp(self, ev: Event) -> Event:
        """Give ``ev`` the next ``seq`` and the current ``t`` (also for events the session adds)."""
        ev.seq = self._seq
        ev.t = self.clock() - self._t0
        self._seq += 1
        return ev

    # -- the loop ----------------------------------------------------------------------------
    def generate(self, prompt: str | Sequence[int], config: GenerationConfig | None = None) -> Iterator[Event]:
        cfg = config or GenerationConfig()
        target = self.target
        ids = target.tokenize(prompt) if isinstance(prompt, str) else list(prompt)
        if not ids:
            raise EngineError("the prompt is empty")
        if len(ids) >= target.n_ctx:
            raise EngineError(
                f"the prompt is {len(ids)} tokens but the context holds {target.n_ctx}; "
                "use a shorter prompt or a larger --ctx"
            )
        turn = self._turn
        self._turn += 1
        t_request = self.clock()
        rng = np.random.default_rng(cfg.seed)
        self._drop_stale_cancels()
        self.policy.reset()
        if self.drafter is not None:
            self.drafter.reset()

        # prefill, reusing what the cache already holds from the previous request
        keep = 0
        while keep < min(len(self._cached), len(ids) - 1) and self._cached[keep] == ids[keep]:
            keep += 1
        target.truncate(keep)
        self._cached = self._cached[:keep]
        t = self.clock()
        if len(ids) - 1 > keep:
            target.eval(ids[keep:-1])
        self._cached = list(ids[:-1])
        prefill_s = self.clock() - t
        yield self.stamp(
            StartEvent(
                turn=turn,
                prompt_tokens=len(ids),
                reused_tokens=keep,
                prefill_s=prefill_s,
                policy=self.policy.label,
                params=self.policy.params,
                temperature=cfg.temperature,
                max_tokens=cfg.max_tokens,
            )
        )

        context = list(ids)
        generated: list[int] = []
        stream = TextStream(target.token_bytes)
        eos = target.eos_ids if cfg.stop_at_eos else frozenset()
        phase, phase_reason = "", None
        shadow: list[int] = []  # a shadow draft being compared with what the target emits
        shadow_seen = 0  # its tokens matched so far
        iteration = 0
        reason = "max_tokens"
        while True:
            events, cancelled = self.apply_control()
            yield from events
            if cancelled is not None:
                reason = cancelled
                break
            remaining = cfg.max_tokens - len(generated)
            if remaining <= 0:
                reason = "max_tokens"
                break
            room = target.n_ctx - len(self._cached) - 1  # drafts that fit after context[-1]
            if room < 0:
                reason = "context"
                break

            t_policy = self.clock()
            decision = self.policy.decide()
            policy_s = self.clock() - t_policy  # the policy's own time: counted in tok/s, not shown to it
            k = max(0, min(decision.k, room, remaining - 1))
            if self.drafter is None:
                k = 0
            if (decision.phase, decision.reason) != (phase, phase_reason):
                yield self.stamp(PhaseEvent(phase=decision.phase, previous=phase, k=decision.k,
                                            reason=decision.reason, state=self.policy.state()))
                phase, phase_reason = decision.phase, decision.reason

            t_start = self.clock()
            draft = self.drafter.propose(context, k, cfg.temperature, rng) if k > 0 else Draft([])
            drafted = list(draft.tokens[:k])
            shadowed: list[int] = []
            want = min(decision.shadow, remaining)
            if k == 0 and want > 0 and not shadow and self.drafter is not None and cfg.temperature == 0:
                shadowed = list(self.drafter.propose(context, want, 0.0, rng).tokens[:want])
                shadow, shadow_seen = list(shadowed), 0
            t_drafted = self.clock()
            out = target.eval([context[-1], *drafted])
            t_verified = self.clock()
            if cfg.temperature > 0:
                probs = None if draft.probs is None else draft.probs[: len(drafted)]
                n_acc, nxt = verify_sampling(out.logits, drafted, probs, cfg.temperature, rng)
            else:
                n_acc, nxt = verify_greedy(out.logits, drafted)
            emitted = [*drafted[:n_acc], nxt]
            # roll back: keep context[-1] and the accepted drafts; ``nxt`` is not evaluated yet
            self._cached.extend([context[-1], *drafted[:n_acc]])
            target.truncate(len(self._cached))

            stop = False
            for i, tok in enumerate(emitted):
                if tok in eos:
                    emitted, stop, reason = emitted[:i], True, "eos"
                    break
            if len(emitted) >= remaining:
                emitted = emitted[:remaining]
                if not stop:
                    stop, reason = True, "max_tokens"
            checked = matched = 0
            if shadow:  # compare the pending shadow draft with what the target emitted
                for tok in emitted:
                    if tok != shadow[shadow_seen]:
                        checked, matched = shadow_seen + 1, shadow_seen
                        break
                    shadow_seen += 1
                    if shadow_seen == len(shadow):
                        checked = matched = shadow_seen
                        break
                if checked:
                    shadow, shadow_seen = [], 0
            context.extend(emitted)
            generated.extend(emitted)
            n_draft = min(n_acc, len(emitted))  # emitted tokens that came from accepted drafts
            draft_text = stream.feed(emitted[:n_draft])
            text = draft_text + stream.feed(emitted[n_draft:])
            t_end = self.clock()

            uniq = unique_experts(out.routing)
            # routing capture ran inside the verify: keep it out of the times policies and
            # statistics see (it is reported on its own)
            capture_s = min(max(float(out.capture_s or 0.0), 0.0), t_verified - t_drafted)
            obs = Observation(
                k=k,
                drafted=len(drafted),
                accepted=n_acc,
                draft_s=t_drafted - t_start,
                verify_s=t_verified - t_drafted - capture_s,
                iter_s=t_end - t_start - capture_s,
                unique_experts=uniq,
                shadowed=len(shadowed),
                shadow_checked=checked,
                shadow_matched=matched,
            )
            t_policy = self.clock()
            self.policy.observe(obs)
            utility = self.policy.utility()
            policy_s += self.clock() - t_policy
            yield self.stamp(
                IterationEvent(
                    index=iteration,
                    k=k,
                    drafted=drafted,
                    accepted=n_acc,
                    shadow=shadowed,
                    shadow_checked=checked,
                    shadow_matched=matched,
                    emitted=emitted,
                    text=text,
                    from_draft=len(draft_text),
                    draft_s=obs.draft_s,
                    verify_s=obs.verify_s,
                    iter_s=obs.iter_s,
                    capture_s=capture_s,
                    policy_s=policy_s,
                    utility=utility,
                    utility_k=None if utility is None else self.policy.decide().k,
                    phase=decision.phase,
                    unique_experts=uniq,
                    routing=out.routing,
                    n_past=len(self._cached),
                )
            )
            iteration += 1
            if stop:
                break

        yield self.stamp(
            EndEvent(
                turn=turn,
                reason=reason,
                generated_tokens=len(generated),
                iterations=iteration,
                wall_s=self.clock() - t_request,
                text=target.detokenize(generated),
                tail=stream.flush(),
            )
        )
