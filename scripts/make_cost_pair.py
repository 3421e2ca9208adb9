#!/usr/bin/env python3
"""Write a cost-realistic MoE target and drafters of chosen greedy agreement (issue 10).

The target's verify cost follows the union of the experts its tokens route to, as a real
Mixtral's does; each drafter agrees with the target's greedy next token on a fraction
``--agreement`` of tokens. See :mod:`cascade_tui.factory.cost_pair` for the construction.

    python scripts/make_cost_pair.py --size cpu --agreement 0.5,0.8,0.95,1.0 --out /tmp/cost-pair

Files already in ``--out`` that this generator wrote with the same arguments are kept (``--force``
rewrites them), so adding a drafter to a big target only writes the drafter. Sizes: tiny (tests,
a few MB), cpu-small (~0.3 GB), cpu (~1.2 GB), gpu-small (~5.8 GB), gpu (~23 GB; about 0.5 GB of
RAM while writing, several minutes).
"""

from __future__ import annotations

import argparse
import shlex
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cascade_tui.factory.cost_pair import SIZES, size_bytes, write_cost_pair  # noqa: E402


def _agreements(text: str) -> list[float]:
    try:
        vals = [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a comma-separated list of numbers: {text!r}")
    if not vals or any(not 0.0 <= v <= 1.0 for v in vals):
        raise argparse.ArgumentTypeError("agreements must be numbers in [0, 1]")
    return vals


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", choices=list(SIZES), default="cpu")
    ap.add_argument("--agreement", type=_agreements, default=[0.5, 0.8, 0.95, 1.0],
                    help="comma-separated greedy agreements, one drafter each (default 0.5,0.8,0.95,1.0)")
    ap.add_argument("--out", type=Path, default=Path("/tmp/cost-pair"))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--force", action="store_true", help="rewrite files that are already there")
    ap.add_argument("--threads", type=int, default=1, help="--threads for the printed bench command")
    args = ap.parse_args(argv)

    from rich.console import Console
    from rich.progress import (BarColumn, DownloadColumn, Progress, TextColumn, TimeElapsedColumn,
                               TimeRemainingColumn, TransferSpeedColumn)

    console = Console(soft_wrap=True, highlight=False)  # paths and commands stay on one line
    tb, db = size_bytes(args.size)
    need = tb + db * len(args.agreement)
    args.out.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(args.out).free
    if free < need * 1.05:
        console.print(f"[red]{args.out}: {free / 1e9:.1f} GB free, the pair needs {need / 1e9:.1f} GB[/]")
        return 1
    console.print(f"size [bold]{args.size}[/]: {SIZES[args.size].note}; target {tb / 1e6:,.0f} MB, "
                  f"drafter {db / 1e6:,.1f} MB each")

    t0 = time.perf_counter()
    with Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
                  TransferSpeedColumn(), TimeElapsedColumn(), TimeRemainingColumn(),
                  console=console, transient=False) as bar:
        task = bar.add_task("writing", total=None)

        def progress(done: int, total: int, label: str) -> None:
            bar.update(task, completed=done, total=max(total, 1), description=label)

        pair = write_cost_pair(args.out, size=args.size, agreement=args.agreement, seed=args.seed,
                               progress=progress, reuse=not args.force)
    dt = time.perf_counter() - t0

    def state(p: Path) -> str:
        return "written" if p in pair.written else "reused"

    console.print(f"target  {pair.target}  ({pair.target.stat().st_size / 1e6:,.1f} MB, {state(pair.target)})")
    for a, p in pair.drafters.items():
        console.print(f"drafter agreement {a:g}: {p}  ({p.stat().st_size / 1e6:,.1f} MB, {state(p)})")
    console.print(f"{len(pair.written)} file(s) written in {dt:.1f} s")
    console.print("\nbench each drafter (greedy; expected acceptance per drafted token = its agreement):")
    for a, p in pair.drafters.items():
        cmd = ["cascade-tui", "bench", "--model", str(pair.target), "--draft", str(p),
               "--policies", "off,static:1,static:2,static:4,cascade", "--threads", str(args.threads),
               "--json", str(args.out / f"bench-{args.size}-a{a:g}.json")]
        console.print("  " + shlex.join(cmd))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
