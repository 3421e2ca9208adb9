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
        self.update(status_text(state, note), layout=False)


def status_text(state, note: str = "") -> Text:
    """The status line for a :class:`cascade_tui.tui.state.ViewState`."""
    t = Text(no_wrap=True, overflow="ellipsis")
    if state.running:
        t.append("● generating  ", style="bold")
    # the K the policy chose and its U; the engine may have run fewer (the answer's last
    # tokens, the context's end): "K=16 (ran 0)" rather than "off K=0 U=1.68"
    k = state.policy_k
    phase = shown_phase(state.phase, k)
    t.append(f"{state.policy or '-'} ", style="bold")
    t.append(f" {phase} ", style=f"bold #000000 on {PHASE_COLOURS.get(phase, '#8a8a8a')}")
    t.append(f" K={k}")
    if state.k != k:
        t.append(f" (ran {state.k})", style="dim")
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
    return t
