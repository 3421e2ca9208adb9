"""Fixed speculation lengths: ``off`` (K = 0, plain decoding) and ``static:K``."""

from __future__ import annotations

from cascade_tui.policy.base import Decision, Observation, Param, Policy

MAX_K = 32


class StaticPolicy(Policy):
    name = "static"
    summary = "always draft K tokens"
    PARAMS = (Param("k", int, 3, 0, MAX_K, "draft length used for every iteration"),)

    @property
    def label(self) -> str:
        return f"static:{self.get('k')}"

    def decide(self) -> Decision:
        k = self.get("k")
        return Decision(k, "static" if k else "off", f"always K={k}" if k else "speculation disabled")

    def observe(self, obs: Observation) -> None:
        pass


class OffPolicy(StaticPolicy):
    """No speculation. Kept as its own name so ``--policy off`` reads as what it is."""

    name = "off"
    summary = "no speculation: plain decoding"
    PARAMS = (Param("k", int, 0, 0, 0, "always 0: speculation disabled"),)

    @property
    def label(self) -> str:
        return "off"
