"""What the engine reports. The TUI, the session recorder and the benchmark all consume this one
stream; each event turns into one JSON object with ``to_dict()`` (DESIGN section 4)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np


@dataclass
class Event:
    seq: int = 0  # position in the stream, assigned by the engine
    t: float = 0.0  # seconds since the engine started this request

    type = "event"

    def to_dict(self) -> dict[str, Any]:
        d = {"type": self.type}
        for k, v in asdict(self).items():
            d[k] = _jsonable(v)
        return d


def _jsonable(v: Any) -> Any:
    if isinstance(v, np.ndarray):
        return v.tolist()
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (np.floating,)):
        return float(v)
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    return v


@dataclass
class StartEvent(Event):
    """A request begins: the prompt has been tokenized and evaluated."""

    type = "turn"
    prompt_tokens: int = 0
    reused_tokens: int = 0  # prompt tokens already in the KV cache from the previous request
    prefill_s: float = 0.0
    policy: str = ""
    params: dict = field(default_factory=dict)
    temperature: float = 0.0
    max_tokens: int = 0


@dataclass
class IterationEvent(Event):
    """One draft -> verify -> accept step."""

    type = "iteration"
    index: int = 0  # iteration number within the request
    k: int = 0  # K the policy chose (after clamping to context / token budget)
    drafted: list[int] = field(default_factory=list)  # token ids the drafter proposed
    accepted: int = 0  # how many of them the target accepted
    emitted: list[int] = field(default_factory=list)  # tokens appended to the output
    text: str = ""  # decoded text of ``emitted`` (UTF-8 safe across token boundaries)
    draft_s: float = 0.0
    verify_s: float = 0.0
    iter_s: float = 0.0
    utility: float | None = None  # the policy's current estimate of U for this K
    phase: str = ""
    unique_experts: float | None = None  # mean unique experts per MoE layer in the verify batch
    routing: np.ndarray | None = None  # int32 [moe_layers, K+1, n_expert_used] or None
    n_past: int = 0  # tokens in the target's cache after this iteration


@dataclass
class PhaseEvent(Event):
    """The policy moved to another phase (e.g. test -> set) or K."""

    type = "phase"
    phase: str = ""
    previous: str = ""
    k: int = 0
    state: dict = field(default_factory=dict)  # policy-specific: t_base, last test trials, ...


@dataclass
class ParamEvent(Event):
    """A control message was applied (or refused) at an iteration boundary."""

    type = "param"
    key: str = ""  # parameter name, or "policy" for a policy switch
    value: Any = None
    ok: bool = True
    error: str = ""
    policy: str = ""


@dataclass
class EndEvent(Event):
    """The request finished."""

    type = "end"
    reason: str = ""  # "eos", "max_tokens", "context", "cancelled", or a Cancel message's reason
    generated_tokens: int = 0
    iterations: int = 0
    wall_s: float = 0.0
    text: str = ""
