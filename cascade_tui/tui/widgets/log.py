"""Every transition with its reason: phases, parameter changes, turns, errors."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import RichLog

STYLE = {"turn": "bold", "phase": "", "param": "cyan", "error": "bold red", "end": "dim", "marker": "magenta"}


class TransitionLog(RichLog):
    DEFAULT_CSS = """
    TransitionLog { height: 1fr; }
    """

    def __init__(self, **kw):
        super().__init__(max_lines=1000, wrap=True, markup=False, highlight=False, **kw)
        self._shown = 0  # log lines of the state already written
        self._first = None

    def show(self, state) -> None:
        lines = list(state.log)
        total = state.log_total
        new = total - self._shown
        if new < 0 or new > len(lines):  # cleared (replay went back) or more than fits: redraw
            self.clear()
            new = len(lines)
        for ln in lines[len(lines) - new:] if new else []:
            t = Text(f"#{ln.n:<5} ", style="dim")
            t.append(ln.text, style=STYLE.get(ln.kind, ""))
            self.write(t)
        self._shown = total
