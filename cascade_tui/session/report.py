"""What ``cascade-tui sessions list | show | export`` print, computed from a recording alone.

``show`` gives the statistics ``run --json`` prints (same names and values for a ``run``
recording), in total and per turn. ``export`` writes a Chrome trace (opens in Perfetto and
chrome://tracing), a CSV with one row per iteration, or a Markdown report.
"""

from __future__ import annotations

import csv
import io
import json
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any, Iterable

from cascade_tui.machine import where_text
from cascade_tui.policy import shown_phase
from cascade_tui.stats import RunStats, run_summary, stats_by_turn, total_stats
from cascade_tui.stats import fmt as _fmt

EXPORT_FORMATS = ("chrome-trace", "csv", "markdown")
SUFFIXES = {"chrome-trace": ".trace.json", "csv": ".csv", "markdown": ".md"}


def show(header: dict, events: list, path: str) -> dict:
    """``{"session", "total", "turns"}``; ``total`` is what ``run --json`` printed for the run."""
    turns = stats_by_turn(events)
    return {
        "session": path,
        "total": run_summary(total_stats(events), header, path),
        "turns": [run_summary(t, header, path) for t in turns],
    }


def list_row(path: Path, header: dict, events: Iterable) -> dict:
    """One line of ``sessions list``: when, what, and how it went."""
    st = total_stats(events)
    model = header.get("model") or {}
    draft = header.get("draft") or {}
    return {
        "path": str(path),
        "created": header.get("created", ""),
        "model": Path(str(model.get("path") or "?")).name,
        "draft": Path(str(draft.get("name") or "?")).name if "/" in str(draft.get("name") or "") else draft.get("name"),
        "policy": (header.get("policy") or {}).get("name"),
        "turns": st.turns,
        "tokens": st.generated_tokens or len(st.emitted),
        "tokens_per_s": round(st.tokens_per_s, 3),
        "estimated_speedup": None if st.estimated_speedup is None else round(st.estimated_speedup, 4),
        "speculation_share": st.speculation_share,
    }


# -- exports ---------------------------------------------------------------------------------------
def _iterations(events: Iterable):
    turn = -1
    for ev in events:
        if ev.type == "turn":
            turn = ev.turn
        elif ev.type == "iteration":
            yield turn, ev


def chrome_trace(header: dict, events: list) -> dict:
    """Trace Event Format (JSON): iterations as slices with draft / verify children, K, utility,
    accepted tokens and unique experts as counter tracks, phases and turns as slices on their own
    tracks. Times in microseconds from the session's start."""
    pid = 1
    tracks = {"iterations": 1, "phases": 2, "turns": 3}
    out: list[dict[str, Any]] = [
        {"ph": "M", "pid": pid, "name": "process_name", "args": {"name": "cascade-tui session"}},
        *({"ph": "M", "pid": pid, "tid": tid, "name": "thread_name", "args": {"name": name}}
          for name, tid in tracks.items()),
        *({"ph": "M", "pid": pid, "tid": tid, "name": "thread_sort_index", "args": {"sort_index": tid}}
          for tid in tracks.values()),
    ]
    us = lambda s: round(s * 1e6, 3)  # noqa: E731
    phase_start, phase_name = None, None
    turn_start, turn_no = None, None
    end_t = 0.0
    for ev in events:
        end_t = max(end_t, ev.t)
        if ev.type == "iteration":
            start = ev.t - ev.iter_s
            args = {"k": ev.k, "drafted": len(ev.drafted), "accepted": ev.accepted, "emitted": len(ev.emitted),
                    "utility": ev.utility, "phase": ev.phase, "unique_experts": ev.unique_experts, "text": ev.text}
            out.append({"ph": "X", "pid": pid, "tid": 1, "name": f"K={ev.k}", "cat": "iteration",
                        "ts": us(start), "dur": us(ev.iter_s), "args": args})
            if ev.draft_s > 0:
                out.append({"ph": "X", "pid": pid, "tid": 1, "name": "draft", "cat": "draft",
                            "ts": us(start), "dur": us(ev.draft_s)})
            out.append({"ph": "X", "pid": pid, "tid": 1, "name": "verify", "cat": "verify",
                        "ts": us(start + ev.draft_s), "dur": us(min(ev.verify_s, ev.iter_s - ev.draft_s))})
            counters = {"K": ev.k, "accepted": ev.accepted}
            if ev.utility is not None:
                counters["utility"] = ev.utility
            if ev.unique_experts is not None:
                counters["unique experts / layer"] = ev.unique_experts
            for name, value in counters.items():
                out.append({"ph": "C", "pid": pid, "name": name, "ts": us(start), "args": {name: value}})
        elif ev.type == "phase":
            if phase_start is not None:
                out.append(_slice(pid, 2, phase_name, phase_start, ev.t, "phase"))
            phase_start, phase_name = ev.t, f"{ev.phase} K={ev.k}"
            out.append({"ph": "i", "pid": pid, "tid": 2, "name": ev.reason or ev.phase, "ts": us(ev.t), "s": "t"})
        elif ev.type == "turn":
            turn_start, turn_no = ev.t - ev.prefill_s, ev.turn
        elif ev.type == "end":
            if turn_start is not None:
                out.append(_slice(pid, 3, f"turn {turn_no + 1} ({ev.reason})", turn_start, ev.t, "turn"))
            turn_start = None
        elif ev.type in ("param", "marker", "error"):
            label = {"param": lambda e: f"{e.key} = {e.value}" + ("" if e.ok else f" refused: {e.error}"),
                     "marker": lambda e: e.label, "error": lambda e: f"error: {e.message}"}[ev.type](ev)
            out.append({"ph": "i", "pid": pid, "tid": 2, "name": label, "ts": us(ev.t), "s": "p"})
    if phase_start is not None:
        out.append(_slice(pid, 2, phase_name, phase_start, end_t, "phase"))
    model = header.get("model") or {}
    return {"traceEvents": out, "displayTimeUnit": "ms",
            "otherData": {"model": model.get("path"), "draft": (header.get("draft") or {}).get("name"),
                          "policy": (header.get("policy") or {}).get("name"), "created": header.get("created")}}


