"""What every speculation policy is: pure decision logic, no I/O, no clock, no backend.

The engine asks :meth:`Policy.decide` for the next K before each iteration, runs the iteration,
and reports what happened through :meth:`Policy.observe`. Parameters are declared with
:class:`Param` so the CLI (``--set``), the TUI and recordings can list, validate and change them.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any


class PolicyError(ValueError):
    """A bad policy name or parameter value. The message is one line meant for the user."""


@dataclass(frozen=True)
class Param:
    name: str
    type: type  # int, float or bool
    default: Any
    min: float | None = None
    max: float | None = None
    help: str = ""

    def coerce(self, value: Any) -> Any:
        """Turn ``value`` (possibly a string from the command line) into a valid value or raise
        :class:`PolicyError` naming the parameter, the value and what is allowed."""
        try:
            if self.type is bool:
                if isinstance(value, str):
                    low = value.strip().lower()
                    if low in ("1", "true", "yes", "on"):
                        v = True
                    elif low in ("0", "false", "no", "off"):
                        v = False
                    else:
                        raise ValueError
                else:
                    v = bool(value)
            elif self.type is int:
                if isinstance(value, float) and not value.is_integer():
                    raise ValueError
                if isinstance(value, bool):
                    raise ValueError
                v = int(str(value).strip()) if isinstance(value, str) else int(value)
            else:
                v = float(value)
                if v != v:  # NaN
                    raise ValueError
        except (TypeError, ValueError):
            raise PolicyError(
                f"{self.name}: {value!r} is not a valid {self.type.__name__}{self._range_text()}"
            ) from None
        if self.min is not None and v < self.min or self.max is not None and v > self.max:
            raise PolicyError(f"{self.name}: {v} is out of range{self._range_text()}")
        return v

    def _range_text(self) -> str:
        if self.type is bool:
            return " (true/false)"
        lo = "-inf" if self.min is None else _fmt(self.min)
        hi = "inf" if self.max is None else _fmt(self.max)
        return f" (allowed {lo}..{hi})"

    def describe(self) -> dict:
        return {
            "name": self.name,
            "type": self.type.__name__,
            "default": self.default,
            "min": self.min,
            "max": self.max,
            "help": self.help,
        }


def _fmt(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


@dataclass(frozen=True)
class Observation:
    """The outcome of one iteration, as the policy sees it."""

    k: int  # K the policy asked for
    drafted: int  # tokens the drafter actually proposed (<= k)
    accepted: int  # drafted tokens the target accepted
    draft_s: float
    verify_s: float
    iter_s: float  # whole iteration: draft + verify + bookkeeping
    unique_experts: float | None = None  # mean unique experts per MoE layer, None if unknown
    # shadow drafts (Decision.shadow): drafted without being verified, compared with what the
    # target then writes. ``shadowed``: tokens shadow-drafted in this iteration (their time is in
    # draft_s); ``shadow_checked`` / ``shadow_matched``: a shadow draft resolved in this iteration
    # (positions compared, and how many matched before the first miss: like drafted / accepted)
    shadowed: int = 0
    shadow_checked: int = 0
    shadow_matched: int = 0

    @property
    def emitted(self) -> int:
        return self.accepted + 1


@dataclass(frozen=True)
class Decision:
    k: int
    phase: str  # "off", "static", "base", "test", "set", "adaptive"
    reason: str = ""  # why the policy is here, one line (shown in transition logs)
    # with k == 0: draft this many tokens without verifying them, to see whether the drafter
    # would agree with what the target writes next (greedy requests only; the engine reports
    # ``Observation.shadowed`` = 0 where it does not shadow, e.g. when sampling)
    shadow: int = 0


PHASES = ("off", "static", "base", "test", "set", "adaptive")


def shown_phase(phase: str, k: int) -> str:
    """The phase a user should see: a set (or static) phase at K = 0 is speculation switched off."""
    if phase in ("set", "static") and k == 0:
        return "off"
    return phase or "off"


class Policy(ABC):
    """Base class: parameter storage and validated live updates."""

    name: str = "policy"
    summary: str = ""  # one line for help texts and the TUI
    PARAMS: tuple[Param, ...] = ()

    def __init__(self, **overrides: Any):
        self._spec = {p.name: p for p in self.PARAMS}
        self._values = {p.name: p.default for p in self.PARAMS}
        for key, value in overrides.items():  # hooks run only once the subclass is built
            key = self._check_key(key)
            self._values[key] = self._spec[key].coerce(value)
        self._validate_all()

    # -- parameters -------------------------------------------------------------------------
    @property
    def spec(self) -> dict[str, Param]:
        return dict(self._spec)

    @property
    def params(self) -> dict[str, Any]:
        return dict(self._values)

    def get(self, key: str) -> Any:
        return self._values[self._check_key(key)]

    def describe(self) -> list[dict]:
        """Every parameter, for a UI: name, type, default, min, max, help and current value."""
        return [{**p.describe(), "value": self._values[p.name]} for p in self.PARAMS]

    def check(self, key: str, value: Any) -> Any:
        """What :meth:`set` would store for ``value``, without changing anything; raises
        :class:`PolicyError` with the reason a value would be refused."""
        key = self._check_key(key)
        new = self._spec[key].coerce(value)
        old = self._values[key]
        self._values[key] = new
        try:
            self._validate_all()
        finally:
            self._values[key] = old
        return new

    def set(self, key: str, value: Any) -> Any:
        """Validate and apply one parameter; on any error the old value stays and
        :class:`PolicyError` says why. Returns the new value."""
        new = self.check(key, value)
        key = self._check_key(key)
        self._values[key] = new
        self._on_param_change(key)
        return new

    def _check_key(self, key: str) -> str:
        if key not in self._spec:
            known = ", ".join(sorted(self._spec)) or "none"
            raise PolicyError(f"policy {self.name!r} has no parameter {key!r} (known: {known})")
        return key

    def _validate_all(self) -> None:
        """Cross-parameter checks; raise PolicyError. Override where parameters interact."""

    def _on_param_change(self, key: str) -> None:
        """Hook for policies that derive state from parameters."""

    @property
    def label(self) -> str:
        """How the policy is named on the command line (``static:3``, ``cascade``)."""
        return self.name

    # -- decisions --------------------------------------------------------------------------
    @abstractmethod
    def decide(self) -> Decision:
        """K for the next iteration and the phase it belongs to."""

    @abstractmethod
    def observe(self, obs: Observation) -> None:
        """Learn from the iteration that ran with the last decided K."""

    def reset(self) -> None:
        """Start a new request (forget per-request state, keep parameters)."""

    def utility(self) -> float | None:
        """Current estimate of the speculation utility of the K in use (None if unknown)."""
        return None

    # -- state, for live UIs and recordings ------------------------------------------------
    def measured_utilities(self) -> dict[int, float]:
        """The utility this policy measured for each K it tried (empty if it measures none)."""
        return {}

    def t_base(self) -> float | None:
        """Its estimate of a K = 0 iteration's time in seconds (None if it keeps none)."""
        return None

    def backoff(self) -> int | None:
        """Iterations it will run without speculation before it tests again (None: no back-off
        in force)."""
        return None

    def state(self) -> dict[str, Any]:
        """A JSON-ready snapshot: policy, phase, K, reason, utility per K, t_base, back-off, plus
        what the policy adds in :meth:`_state_extra`."""
        d = self.decide()
        return {
            "policy": self.label,
            "phase": d.phase,
            "k": d.k,
            "reason": d.reason,
            "utilities": {str(k): u for k, u in sorted(self.measured_utilities().items())},
            "t_base": self.t_base(),
            "backoff": self.backoff(),
            **self._state_extra(),
        }

    def _state_extra(self) -> dict[str, Any]:
        return {}
