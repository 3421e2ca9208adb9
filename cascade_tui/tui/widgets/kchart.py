"""Chosen K and accepted tokens, one column per iteration (newest on the right): a column is K
cells high, green where the draft was accepted, red where it was rejected; a K = 0 iteration is
a dim dot."""

from __future__ import annotations

from rich.style import Style
from textual.strip import Strip
from textual.widget import Widget

from cascade_tui.tui.widgets.cells import fg, strip
from cascade_tui.tui.widgets.palette import ACCEPTED, REJECTED

AXIS = 4  # columns for the y labels


class KChart(Widget):
    DEFAULT_CSS = """
    KChart { height: 6; }
    """

    def __init__(self, **kw):
        super().__init__(**kw)
        self.points: list = []

    def show(self, state) -> None:
        self.points = list(state.points)
        last = self.points[-1] if self.points else None
        text = f"last: K={last.k}, accepted {last.accepted}" if last else ""
        if last and last.k == 0 and state.shadow is not None:  # speculation off, the drafter watched
            text = f"last: K=0; shadow draft: {state.shadow[0]} of {state.shadow[1]} matched"
        self.border_subtitle = text
        self.refresh()

    def _view(self, width: int) -> list:
        return self.points[-max(0, width - AXIS):]

    def render_line(self, y: int) -> Strip:
        width, height = self.size.width, self.size.height
        base = self.rich_style
        pts = self._view(width)
        kmax = max([p.k for p in pts] + [1])
        scale = height / kmax  # rows per unit of K: the tallest draft fills the chart
        level = height - y  # 1 = bottom row
        label = f"{kmax:>3} " if y == 0 else ("  K " if y == height - 1 and height > 2 else "")
        cells: list[tuple[str, Style | None]] = [(label.ljust(AXIS)[:AXIS], fg("#8a8a8a"))]
        for p in pts:
            if p.k == 0:
                cells.append(("·" if level == 1 else " ", fg("#8a8a8a")))
                continue
            top = max(1, round(p.k * scale))
            acc = round(p.accepted * scale)
            if level <= acc:
                cells.append(("█", fg(ACCEPTED)))
            elif level <= top:
                cells.append(("█", fg(REJECTED)))
            else:
                cells.append((" ", None))
        return strip(cells, base, width)
