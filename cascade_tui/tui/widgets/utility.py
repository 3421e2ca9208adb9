"""Utility per iteration as a line chart with the U = 1 break-even line, and beside it the
utility the policy measured for each K it tested (bars against the same U = 1 mark).

The line is drawn in braille dots (2 x 4 per cell) by hand: a chart library re-laid out the whole
plot on every frame and cost a third of the TUI's drawing time."""

from __future__ import annotations

from rich.style import Style
from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.strip import Strip
from textual.widget import Widget
from textual.widgets import Static

from cascade_tui.tui.widgets.cells import fg, strip
from cascade_tui.tui.widgets.palette import BAD, GOOD, utility_colour

BAR = 12  # characters of the longest per-K bar


def braille(values: list[float], width: int, height: int, vmax: float) -> list[list[int]]:
    """Dot masks (``chr(0x2800 + mask)``) of a line through ``values`` (two per cell column, newest
    last) on a ``height`` x ``width`` grid scaled to 0..``vmax``; consecutive points are joined."""
    grid = [[0] * width for _ in range(height)]
    levels = 4 * height
    prev = None
    start = max(0, 2 * width - len(values))  # right-aligned
    for i, v in enumerate(values[-2 * width:]):
        x = start + i
        lvl = min(levels - 1, max(0, round(v / vmax * (levels - 1))))
        lo, hi = (lvl, lvl) if prev is None else (min(prev, lvl), max(prev, lvl))
        for level in range(lo, hi + 1):
            row = levels - 1 - level
            grid[row // 4][x // 2] |= _DOT[x % 2][row % 4]
        prev = lvl
    return grid


_DOT = ((0x01, 0x02, 0x04, 0x40), (0x08, 0x10, 0x20, 0x80))
AXIS = 5


class UtilityPlot(Widget):
    """U per iteration (cyan braille line, newest on the right) over a red U = 1 line."""

    DEFAULT_CSS = """
    UtilityPlot { width: 1fr; height: 1fr; }
    """

    def __init__(self, **kw):
        super().__init__(**kw)
        self.values: list[float] = []
        self._strips: list[Strip] = []
        self._key = None

    def show(self, state) -> None:
        pts = [p for p in state.points if p.utility is not None]
        self.values = [p.utility for p in pts]
        self.span = (pts[0].n, pts[-1].n) if pts else None
        self._key = None
        self.refresh()

    def _build(self, width: int, height: int) -> list[Strip]:
        base = self.rich_style
        cols = max(1, width - AXIS)
        vmax = max([2.0] + [v * 1.1 for v in self.values[-2 * cols:]])
        grid = braille(self.values, cols, height, vmax)
        one_level = round(1.0 / vmax * (4 * height - 1))
        one_row = 4 * height - 1 - one_level
        line_cell, line_bit = one_row // 4, _DOT[0][one_row % 4] | _DOT[1][one_row % 4]
        strips = []
        for y in range(height):
            label = f"{vmax:.1f}" if y == 0 else ("1.0" if y == line_cell else ("0" if y == height - 1 else ""))
            cells: list[tuple[str, Style | None]] = [(label.rjust(AXIS - 1) + " ", fg("#8a8a8a"))]
            for mask in grid[y]:
                if mask:
                    cells.append((chr(0x2800 + mask), fg("#4fc3d7")))
                elif y == line_cell:
                    cells.append((chr(0x2800 + line_bit), fg(BAD)))
                else:
                    cells.append((" ", None))
            strips.append(strip(cells, base, width))
        return strips

    def render_line(self, y: int) -> Strip:
        key = (self.size.width, self.size.height, len(self.values), self.values[-1] if self.values else None,
               self.rich_style)
        if key != self._key:
            self._strips = self._build(self.size.width, self.size.height)
            self._key = key
        return self._strips[y] if y < len(self._strips) else Strip.blank(self.size.width, self.rich_style)


class UtilityByK(Static):
    """``K=3 ███████│██ 1.52``: the bar's ``│`` is U = 1."""

    DEFAULT_CSS = """
    UtilityByK { width: 26; height: 1fr; padding: 0 1; }
    """

    def show(self, state) -> None:
        t = Text(no_wrap=True)
        t.append("U measured per K\n", style="dim")
        us = state.utilities
        if not us:
            t.append("(none tested yet)", style="dim")
        top = max([2.0] + list(us.values()))
        one = round(BAR / top)  # where U = 1 falls
        for k in sorted(us):
            u = us[k]
            n = max(0, min(BAR, round(u / top * BAR)))
            bar = "".join(("│" if i == one and i >= n else "█" if i < n else " ") for i in range(BAR))
            mark = " ◀" if k == state.policy_k and state.phase in ("set", "test") else ""
            t.append(f"K={k:<2} ")
            t.append(bar[:one], style=GOOD if u >= 1 else BAD)
            t.append(bar[one:], style=GOOD if u >= 1 else BAD)
            t.append(f" {u:.2f}", style=utility_colour(u))
            t.append(mark + "\n")
        tb = state.t_base
        if tb:
            t.append(f"t_base {tb * 1e3:.2f} ms", style="dim")
        self.update(t, layout=False)


class UtilityChart(Horizontal):
    DEFAULT_CSS = """
    UtilityChart { height: 9; }
    """

    def compose(self) -> ComposeResult:
        yield UtilityPlot(id="utility-plot")
        yield UtilityByK(id="utility-by-k")

    def show(self, state) -> None:
        self.query_one(UtilityPlot).show(state)
        self.query_one(UtilityByK).show(state)
