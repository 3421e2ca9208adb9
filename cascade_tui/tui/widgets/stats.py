"""The numbers that say whether speculation pays: tokens/s, estimated speedup over no
speculation (from the measured K = 0 iteration time), acceptance, iterations."""

from __future__ import annotations

from rich.table import Table
from rich.text import Text
from textual.widgets import Static

from cascade_tui.stats import fmt as _fmt
from cascade_tui.tui.widgets.palette import BAD, GOOD


class StatsPanel(Static):
    DEFAULT_CSS = """
    StatsPanel { height: auto; padding: 0 1; }
    """

    def show(self, state) -> None:
        st = state.total
        sp = state.speedup
        t = Table.grid(padding=(0, 2), expand=True)
        for _ in range(6):
            t.add_column(justify="right")
        speed = Text(_fmt(sp, ".2f") + "x" if sp is not None else "-", style=(GOOD if sp and sp >= 1 else BAD) if sp else "")
        acc = st.acceptance_rate
        t.add_row(Text("tok/s", style="dim"), Text("vs no spec", style="dim"), Text("acceptance", style="dim"),
                  Text("mean K", style="dim"), Text("iterations", style="dim"), Text("tokens", style="dim"))
        t.add_row(f"{st.tokens_per_s:,.0f}" if st.decode_s else "-", speed,
                  "-" if acc is None else f"{acc:.0%}", f"{st.mean_k:.2f}" if st.iterations else "-",
                  f"{st.iterations:,}", f"{len(st.emitted):,}")
        self.update(t, layout=False)
