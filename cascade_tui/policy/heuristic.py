"""transformers' assisted-generation schedule ("heuristic"), kept as a peer to compare against:
after a fully accepted draft K grows by ``grow``, otherwise it shrinks by ``shrink``, bounded."""

from __future__ import annotations

from cascade_tui.policy.base import Decision, Observation, Param, Policy, PolicyError
from cascade_tui.policy.static import MAX_K


class HeuristicPolicy(Policy):
    name = "heuristic"
    summary = "transformers' assisted generation: K +2 after a fully accepted draft, -1 otherwise"
    PARAMS = (
        Param("k_init", int, 5, 1, MAX_K, "K at the start of each request"),
        Param("k_min", int, 1, 1, MAX_K, "smallest K"),
        Param("k_max", int, 16, 1, MAX_K, "largest K"),
        Param("grow", int, 2, 0, MAX_K, "K increase after a fully accepted draft"),
        Param("shrink", int, 1, 0, MAX_K, "K decrease after a rejection"),
    )

    def __init__(self, **overrides):
        super().__init__(**overrides)
        self._k = self.get("k_init")

    def _validate_all(self) -> None:
        if self.get("k_min") > self.get("k_max"):
            raise PolicyError(f"k_min ({self.get('k_min')}) must not exceed k_max ({self.get('k_max')})")

    def _on_param_change(self, key: str) -> None:
        self._k = min(max(self._k, self.get("k_min")), self.get("k_max"))

    def reset(self) -> None:
        self._k = min(max(self.get("k_init"), self.get("k_min")), self.get("k_max"))

    def decide(self) -> Decision:
        return Decision(self._k, "adaptive", f"K +{self.get('grow')} after a fully accepted draft, "
                                               f"-{self.get('shrink')} after a rejection")

    def observe(self, obs: Observation) -> None:
        if obs.drafted == 0:
            return  # nothing was proposed: no evidence either way
        if obs.accepted == obs.drafted:
            self._k += self.get("grow")
        else:
            self._k -= self.get("shrink")
        self._k = min(max(self._k, self.get("k_min")), self.get("k_max"))
