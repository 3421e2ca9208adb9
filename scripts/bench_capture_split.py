#!/usr/bin/env python3
"""What routing capture costs that its callback cannot time: the graph split (issue 10).

With routing capture on, llama.cpp computes the graph up to each captured tensor (the top-k
experts of every MoE layer) separately, so the callback can read it. The callback times its own
copy (``capture_s``, kept out of every tok/s); the splits themselves run inside the verify. This
script measures them: the same eval of n tokens, capture paused and resumed on the same loaded
model (``set_routing``), in alternating order, the KV cache rolled back after each; it prints the
median of the paired differences (callback time subtracted) per n, in ms and as a share of the
eval without capture. If the split costs s(n), a speedup with capture on reads
``(c(1) + s(1)) / c(1) * c(n) / (c(n) + s(n))`` of the true one.

    python scripts/bench_capture_split.py [--model PATH] [--sizes 1,4,17] [--pairs 40] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import cascade_tui.runtime  # noqa: E402,F401  (llama.cpp before numpy, DESIGN section 6)

from cascade_tui.errors import UserError  # noqa: E402
from cascade_tui.runtime import ModelOptions, load_models  # noqa: E402

PROMPT = "def fibonacci(n):\n    \"\"\"Return the n-th Fibonacci number.\"\"\"\n"


def measure(target, sizes: list[int], pairs: int, prompt: str = PROMPT) -> list[dict]:
    """Per n, over ``pairs`` alternating pairs: the median eval time with capture on (its
    callback's own time subtracted) and off, the median paired difference (``split_ms``, the
    graph split), the callback's median own time (``callback_ms``, the copy of the experts) and
    both together as a share of the eval without capture (``total_share``: what capture costs)."""
    ctx = target.tokenize(prompt)
    target.truncate(0)
    target.eval(ctx)
    base = len(ctx)
    out = []
    for n in sizes:
        toks = (ctx * (n // max(len(ctx), 1) + 1))[:n]
        on: list[float] = []
        off: list[float] = []
        cb: list[float] = []
        for r in range(pairs):
            order = ((True, on), (False, off)) if r % 2 == 0 else ((False, off), (True, on))
            for flag, acc in order:
                target.set_routing(flag)
                t0 = time.perf_counter()
                res = target.eval(toks)
                acc.append(time.perf_counter() - t0 - (res.capture_s if flag else 0.0))
                if flag:
                    cb.append(res.capture_s)
                target.truncate(base)
        diff = statistics.median(a - b for a, b in zip(on, off))
        off_ms = 1e3 * statistics.median(off)
        cb_ms = 1e3 * statistics.median(cb)
        out.append({"n": n, "on_ms": round(1e3 * statistics.median(on), 4), "off_ms": round(off_ms, 4),
                    "split_ms": round(1e3 * diff, 4), "split_share": round(1e3 * diff / off_ms, 4) if off_ms else None,
                    "callback_ms": round(cb_ms, 4),
                    "total_share": round((1e3 * diff + cb_ms) / off_ms, 4) if off_ms else None})
    target.set_routing(True)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default=None, help="target GGUF (default: the bundled demo target)")
    ap.add_argument("--sizes", default="1,4,17", help="comma-separated token counts per eval")
    ap.add_argument("--pairs", type=int, default=40, help="alternating on/off pairs per size")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", default=None, help="also write the table here")
    a = ap.parse_args(argv)
    try:
        sizes = [int(x) for x in a.sizes.split(",") if x.strip()]
    except ValueError:
        print(f"error: --sizes must be comma-separated integers, not {a.sizes!r}", file=sys.stderr)
        return 2
    if not sizes or min(sizes) < 1 or a.pairs < 1:
        print("error: --sizes needs positive token counts and --pairs at least 1", file=sys.stderr)
        return 2
    try:
        models = load_models(ModelOptions(model=a.model, threads=a.threads, routing=True), need_drafter=False)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    target = models.target
    mode = getattr(target, "routing_mode", None)
    try:
        if mode is None or not hasattr(target, "set_routing"):
            print("error: this model has no MoE layers to capture (or capture could not be set up)", file=sys.stderr)
            return 2
        if max(sizes) + 64 >= target.n_ctx:
            print(f"error: the largest size must fit the context ({target.n_ctx} tokens)", file=sys.stderr)
            return 2
        rows = measure(target, sizes, a.pairs)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        models.close()
    print(f"routing capture ({mode}): graph-split cost per eval, {a.pairs} alternating pairs, "
          f"{a.threads} thread(s), {models.model_path}")
    print(f"{'n':>4} {'on ms':>9} {'off ms':>9} {'split ms':>9} {'share':>7} {'callback ms':>12} {'total':>7}")
    for r in rows:
        share = "-" if r["split_share"] is None else f"{r['split_share']:.1%}"
        total = "-" if r["total_share"] is None else f"{r['total_share']:.1%}"
        print(f"{r['n']:>4} {r['on_ms']:>9.3f} {r['off_ms']:>9.3f} {r['split_ms']:>9.3f} {share:>7} "
              f"{r['callback_ms']:>12.3f} {total:>7}")
    if len(rows) >= 2:
        lo, hi = rows[0], rows[-1]
        if lo["off_ms"] and hi["off_ms"]:
            bias = (lo["off_ms"] + lo["split_ms"]) / lo["off_ms"] * hi["off_ms"] / (hi["off_ms"] + hi["split_ms"])
            print(f"a speedup of n={hi['n']} over n={lo['n']} reads {bias - 1:+.1%} with capture on")
    if a.json:
        Path(a.json).write_text(json.dumps({"model": models.model_path, "mode": mode,
                                            "pairs": a.pairs, "threads": a.threads, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
