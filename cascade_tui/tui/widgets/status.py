"""One line under the chat: what the policy is doing right now (always visible, also when the
panels are folded away on a small terminal)."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

from cascade_tui.policy import shown_phase
from cascade_tui.tui.widgets.palette import PHASE_COLOURS, utility_colour


class StatusLine(Static):
    DEFAULT_CSS = """
    StatusLine { height: 1; padding: 0 1; background: $boost; }
    """

    def show(self, state, note: str = "") -> None:
        t = Text(no_wrap=True, overflow="ellipsis")
        if state.running:
            t.append("● generating  ", style="bold")
        phase = shown_phase(state.phase, state.k)
        t.append(f"{state.policy or '-'} ", style="bold")
        t.append(f" {phase} ", style=f"bold #000000 on {PHASE_COLOURS.get(phase, '#8a8a8a')}")
        t.append(f" K={state.k}")
        last = state.points[-1] if state.points else None
        u = last.utility if last else None
        t.append("  U=")
        t.append("-" if u is None else f"{u:.2f}", style=utility_colour(u))
        st = state.total
        if st.decode_s:
            t.append(f"  {st.tokens_per_s:,.0f} tok/s")
        sp = state.speedup
        if sp is not None:
            t.append(f"  {sp:.2f}x", style=utility_colour(sp))
            t.append(" vs no spec")
        if note:
            t.append(f"  {note}", style="dim")
        self.update(t, layout=False)
