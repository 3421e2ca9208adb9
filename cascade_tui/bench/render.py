"""Showing a :class:`BenchReport`: the Rich table, the summary and recommendation lines, JSON."""

from __future__ import annotations

import json
import os
from pathlib import Path

from cascade_tui.bench.runner import BenchError, BenchReport
from cascade_tui.stats import fmt as _fmt


def check_writable(path: str | Path, what: str) -> Path:
    """Fail early (before any model loads) if ``path`` cannot be written."""
    p = Path(path)
    if p.is_dir():
        raise BenchError(f"{what} {p} is a directory")
    parent = p.parent if str(p.parent) else Path(".")
    if not parent.is_dir():
        raise BenchError(f"cannot write {what} {p}: directory {parent} does not exist")
    if p.exists() and not os.access(p, os.W_OK) or not p.exists() and not os.access(parent, os.W_OK):
        raise BenchError(f"cannot write {what} {p}: permission denied")
    return p


def write_json(report: BenchReport, path: str | Path) -> Path:
    p = Path(path)
    try:
        p.write_text(json.dumps(report.to_dict(), indent=2) + "\n", encoding="utf-8")
    except OSError as e:
        raise BenchError(f"cannot write {p}: {e.strerror or e}") from None
    return p




def render_table(report: BenchReport):
    from rich.table import Table

    title = f"bench: {Path(report.model).name} + draft {Path(report.draft).name if report.draft not in ('ngram', 'none') else report.draft}"
    title += f", {report.max_tokens} tokens/prompt, greedy"
    if report.rounds > 1:
        title += f", {report.rounds} rounds (n: requests)"
    if report.interrupted:
        title += f"  [bold red]PARTIAL: {len(report.runs)} of {report.runs_planned} runs[/]"
    from rich import box

    t = Table(title=title, box=box.SIMPLE_HEAD, show_edge=False, padding=(0, 1), collapse_padding=True, pad_edge=False,
              caption="vs off: tokens/s ratio on the same prompts; accept: accepted/drafted; uniq: unique "
                      "experts per MoE layer per iteration; capture: routing capture time, kept out of tok/s, "
                      "as a share of it; = off: greedy output identical to off")
    for name, just in (("workload", "left"), ("policy", "left"), ("n", "right"), ("tok/s", "right"),
                       ("vs off", "right"), ("accept", "right"), ("mean K", "right"), ("uniq", "right"),
                       ("capture", "right"), ("tokens", "right"), ("= off", "center")):
        t.add_column(name, justify=just, no_wrap=True)
    results = report.results()
    best: dict[str, str] = {r.workload: r.policy for r in report.recommendations()}
    prev = None
    for a in results:
        if prev is not None and a.workload != prev:
            t.add_section()
        prev = a.workload
        speed = _fmt(a.speedup_vs_off, ".2f") + ("x" if a.speedup_vs_off is not None else "")
        if a.policy == best.get(a.workload):
            speed = f"[bold green]{speed}[/]"
        elif a.speedup_vs_off is not None and a.speedup_vs_off < 1.0:
            speed = f"[red]{speed}[/]"
        same = {True: "yes", False: "[bold red]NO[/]", None: "-"}[a.identical_to_off]
        t.add_row(a.workload, a.policy, str(a.prompts), f"{a.tokens_per_s:.1f}", speed,
                  _fmt(a.acceptance_rate, ".0%"), f"{a.mean_k:.2f}", _fmt(a.mean_unique_experts, ".2f"),
                  _fmt(a.capture_share if a.capture_s else None, ".1%"), str(a.generated_tokens), same)
    return t


def summary_lines(report: BenchReport) -> list[str]:
    s = report.summary()
    lines = []
    for w, src in report.sources.items():
        lines.append(f"prompts: {w}: {len(report.workloads[w])} from {src}")
    for r in report.empty_requests():
        preview = r.prompt.strip().splitlines()[0][:50] if r.prompt.strip() else "(empty)"
        lines.append(f"NOTE: {r.workload} #{r.prompt_index + 1} generated no tokens (stop: {r.stop_reason}): "
                     f"{preview!r}")
    for w in report.empty_workloads():
        lines.append(f"WARNING: {w}: no prompt generated any token; nothing was measured, so it is left out "
                     "of the table, the summary and the recommendation")
    for pol, ps in s["policies"].items():
        if ps["worst_speedup_vs_off"] is not None:
            per = ", ".join(f"{w} {v:.2f}x" for w, v in ps["speedup_vs_off"].items())
            lines.append(f"{pol} vs off: worst {ps['worst_speedup_vs_off']:.2f}x ({per})")
            if ps.get("speedup_vs_off_per_round"):
                per = ", ".join(f"{w} " + "/".join(f"{x:.2f}" for x in v)
                                for w, v in ps["speedup_vs_off_per_round"].items())
                lines.append(f"{pol} vs off in each of {report.rounds} rounds: {per}")
        vs = ps["vs_best_static"]
        if vs["min"] is not None:
            per = ", ".join(f"{w} {v['ratio']:.2f}x of {v['best_static']}" for w, v in vs["per_workload"].items())
            lines.append(f"{pol} vs best static K: min {vs['min']:.2f}x ({per})")
    for pol, chk in report.utility_check().items():
        if not chk["points"]:
            continue
        pts = ", ".join(f"{p['workload']} K={p['k']} {p['predicted']:.2f}/{p['realized']:.2f}" for p in chk["points"])
        r2 = "" if chk["r2"] is None else f", R^2 {chk['r2']:.2f}"
        lines.append(f"{pol} predicted utility / static:K's realized speedup{r2}: {pts}")
        if chk.get("r2_last") is not None:
            last = ", ".join(f"{p['workload']} K={p['k']} {p['predicted_last']:.2f}" for p in chk["points"])
            lines.append(f"{pol} after the workload (last prediction), R^2 {chk['r2_last']:.2f}: {last}")
    captured = sum(r.capture_s for r in report.runs)
    if captured:
        decode = sum(r.decode_s for r in report.runs)
        lines.append(f"routing capture: {captured * 1e3:.1f} ms in all ({captured / decode:.1%} of decode time), "
                     "timed apart and kept out of every tok/s and speedup above")
    if s["all_identical_to_off"] is False:
        bad = sorted({f"{r.workload} #{r.prompt_index + 1} {r.policy}" for r in report.runs if r.identical_to_off is False})
        lines.append("WARNING: greedy output differed from off in: " + ", ".join(bad))
    elif s["all_identical_to_off"]:
        lines.append("every policy produced exactly the tokens of off (greedy, lossless)")
    for sk in report.skipped:
        lines.append(f"skipped {sk['workload']} #{sk['prompt_index'] + 1}: {sk['reason']}")
    lines.append("recommendation:")
    lines.extend(f"  {r.text}" for r in report.recommendations())
    if report.interrupted:
        lines.append(f"PARTIAL RESULTS: interrupted after {len(report.runs)} of {report.runs_planned} runs")
    return lines
