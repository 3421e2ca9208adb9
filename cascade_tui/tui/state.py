"""What the screen shows, as plain data: :class:`ViewState` folds the session's event stream
(live or replayed) into the series, logs, heatmaps, statistics and transcript the widgets draw.

No Textual here: the state is updated in the app's message handlers and tested on its own. Live
chat and replay feed the same events through :meth:`ViewState.apply`, so they show the same
numbers.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any, Iterable

import numpy as np

from cascade_tui.stats import RunStats

SERIES = 600  # iterations kept for the charts
HEAT_WINDOW = 64  # iterations summed in the rolling expert heatmap
LOG_LINES = 500


@dataclass
class IterPoint:
    n: int  # iteration number across the whole session
    turn: int
    k: int
    drafted: int
    accepted: int
    utility: float | None
    phase: str
    iter_s: float
    unique: float | None


@dataclass
class LogLine:
    n: int  # iteration count when it happened
    kind: str  # turn, phase, param, error, end, marker
    text: str


@dataclass
class ChatTurn:
    message: str
    segments: list[tuple[str, bool]] = field(default_factory=list)  # (text, from an accepted draft)
    end_reason: str = ""
    tokens: int = 0

    def add(self, text: str, from_draft: bool) -> None:
        if not text:
            return
        if self.segments and self.segments[-1][1] == from_draft:
            self.segments[-1] = (self.segments[-1][0] + text, from_draft)
        else:
            self.segments.append((text, from_draft))

    @property
    def text(self) -> str:
        return "".join(t for t, _ in self.segments)


class ViewState:
    def __init__(self, header: dict[str, Any] | None = None):
        self.header: dict[str, Any] = {}
        self.points: deque[IterPoint] = deque(maxlen=SERIES)
        self.log: deque[LogLine] = deque(maxlen=LOG_LINES)
        self.log_total = 0  # lines ever logged (the log itself keeps the last LOG_LINES)
        self.chat: list[ChatTurn] = []
        self.total = RunStats()
        self.turn_stats: RunStats | None = None
        self.n_iterations = 0
        self.policy = ""
        self.params: dict[str, Any] = {}
        self.phase = ""
        self.k = 0
        self.policy_k = 0  # the K the policy uses (``k`` is what the last iteration ran, maybe clamped)
        self.reason = ""
        self.utilities: dict[int, float] = {}  # the policy's measured U per K
        self.policy_t_base: float | None = None
        self.backoff: int | None = None
        # the latest shadow draft (speculation off, the drafter watched): (tokens matched, drafted),
        # None while none has resolved since speculation was last on
        self.shadow: tuple[int, int] | None = None
        self._shadow_len = 0
        self.n_layers = 0
        self.n_expert = 0
        self.n_expert_used = 0
        self.heat_now: np.ndarray | None = None  # [layers, experts]: tokens of the last iteration per expert
        self._heat_hist: deque[tuple[np.ndarray, int]] = deque(maxlen=HEAT_WINDOW)  # (counts, tokens)
        self.heat_sum: np.ndarray | None = None  # the same, summed over the last HEAT_WINDOW iterations
        self.heat_tokens = 0  # tokens in heat_sum
        self.running = False
        self.errors: list[str] = []
        self.version = 0  # bumped by every apply(): widgets redraw only when it moved
        if header:
            self.set_header(header)

    # -- setup ---------------------------------------------------------------------------------
    def set_header(self, header: dict[str, Any]) -> None:
        self.header = dict(header)
        model = header.get("model") or {}
        self.n_layers = len(model.get("moe_layers") or [])
        self.n_expert = int(model.get("n_expert") or 0)
        self.n_expert_used = int(model.get("n_expert_used") or 0)
        pol = header.get("policy") or {}
        self.policy = pol.get("name", self.policy)
        self.params = dict(pol.get("params") or {})
        self.version += 1

    # -- derived numbers -----------------------------------------------------------------------
    @property
    def t_base(self) -> float | None:
        """Measured time of a K = 0 iteration in this session, else the policy's estimate."""
        return self.total.t_base or self.policy_t_base

    @property
    def speedup(self) -> float | None:
        """Estimated speedup over no speculation: tokens/s against 1 / t_base."""
        tb = self.t_base
        tps = self.total.tokens_per_s
        return tps * tb if tb and tps else None

    @property
    def unique_now(self) -> np.ndarray | None:
        """Unique experts per MoE layer in the last iteration's verify batch."""
        return None if self.heat_now is None else (self.heat_now > 0).sum(axis=1)

    @property
    def bytes_ratio(self) -> float | None:
        """Expert weights the last verify read, relative to a plain one-token step (which reads
        ``n_expert_used`` experts per layer)."""
        u = self.unique_now
        if u is None or not self.n_expert_used:
            return None
        return float(u.mean()) / self.n_expert_used


    # -- folding events ------------------------------------------------------------------------
    def apply_all(self, events: Iterable) -> None:
        for ev in events:
            self.apply(ev)

    def apply(self, ev) -> None:
        self.version += 1
        self.total.add(ev)
        if ev.type == "turn":
            self.turn_stats = RunStats()
        if self.turn_stats is not None:
            self.turn_stats.add(ev)
        handler = getattr(self, f"_on_{ev.type}", None)
        if handler is not None:
            handler(ev)

    def _say(self, kind: str, text: str) -> None:
        self.log.append(LogLine(self.n_iterations, kind, text))
        self.log_total += 1

    def _on_turn(self, ev) -> None:
        self.running = True
        self.policy, self.params = ev.policy, dict(ev.params)
        self.chat.append(ChatTurn(ev.message))
        reused = f", {ev.reused_tokens} reused from the cache" if ev.reused_tokens else ""
        self._say("turn", f"turn {ev.turn + 1}: {ev.prompt_tokens} prompt tokens{reused}, policy {ev.policy}")

    def _on_iteration(self, ev) -> None:
        self.n_iterations += 1
        self.k, self.phase = ev.k, ev.phase or self.phase
        self.policy_k = ev.k if ev.utility_k is None else ev.utility_k
        self.points.append(IterPoint(self.n_iterations, len(self.chat) - 1, ev.k, len(ev.drafted), ev.accepted,
                                     ev.utility, ev.phase, ev.iter_s, ev.unique_experts))
        if self.chat:
            turn = self.chat[-1]
            turn.add(ev.text[: ev.from_draft], True)
            turn.add(ev.text[ev.from_draft:], False)
            turn.tokens += len(ev.emitted)
        if ev.k:
            self.shadow = None
        if getattr(ev, "shadow", None):
            self._shadow_len = len(ev.shadow)
        if getattr(ev, "shadow_checked", 0):
            self.shadow = (ev.shadow_matched, self._shadow_len or ev.shadow_checked)
        if ev.utility_k and ev.utility is not None:
            # the bar of the K in use follows the policy's estimate between phase events
            # (``learned`` changes phase only when speculation turns on or off)
            self.utilities[ev.utility_k] = float(ev.utility)
        if ev.routing is not None:
            self._route(np.asarray(ev.routing))

    def _route(self, routing: np.ndarray) -> None:
        layers = routing.shape[0]
        n_expert = max(self.n_expert, int(routing.max()) + 1 if routing.size else 0)
        if layers != self.n_layers or n_expert != self.n_expert:
            self.n_layers, self.n_expert = layers, n_expert
            self._heat_hist.clear()
        if not self.n_expert_used and routing.ndim == 3:
            self.n_expert_used = routing.shape[2]
        counts = np.zeros((layers, n_expert), np.int32)
        for layer in range(layers):
            counts[layer] = np.bincount(routing[layer].reshape(-1), minlength=n_expert)[:n_expert]
        self.heat_now = counts
        self._heat_hist.append((counts, routing.shape[1]))
        self.heat_sum = np.sum([c for c, _ in self._heat_hist], axis=0)
        self.heat_tokens = sum(n for _, n in self._heat_hist)

    def _on_phase(self, ev) -> None:
        self.phase, self.k, self.reason = ev.phase, ev.k, ev.reason
        self.policy_k = ev.k
        st = ev.state or {}
        self.utilities = {int(k): float(u) for k, u in (st.get("utilities") or {}).items() if u is not None}
        self.policy_t_base = st.get("t_base", self.policy_t_base)
        self.backoff = st.get("backoff")
        prev = ev.previous or "start"
        self._say("phase", f"{prev} -> {ev.phase} (K={ev.k}): {ev.reason}" if ev.reason else f"{prev} -> {ev.phase} (K={ev.k})")

    def _on_param(self, ev) -> None:
        if ev.ok:
            self.policy, self.params = ev.policy or self.policy, dict(ev.params or self.params)
            if ev.key == "policy":
                self.utilities, self.backoff = {}, None
                self._say("param", f"policy switched to {ev.policy}")
            else:
                self._say("param", f"{ev.key} = {ev.value} (policy {ev.policy})")
        else:
            self._say("error", f"refused {ev.key} = {ev.value}: {ev.error}")

    def _on_end(self, ev) -> None:
        self.running = False
        if self.chat:
            self.chat[-1].add(ev.tail, False)
            self.chat[-1].end_reason = ev.reason
        st = self.turn_stats
        rate = f", {st.tokens_per_s:.0f} tok/s" if st is not None and st.decode_s > 0 else ""
        self._say("end", f"turn {ev.turn + 1} ended ({ev.reason}): {ev.generated_tokens} tokens in "
                         f"{ev.iterations} iterations{rate}")

    def _on_error(self, ev) -> None:
        self.errors.append(ev.message)
        self._say("error", f"error ({ev.kind}): {ev.message}")

    def _on_marker(self, ev) -> None:
        if ev.label == "context cleared":
            self.chat.clear()
        self._say("marker", ev.label + (f": {ev.data}" if ev.data else ""))
