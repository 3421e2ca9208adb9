"""The speculative decoding engine: owns the loop, timing, acceptance and KV rollback, and
reports each step as an event. It sees models only through ``backends.base``."""

from cascade_tui.engine.control import Cancel, SetParam, SwitchPolicy
from cascade_tui.engine.decoder import EngineError, GenerationConfig, SpeculativeDecoder, unique_experts
from cascade_tui.engine.events import (
    EVENT_TYPES,
    EndEvent,
    ErrorEvent,
    Event,
    IterationEvent,
    MarkerEvent,
    ParamEvent,
    PhaseEvent,
    StartEvent,
)

__all__ = [
    "EVENT_TYPES",
    "Cancel",
    "EndEvent",
    "EngineError",
    "ErrorEvent",
    "Event",
    "GenerationConfig",
    "IterationEvent",
    "MarkerEvent",
    "ParamEvent",
    "PhaseEvent",
    "SetParam",
    "SpeculativeDecoder",
    "StartEvent",
    "SwitchPolicy",
    "unique_experts",
]