def _slice(pid: int, tid: int, name: str, t0: float, t1: float, cat: str) -> dict:
    return {"ph": "X", "pid": pid, "tid": tid, "name": name, "cat": cat, "ts": round(t0 * 1e6, 3),
            "dur": round(max(0.0, t1 - t0) * 1e6, 3)}


CSV_COLUMNS = ("turn", "index", "t_s", "k", "drafted", "accepted", "emitted", "draft_ms", "verify_ms", "iter_ms",
               "utility", "phase", "unique_experts", "n_past", "text")


def to_csv(events: list) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(CSV_COLUMNS)
    for turn, ev in _iterations(events):
        w.writerow([turn, ev.index, f"{ev.t:.6f}", ev.k, len(ev.drafted), ev.accepted, len(ev.emitted),
                    f"{ev.draft_s * 1e3:.4f}", f"{ev.verify_s * 1e3:.4f}", f"{ev.iter_s * 1e3:.4f}",
                    "" if ev.utility is None else f"{ev.utility:.4f}", ev.phase,
                    "" if ev.unique_experts is None else f"{ev.unique_experts:.3f}", ev.n_past, ev.text])
    return buf.getvalue()


def to_markdown(header: dict, events: list, path: str) -> str:
    rep = show(header, events, path)
    tot = rep["total"]
    model = header.get("model") or {}
    draft = header.get("draft") or {}
    pol = header.get("policy") or {}
    mach = header.get("machine") or {}
    lines = [
        f"# cascade-tui session {Path(path).name}",
        "",
        f"- created: {header.get('created', '?')} with cascade-tui {header.get('tool_version', '?')}",
        f"- model: `{model.get('path')}` ({model.get('arch')}, {model.get('n_layer')} layers, "
        f"{model.get('n_expert')} experts top-{model.get('n_expert_used')}, sha256 {str(model.get('sha256'))[:12]})",
        f"- drafter: `{draft.get('name')}`",
        f"- policy: `{pol.get('name')}` " + " ".join(f"{k}={v}" for k, v in (pol.get("params") or {}).items()),
        f"- machine: {where_text(mach)}",
        "",
        "## Statistics",
        "",
        "| | turns | tokens | tok/s | est. speedup vs no speculation | acceptance | mean K | iterations | stop |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|",
        f"| total | {len(rep['turns'])} | {tot['generated_tokens']} | {tot['tokens_per_s']:.1f} | "
        f"{_fmt(tot['estimated_speedup'], '.2f')}x | {_fmt(tot['acceptance_rate'], '.0%')} | {tot['mean_k']:.2f} | "
        f"{tot['iterations']} | {tot['stop_reason']} |",
    ]
    for i, t in enumerate(rep["turns"], 1):
        lines.append(f"| turn {i} | | {t['generated_tokens']} | {t['tokens_per_s']:.1f} | "
                     f"{_fmt(t['estimated_speedup'], '.2f')}x | {_fmt(t['acceptance_rate'], '.0%')} | {t['mean_k']:.2f} | "
                     f"{t['iterations']} | {t['stop_reason']} |")
    lines += ["", "## Phases", "", "| phase | iterations | share | mean K | acceptance | tok/s | mean utility |",
              "|---|---:|---:|---:|---:|---:|---:|"]
    by: dict[str, RunStats] = defaultdict(RunStats)
    n = 0
    for _, ev in _iterations(events):
        st = by[shown_phase(ev.phase, ev.k)]
        st.add(ev)
        st.generated_tokens += len(ev.emitted)
        n += 1
    for phase, st in sorted(by.items(), key=lambda kv: -kv[1].iterations):
        mu = st.utility_sum / st.utility_n if st.utility_n else None
        lines.append(f"| {phase} | {st.iterations} | {st.iterations / n:.0%} | {st.mean_k:.2f} | "
                     f"{_fmt(st.acceptance_rate, '.0%')} | {st.tokens_per_s:.1f} | {_fmt(mu, '.2f')} |")
    transitions = [ev for ev in events if ev.type == "phase"]
    if transitions:
        lines += ["", "## Transitions", ""]
        counts = Counter(ev.phase for ev in transitions)
        lines.append(", ".join(f"{counts[p]} to {p}" for p in counts) + ". The first ones:")
        lines.append("")
        lines += [f"- {ev.previous or 'start'} -> {ev.phase} (K={ev.k}): {ev.reason}" for ev in transitions[:12]]
    return "\n".join(lines) + "\n"


def export(header: dict, events: list, path: str, fmt: str) -> str:
    """The exported text of ``fmt`` (one of :data:`EXPORT_FORMATS`)."""
    if fmt == "chrome-trace":
        return json.dumps(chrome_trace(header, events), separators=(",", ":")) + "\n"
    if fmt == "csv":
        return to_csv(events)
    if fmt == "markdown":
        return to_markdown(header, events, path)
    raise ValueError(f"unknown export format {fmt!r} (choose {', '.join(EXPORT_FORMATS)})")
