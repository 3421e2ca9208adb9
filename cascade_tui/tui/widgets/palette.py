"""Colours shared by the panels (readable on the dark and the light theme)."""

from __future__ import annotations

PHASE_COLOURS = {
    "base": "#5f87d7",  # measuring t_base (K = 0)
    "test": "#d7a700",  # trying K values
    "set": "#5faf5f",  # running the chosen K
    "off": "#8a8a8a",  # speculation off (a K = 0 set phase: back-off)
    "static": "#4fa8a8",
    "adaptive": "#a07fd0",
}
ACCEPTED = "#5faf5f"
REJECTED = "#d75f5f"
DRAFT_TEXT = "#5fbf5f"  # chat text that came from accepted drafts
HEAT = ["#1d3a4f", "#245b7c", "#2f7fa8", "#4fa3c7", "#8cc9df", "#f2c14e"]  # 1 .. many tokens
BAD = "#d75f5f"
GOOD = "#5faf5f"


def utility_colour(u: float | None) -> str:
    if u is None:
        return "#8a8a8a"
    return GOOD if u >= 1.0 else BAD
