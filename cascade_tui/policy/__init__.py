"""Speculation policies: pure decision logic (no I/O, no clock, no backend).

``make_policy("cascade")``, ``make_policy("static:3")``, ``make_policy("off")``,
``make_policy("heuristic", {"k_max": 8})``.
"""

from __future__ import annotations

from typing import Any, Mapping

from cascade_tui.policy.base import Decision, Observation, Param, Policy, PolicyError, shown_phase
from cascade_tui.policy.cascade import CascadePolicy
from cascade_tui.policy.heuristic import HeuristicPolicy
from cascade_tui.policy.learned import LearnedPolicy
from cascade_tui.policy.static import OffPolicy, StaticPolicy

POLICIES: dict[str, type[Policy]] = {
    "off": OffPolicy,
    "static": StaticPolicy,
    "cascade": CascadePolicy,
    "heuristic": HeuristicPolicy,
    "learned": LearnedPolicy,
}
DEFAULT_POLICY = "learned"  # what run, chat and the TUI start with unless told otherwise

__all__ = [
    "DEFAULT_POLICY",
    "POLICIES",
    "CascadePolicy",
    "Decision",
    "HeuristicPolicy",
    "LearnedPolicy",
    "Observation",
    "OffPolicy",
    "Param",
    "Policy",
    "PolicyError",
    "StaticPolicy",
    "make_policy",
    "parse_assignments",
    "shown_phase",
]


def make_policy(spec: str, overrides: Mapping[str, Any] | None = None) -> Policy:
    """Build a policy from its command-line name. ``static:K`` sets parameter ``k``."""
    name, _, arg = spec.strip().partition(":")
    name = name.lower()
    if name not in POLICIES:
        raise PolicyError(f"unknown policy {spec!r} (choose from: off, static:K, cascade, heuristic, learned)")
    params = dict(overrides or {})
    if arg:
        if name != "static":
            raise PolicyError(f"policy {name!r} takes no ':' argument (got {spec!r})")
        params["k"] = arg
    elif name == "static" and "k" not in params:
        raise PolicyError("static needs a draft length, e.g. static:3")
    return POLICIES[name](**params)


def parse_assignments(items: list[str] | None) -> dict[str, str]:
    """``["k_max=6", "tolerance=0.2"]`` -> dict; one clear error for a malformed item."""
    out: dict[str, str] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise PolicyError(f"--set expects KEY=VALUE, got {item!r}")
        out[key.strip()] = value.strip()
    return out
