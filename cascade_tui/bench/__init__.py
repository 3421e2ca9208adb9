"""``cascade-tui bench``: policies side by side on named prompt sets (DESIGN section 1).

``run_bench(models, workloads, policies, ...) -> BenchReport``; ``plot_report`` and the rendering
helpers live in submodules; the Typer command is ``cascade_tui.cli.bench``.
"""

from cascade_tui.bench.runner import (
    Aggregate,
    BenchError,
    BenchReport,
    Recommendation,
    RunResult,
    make_policies,
    modal_k,
    parse_policy_list,
    run_bench,
)

DEFAULT_POLICIES = "off,static:1,static:2,static:3,static:4,cascade,heuristic,learned"
DEFAULT_WORKLOADS = "code,extraction,math"
DEFAULT_PROMPTS_PER_WORKLOAD = 3
DEFAULT_MAX_TOKENS = 128

__all__ = [
    "DEFAULT_MAX_TOKENS",
    "DEFAULT_POLICIES",
    "DEFAULT_PROMPTS_PER_WORKLOAD",
    "DEFAULT_WORKLOADS",
    "Aggregate",
    "BenchError",
    "BenchReport",
    "Recommendation",
    "RunResult",
    "make_policies",
    "modal_k",
    "parse_policy_list",
    "run_bench",
]
