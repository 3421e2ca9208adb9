#!/usr/bin/env python3
"""Bench the cost-realistic pairs (``cascade_tui.factory.cost_pair``): agreement x policy.

Writes (or reuses) the target and one drafter per agreement, plus a *phased* drafter whose
acceptance changes along the text (easy and hard stretches of ``--phase-len`` tokens), runs
``cascade-tui bench`` on each in its own process (same prompts, policies interleaved per prompt),
and prints:

* the table speedup-vs-off per agreement and policy (Markdown, for docs/BENCHMARKS.md);
* each adaptive policy against the best static K;
* the utility check: the ``learned`` policy's predicted utility of K against the speedup static:K
  really reached, over every agreement and K, with R^2.

    python scripts/bench_cost_pairs.py --size cpu --out /tmp/cost-bench
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

POLICIES = "off,static:1,static:2,static:3,static:4,static:6,static:8,static:12,static:16,heuristic,cascade,learned"


def r_squared(pred, real):
    from cascade_tui.bench.runner import r_squared as r2

    return r2(pred, real)


def write_cycle_prompts(path: Path, target: Path, n: int, tokens: int, seed: int = 0) -> Path:
    """``n`` prompts whose continuations are different stretches of the target's text
    (:func:`cascade_tui.factory.cost_pair.cycle_prompts`), checked with the model's own tokenizer."""
    from backends.llamacpp.target import load_target
    from cascade_tui.factory.cost_pair import cycle_prompts

    t = load_target(target, n_threads=1, n_ctx=256, routing=False)
    try:
        prompts = cycle_prompts(n, tokens, lambda s: t.tokenize(s, add_bos=False, special=False), seed=seed)
    finally:
        t.close()
    path.write_text("".join(json.dumps({"prompt": p, "workload": "cycle"}) + "\n" for p in prompts))
    return path


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", default="cpu")
    ap.add_argument("--agreements", default="0.5,0.8,0.95,1")
    ap.add_argument("--phased", default="0.2", help="agreement of the hard stretches of the phased drafter ('' = none)")
    ap.add_argument("--phase-len", type=int, default=48)
    ap.add_argument("--tokens", type=int, default=96)
    ap.add_argument("--prompts", type=int, default=3)
    ap.add_argument("--prompt-set", choices=("cycle", "code"), default="cycle",
                    help="cycle: prompts whose texts are different stretches of the target's cycle (default); "
                         "code: the built-in code prompts, whose first four all continue with the same text")
    ap.add_argument("--policies", default=POLICIES)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=1, help="passed to bench: the whole schedule this many times")
    ap.add_argument("--pairs", default="/tmp/cost-pair", help="where the GGUFs are written (reused)")
    ap.add_argument("--out", default="/tmp/cost-bench")
    ap.add_argument("--plot", default=None, help="speedup vs agreement chart (.png/.svg)")
    a = ap.parse_args(argv)

    from cascade_tui.factory.cost_pair import drafter_filename, write_cost_drafter, write_cost_pair

    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    pairs = Path(a.pairs) / a.size
    agreements = [float(x) for x in a.agreements.split(",") if x.strip()]
    pair = write_cost_pair(pairs, size=a.size, agreement=agreements)
    drafters = {f"{g:g}": pair.drafters[g] for g in agreements}
    if a.phased:
        g = float(a.phased)
        p = pairs / drafter_filename(a.size, g, 0, a.phase_len)
        if not p.is_file():
            write_cost_drafter(p, size=a.size, agreement=g, phase_len=a.phase_len)
        drafters[f"phased {a.phase_len}x(1/{g:g})"] = p

    if a.prompt_set == "cycle":
        prompt_args = ["--prompts", str(write_cycle_prompts(out / "cycle-prompts.jsonl", pair.target, a.prompts, a.tokens))]
    else:
        prompt_args = ["--workload", "code", "--prompt-source", "builtin", "--prompts-per-workload", str(a.prompts)]
    reports = {}
    for name, d in drafters.items():
        js = out / f"bench-{a.size}-{name.replace(' ', '_').replace('/', '-')}.json"
        cmd = [sys.executable, "-m", "cascade_tui", "bench", "--model", str(pair.target), "--draft", str(d),
               "--threads", str(a.threads), *prompt_args, "-n", str(a.tokens), "--rounds", str(a.rounds), "--policies", a.policies,
               "--json", str(js)]
        t0 = time.time()
        print(f"== agreement {name}: {' '.join(cmd[2:])}", flush=True)
        res = subprocess.run(cmd, capture_output=True, text=True)
        (out / (js.stem + ".log")).write_text(res.stdout + res.stderr)
        if res.returncode != 0:
            print(res.stdout[-2000:], res.stderr[-2000:], file=sys.stderr)
            return res.returncode
        print(res.stdout.split("\n  vs off")[0][-1800:], flush=True)
        print(f"   ({time.time() - t0:.0f} s)", flush=True)
        reports[name] = json.loads(js.read_text())

    labels = a.policies.split(",")
    print("\n| agreement | " + " | ".join(labels) + " |")
    print("|---|" + "---|" * len(labels))
    table = {}
    for name, rep in reports.items():
        sp = {r["policy"]: r["speedup_vs_off"] for r in rep["results"]}
        table[name] = sp
        print(f"| {name} | " + " | ".join("-" if sp.get(p) is None else f"{sp[p]:.2f}" for p in labels) + " |")
    print()
    for name, sp in table.items():
        statics = {p: v for p, v in sp.items() if p.startswith("static:") and v is not None}
        best = max(statics, key=statics.get)
        line = ", ".join(f"{p} {sp[p] / statics[best]:.2f}x" for p in ("heuristic", "cascade", "learned") if sp.get(p))
        print(f"agreement {name}: best static {best} {statics[best]:.2f}x off; vs it: {line}")

    pred, last, real, rows = [], [], [], []
    for name, rep in reports.items():
        for pol, chk in rep.get("utility_check", {}).items():
            for pt in chk["points"]:
                if pol == "learned" and not name.startswith("phased"):
                    pred.append(pt["predicted"])
                    last.append(pt.get("predicted_last", pt["predicted"]))
                    real.append(pt["realized"])
                    rows.append((name, pt["k"], pt["predicted"], last[-1], pt["realized"]))
    r2, r2_last = r_squared(pred, real), r_squared(last, real)
    print("\nlearned: predicted utility (mean over prompts / after the workload) vs static:K realized speedup")
    for name, k, p, q, r in rows:
        print(f"  agreement {name} K={k}: predicted {p:.2f} / {q:.2f}, realized {r:.2f}")
    print(f"R^2 = {r2:.3f} (mean), {r2_last:.3f} (after the workload) over {len(rows)} points"
          if r2 is not None and r2_last is not None else "R^2: too few points")
    summary = {"size": a.size, "tokens": a.tokens, "prompts": a.prompts, "prompt_set": a.prompt_set,
               "rounds": a.rounds, "threads": a.threads,
               "table": table, "utility_points": rows, "r2": r2, "r2_last": r2_last}
    (out / f"summary-{a.size}.json").write_text(json.dumps(summary, indent=2))
    if a.plot:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        steady = [n for n in table if not n.startswith("phased")]
        xs = [float(n) for n in steady]
        fig, ax = plt.subplots(figsize=(7, 4.2))
        for p in labels:
            if p == "off":
                continue
            ys = [table[n].get(p) for n in steady]
            style = "-o" if not p.startswith("static:") else ":."
            ax.plot(xs, ys, style, label=p, linewidth=2.2 if p in ("learned", "cascade", "heuristic") else 1)
        ax.axhline(1.0, color="grey", linewidth=0.8)
        ax.set_xlabel("drafter greedy agreement")
        ax.set_ylabel("speedup vs off (tokens/s)")
        ax.set_title(f"cost-realistic pair ({a.size}), {a.tokens} tokens x {a.prompts} prompts, {a.threads} thread")
        ax.legend(fontsize=7, ncol=3)
        fig.tight_layout()
        fig.savefig(a.plot, dpi=120)
        print(f"wrote {a.plot}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
