"""The policy's phase per iteration as a coloured strip (baseline / test / set / off), newest on
the right, with a legend."""

from __future__ import annotations

from rich.style import Style
from textual.strip import Strip
from textual.widget import Widget

from cascade_tui.tui.widgets.cells import bg, fg, strip
from cascade_tui.policy import shown_phase
from cascade_tui.tui.widgets.palette import PHASE_COLOURS

LEGEND = ("base", "test", "set", "off", "static", "adaptive")


class PhaseStrip(Widget):
    DEFAULT_CSS = """
    PhaseStrip { height: 2; }
    """

    def __init__(self, **kw):
        super().__init__(**kw)
        self.phases: list[str] = []

    def show(self, state) -> None:
        self.phases = [shown_phase(p.phase, p.k) for p in state.points]
        self.refresh()

    def render_line(self, y: int) -> Strip:
        width = self.size.width
        base = self.rich_style
        if y == 0:
            view = self.phases[-width:]
            cells: list[tuple[str, Style | None]] = [(" ", bg(PHASE_COLOURS.get(p, "#8a8a8a"))) for p in view]
            return strip(cells, base, width)
        if y == 1:
            present = set(self.phases)
            cells = []
            for name in LEGEND:
                if name in present or name in ("base", "test", "set", "off"):
                    cells += [("■", fg(PHASE_COLOURS[name])), (f" {name}  ", fg("#8a8a8a"))]
            return strip(cells, base, width)
        return strip([], base, width)
