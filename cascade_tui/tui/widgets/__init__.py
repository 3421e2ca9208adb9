"""One widget per file; each has ``show(state)`` that redraws it from a :class:`ViewState`."""

from cascade_tui.tui.widgets.chat import ChatView
from cascade_tui.tui.widgets.heatmap import ExpertHeatmap
from cascade_tui.tui.widgets.kchart import KChart
from cascade_tui.tui.widgets.log import TransitionLog
from cascade_tui.tui.widgets.phases import PhaseStrip
from cascade_tui.tui.widgets.policy import PolicyPanel
from cascade_tui.tui.widgets.stats import StatsPanel
from cascade_tui.tui.widgets.status import StatusLine
from cascade_tui.tui.widgets.utility import UtilityChart

__all__ = ["ChatView", "ExpertHeatmap", "KChart", "PhaseStrip", "PolicyPanel", "StatsPanel", "StatusLine",
           "TransitionLog", "UtilityChart"]
