"""Expert heatmap: MoE layers (rows) x experts (columns), coloured by the share of the verify
batch's tokens routed to each expert (last iteration), or of a rolling window's tokens.

Beside each layer: its unique experts; below: the mean, and the expert weights the verify read
relative to a plain one-token step (which reads ``top-k`` experts per layer). This is the cost of
speculation on an MoE: K + 1 tokens route to the union of their experts.
"""

from __future__ import annotations

import numpy as np
from rich.style import Style
from textual.reactive import reactive
from textual.strip import Strip
from textual.widget import Widget

from cascade_tui.tui.widgets.cells import bg, fg, strip
from cascade_tui.tui.widgets.palette import HEAT

LABEL = 5  # "L00 "
SIDE = 6  # " u=12"


def _group(a: np.ndarray, n: int, axis: int) -> np.ndarray:
    """Fold ``a`` to at most ``n`` entries along ``axis`` (max within each group)."""
    size = a.shape[axis]
    if size <= n:
        return a
    edges = np.linspace(0, size, n + 1).astype(int)
    parts = [np.take(a, range(edges[i], max(edges[i] + 1, edges[i + 1])), axis=axis).max(axis=axis)
             for i in range(n)]
    return np.stack(parts, axis=axis)


class ExpertHeatmap(Widget):
    DEFAULT_CSS = """
    ExpertHeatmap { height: 1fr; min-height: 4; }
    """

    window: reactive[bool] = reactive(False)  # False: last iteration, True: rolling window

    def __init__(self, **kw):
        super().__init__(**kw)
        self.heat: np.ndarray | None = None
        self.unique: np.ndarray | None = None
        self.n_used = 0
        self.tokens = 0
        self.bytes_ratio: float | None = None
        self._state = None

    def show(self, state) -> None:
        self._state = state
        self._pick()
        self.refresh()

    def watch_window(self, _old: bool, _new: bool) -> None:
        self._pick()
        self.refresh()

    def _pick(self) -> None:
        s = self._state
        if s is None:
            return
        self.n_used = s.n_expert_used
        if self.window:
            self.heat, self.tokens = s.heat_sum, s.heat_tokens
            self.unique = None if s.heat_sum is None else (s.heat_sum > 0).sum(axis=1)
        else:
            self.heat = s.heat_now
            self.tokens = int(s.heat_now[0].sum()) // max(1, s.n_expert_used) if s.heat_now is not None else 0
            self.unique = s.unique_now
        self.bytes_ratio = s.bytes_ratio
        mode = "rolling window" if self.window else "last iteration"
        self.border_title = f"experts: {mode}, {self.tokens} tokens"

    def render_line(self, y: int) -> Strip:
        width, height = self.size.width, self.size.height
        base = self.rich_style
        heat = self.heat
        if heat is None or heat.size == 0:
            text = "no routing yet (a dense model, or --no-routing)" if y == 0 else ""
            return strip([(text, fg("#8a8a8a"))], base, width)
        layers, experts = heat.shape
        rows = max(1, height - 1)
        cols_avail = max(1, width - LABEL - SIDE)
        cell = 2 if experts * 2 <= cols_avail else 1
        grid = _group(_group(heat, rows, 0), cols_avail // cell, 1)
        uniq = _group(self.unique.reshape(-1, 1), rows, 0).reshape(-1) if self.unique is not None else None
        if y == grid.shape[0]:
            u = float(self.unique.mean()) if self.unique is not None else 0.0
            text = f"unique experts/layer {u:.1f} of {experts}"
            if self.bytes_ratio is not None and not self.window:
                text += f"; weights read {self.bytes_ratio:.1f}x a 1-token step"
            return strip([(text, fg("#8a8a8a"))], base, width)
        if y > grid.shape[0]:
            return strip([], base, width)
        norm = max(1, self.tokens)  # colour = share of the batch's (or window's) tokens
        first = y * layers // grid.shape[0]
        cells: list[tuple[str, Style | None]] = [(f"L{first:02d} "[:LABEL].ljust(LABEL), fg("#8a8a8a"))]
        for v in grid[y]:
            if v <= 0:
                cells.append(("·".ljust(cell), fg("#4a4a4a")))
            else:
                idx = min(len(HEAT) - 1, max(0, int(np.ceil(v / norm * len(HEAT))) - 1))
                cells.append((" " * cell, bg(HEAT[idx])))
        if uniq is not None:
            cells.append((f" u={int(uniq[y])}", fg("#8a8a8a")))
        return strip(cells, base, width)
