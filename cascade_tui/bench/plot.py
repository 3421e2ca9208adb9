"""``bench --plot``: speedup over plain decoding against the draft length K, one line per workload.

Static K points (with ``off`` at K = 0, speedup 1.0) form each workload's curve; Cascade's measured
speedup is a dashed horizontal line in the same colour with a diamond at its mean K, ``learned``'s
a dash-dotted one with a square; the heuristic policy is a star at its mean K (any other adaptive
policy a triangle). matplotlib is imported lazily, without pyplot, on
the Agg canvas (no display needed).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from cascade_tui.bench.runner import BenchError, BenchReport

PLOT_SUFFIXES = (".png", ".svg", ".pdf")
#: how each adaptive policy is drawn: marker at its mean K, and the line style of its level (None: none)
MARKERS = {"cascade": ("D", "--"), "learned": ("s", "-."), "heuristic": ("*", None)}
MATPLOTLIB_HINT = "pip install matplotlib (or: pip install 'cascade-tui[bench]')"


def check_plot_support() -> None:
    if importlib.util.find_spec("matplotlib") is None:
        raise BenchError(f"--plot needs matplotlib, which is not installed: {MATPLOTLIB_HINT}")


def plot_report(report: BenchReport, path: str | Path) -> Path:
    check_plot_support()
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    path = Path(path)
    fig = Figure(figsize=(10, 5), dpi=120)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    colors = [f"C{i}" for i in range(10)]
    max_k = 1
    for idx, w in enumerate(report.workloads):
        c = colors[idx % len(colors)]
        pts = [(0, 1.0)] if report.aggregate(w, "off") else []
        for p in report.policies:
            if p.startswith("static:"):
                s = report.ratio(w, p, "off")
                if s is not None:
                    pts.append((int(p.split(":")[1]), s))
        pts.sort()
        if pts:
            ax.plot([k for k, _ in pts], [s for _, s in pts], "o-", color=c, label=f"{w}: static K (K=0: off)")
            max_k = max(max_k, pts[-1][0])
        for name in report.adaptive:
            marker, style = MARKERS.get(name, ("^", None))
            a = report.aggregate(w, name)
            s = report.ratio(w, name, "off")
            if a is None or s is None:
                continue
            if style:
                ax.axhline(s, color=c, linestyle=style, linewidth=1.2, alpha=0.8)
            ax.plot([a.mean_k], [s], marker, color=c, markersize=9 if marker == "*" else 7,
                    markeredgecolor="black", linestyle="none", label=f"{w}: {name} {s:.2f}x (mean K {a.mean_k:.1f})")
            max_k = max(max_k, a.mean_k)
    ax.axhline(1.0, color="grey", linewidth=0.8, linestyle=":")
    ax.set_xlabel("draft length K")
    ax.set_ylabel("speedup vs off (tokens/s ratio)")
    ax.set_xlim(-0.3, max_k + 0.5)
    title = f"{Path(report.model).name} + {Path(report.draft).name}, {report.max_tokens} tokens/prompt, greedy"
    if report.interrupted:
        title += " (PARTIAL)"
    ax.set_title(title, fontsize=9)
    ax.grid(True, alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    fig.tight_layout()
    fig.savefig(path)
    return path
