"""What a session reports. The TUI, the session recorder, replay and the benchmark all consume this
one stream; each event turns into one JSON object with ``to_dict()`` and back with
:func:`Event.from_dict` (DESIGN section 4).

The engine emits ``turn``, ``iteration``, ``phase``, ``param`` and ``end``; the session adds
``error`` and ``marker``. Every type is registered by its ``type`` name in :data:`EVENT_TYPES`.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, ClassVar

import numpy as np

EVENT_TYPES: dict[str, type[Event]] = {}


def _register(cls):
    EVENT_TYPES[cls.type] = cls
    return cls


@dataclass(eq=False)
class Event:
    seq: int = 0  # position in the session's stream (monotonic across turns)
    t: float = 0.0  # seconds since the session started

    type: ClassVar[str] = "event"

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"type": self.type}
        for f in fields(self):
            d[f.name] = _jsonable(getattr(self, f.name))
        return d

    @staticmethod
    def from_dict(d: dict[str, Any]) -> Event:
        """The event a ``to_dict()`` object describes. Unknown fields are ignored (a later minor
        version may add some), missing ones take their defaults; an unknown ``type`` is a
        ValueError."""
        if not isinstance(d, dict):
            raise ValueError(f"an event is a JSON object, not {type(d).__name__}")
        name = d.get("type")
        cls = EVENT_TYPES.get(name) if isinstance(name, str) else None
        if cls is None:
            raise ValueError(f"unknown event type {name!r}")
        kw = {f.name: d[f.name] for f in fields(cls) if f.name in d}
        try:
            ev = cls(**kw)
            ev._restore()
        except (TypeError, ValueError) as e:
            raise ValueError(f"bad {name} event: {e}") from None
        return ev

    def _restore(self) -> None:
        """Turn JSON values back into their in-memory types (hook)."""

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Event) and type(other) is type(self) and self.to_dict() == other.to_dict()

    __hash__ = None  # mutable


def _jsonable(v: Any) -> Any:
    if isinstance(v, np.ndarray):
        return v.tolist()
    if isinstance(v, np.integer):
        return int(v)
    if isinstance(v, np.floating):
        return float(v)
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    return v


@_register
@dataclass(eq=False)
class StartEvent(Event):
    """A turn (one request) begins: the prompt has been tokenized and evaluated."""

    type: ClassVar[str] = "turn"
    turn: int = 0  # 0, 1, ... within the session
    message: str = ""  # what the user asked in this turn (the new text, not the whole context)
    prompt_tokens: int = 0
    reused_tokens: int = 0  # prompt tokens already in the KV cache from the previous turn
    prefill_s: float = 0.0
    policy: str = ""
    params: dict = field(default_factory=dict)
    temperature: float = 0.0
    max_tokens: int = 0


@_register
@dataclass(eq=False)
class IterationEvent(Event):
    """One draft -> verify -> accept step."""

    type: ClassVar[str] = "iteration"
    index: int = 0  # iteration number within the turn
    k: int = 0  # K the policy chose (after clamping to context / token budget)
    drafted: list[int] = field(default_factory=list)  # token ids the drafter proposed
    accepted: int = 0  # how many of them the target accepted
    shadow: list[int] = field(default_factory=list)  # K = 0 only: drafted, not verified (Decision.shadow)
    shadow_checked: int = 0  # a shadow draft resolved here: positions compared with the target's tokens
    shadow_matched: int = 0  # ... and how many matched before the first miss
    emitted: list[int] = field(default_factory=list)  # tokens appended to the output
    text: str = ""  # decoded text of ``emitted`` (UTF-8 safe across token boundaries)
    from_draft: int = 0  # leading characters of ``text`` that came from accepted drafted tokens
    draft_s: float = 0.0
    verify_s: float = 0.0  # target eval, routing capture excluded
    iter_s: float = 0.0  # draft + verify + bookkeeping, routing capture excluded
    capture_s: float = 0.0  # routing capture inside the verify (llama.cpp's eval callback)
    policy_s: float = 0.0  # the policy's own decide + observe, outside iter_s (counted in tok/s)
    utility: float | None = None  # the policy's current estimate of U for the K it now uses
    utility_k: int | None = None  # the K ``utility`` estimates (after this iteration's observation)
    phase: str = ""
    unique_experts: float | None = None  # mean unique experts per MoE layer in the verify batch
    routing: np.ndarray | None = None  # int32 [moe_layers, K+1, n_expert_used] or None
    n_past: int = 0  # tokens in the target's cache after this iteration

    def _restore(self) -> None:
        if self.routing is not None and not isinstance(self.routing, np.ndarray):
            self.routing = np.asarray(self.routing, dtype=np.int32)
        self.drafted = list(self.drafted)
        self.shadow = list(self.shadow)
        self.emitted = list(self.emitted)


@_register
@dataclass(eq=False)
class PhaseEvent(Event):
    """The policy moved to another phase (e.g. test -> set) or trial, and says why."""

    type: ClassVar[str] = "phase"
    phase: str = ""
    previous: str = ""
    k: int = 0
    reason: str = ""  # one line, e.g. "U(K=1)=0.82 < 1: speculation off for 32 iterations"
    state: dict = field(default_factory=dict)  # Policy.state(): t_base, utility per K, back-off


@_register
@dataclass(eq=False)
class ParamEvent(Event):
    """A control message was applied (or refused) at an iteration boundary."""

    type: ClassVar[str] = "param"
    key: str = ""  # parameter name, or "policy" for a policy switch
    value: Any = None
    ok: bool = True
    error: str = ""
    policy: str = ""  # the policy in force after the message
    params: dict = field(default_factory=dict)  # its parameters after the message


@_register
@dataclass(eq=False)
class EndEvent(Event):
    """The turn finished."""

    type: ClassVar[str] = "end"
    turn: int = 0
    reason: str = ""  # "eos", "max_tokens", "context", "cancelled", "interrupted", "error", ...
    generated_tokens: int = 0
    iterations: int = 0
    wall_s: float = 0.0
    text: str = ""  # the whole answer of this turn
    tail: str = ""  # text the UTF-8 decoder still held at the end (after the last iteration's text)


@_register
@dataclass(eq=False)
class ErrorEvent(Event):
    """Something failed. ``kind``: "input" (the request cannot run, e.g. too long for the
    context: exit 2), "backend" (the model failed mid-run: exit 1), "internal"."""

    type: ClassVar[str] = "error"
    kind: str = "internal"
    message: str = ""
    traceback: str = ""


@_register
@dataclass(eq=False)
class MarkerEvent(Event):
    """A note in the stream that no model produced: e.g. the conversation was cleared."""

    type: ClassVar[str] = "marker"
    label: str = ""
    data: dict = field(default_factory=dict)
