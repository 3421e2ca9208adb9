"""``cascade-tui sessions list | show | export | whatif``: recordings, without the model."""

import json
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from cascade_tui.cli.app import app
from cascade_tui.cli.options import SetOpt, fail
from cascade_tui.cli.replay import read_recording
from cascade_tui.stats import fmt as _fmt  # light: numpy-free at import

sessions_app = typer.Typer(help="Recorded sessions: list, show, export, what-if.", no_args_is_help=True)
app.add_typer(sessions_app, name="sessions")




def _console():
    """Rich console: the terminal's width, or 120 columns when the output is piped."""
    from rich.console import Console

    return Console(width=None if sys.stdout.isatty() else 120)


@sessions_app.command("list")
def list_(
    directory: Annotated[Path, typer.Argument(help="Where the recordings are.")] = Path("sessions"),
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """A table of the recordings in DIRECTORY: date, model, drafter, policy, turns, tokens, tokens/s, speedup."""
    from cascade_tui.session import SUFFIX, SessionFormatError, iter_session
    from cascade_tui.session.report import list_row

    if not directory.exists():
        raise fail(f"{directory}: no such directory")
    if not directory.is_dir():
        raise fail(f"{directory} is not a directory (for one recording use `cascade-tui sessions show {directory}`)")
    rows, skipped = [], []
    for path in sorted(directory.glob(f"*{SUFFIX}")):
        try:
            stream = iter_session(path)
            rows.append(list_row(path, stream.header, stream))
        except (SessionFormatError, OSError) as e:
            skipped.append(str(e))
    rows.sort(key=lambda r: r["created"])
    for s in skipped:
        typer.echo(f"cascade-tui: warning: skipped {s}", err=True)
    if json_out:
        typer.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        typer.echo(f"no recordings in {directory}")
        return
    from rich import box
    from rich.table import Table

    t = Table(title=f"sessions in {directory}", header_style="bold", box=box.SIMPLE_HEAD, pad_edge=False,
              caption="speedup: estimated vs no speculation (tokens/s x the measured time of a K=0 iteration)")
    for name, just in (("file", "left"), ("model", "left"), ("drafter", "left"), ("policy", "left"),
                       ("turns", "right"), ("tokens", "right"), ("tok/s", "right"), ("speedup", "right")):
        t.add_column(name, justify=just, no_wrap=name not in ("model", "drafter"), overflow="fold")
    for r in rows:
        t.add_row(Path(r["path"]).name, r["model"], str(r["draft"]), str(r["policy"]), str(r["turns"]),
                  str(r["tokens"]), f"{r['tokens_per_s']:.0f}",
                  "-" if r["estimated_speedup"] is None else f"{r['estimated_speedup']:.2f}x")
    _console().print(t)


@sessions_app.command()
def show(
    file: Annotated[Path, typer.Argument(help="A recording.")],
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON (the fields of run --json).")] = False,
) -> None:
    """The statistics `run --json` prints, per turn and in total."""
    from cascade_tui.session.report import show as report

    f = read_recording(file)
    rep = report(f.header, f.events, str(file))
    if json_out:
        typer.echo(json.dumps(rep, indent=2))
        return
    from rich import box
    from rich.table import Table

    from cascade_tui.tui.widgets.session_info import summary_line

    con = _console()
    con.print(summary_line(f.header))
    t = Table(header_style="bold", box=box.SIMPLE_HEAD, pad_edge=False,
              caption="speedup: estimated vs no speculation; spec: share of iterations with K > 0")
    for name in ("", "tokens", "tok/s", "speedup", "accept", "mean K", "iters", "spec", "stop"):
        t.add_column(name, justify="left" if name in ("", "stop") else "right", no_wrap=True)

    def row(label: str, s: dict) -> None:
        t.add_row(label, str(s["generated_tokens"]), f"{s['tokens_per_s']:.1f}",
                  "-" if s["estimated_speedup"] is None else f"{s['estimated_speedup']:.2f}x",
                  _fmt(s["acceptance_rate"], ".0%"), f"{s['mean_k']:.2f}", str(s["iterations"]),
                  _fmt(s["speculation_share"], ".0%"), s["stop_reason"])

    for i, s in enumerate(rep["turns"], 1):
        row(f"turn {i}", s)
    if len(rep["turns"]) != 1:
        t.add_section()
    row("total", rep["total"])
    con.print(t)
    phases = ", ".join(f"{k} {v}" for k, v in rep["total"]["phase_iterations"].items())
    con.print(f"iterations per phase: {phases}", highlight=False)


@sessions_app.command()
def export(
    file: Annotated[Path, typer.Argument(help="A recording.")],
    to: Annotated[str, typer.Option("--to", help="chrome-trace (Perfetto / chrome://tracing), csv or markdown.")],
    out: Annotated[Optional[Path], typer.Option("-o", "--output",
                                                help="Where to write ('-' = stdout). Default: next to FILE.")] = None,
) -> None:
    """Export a recording: a Chrome trace, a CSV with one row per iteration, or a Markdown report."""
    from cascade_tui.session.report import EXPORT_FORMATS, SUFFIXES, export as render

    fmt = to.strip().lower()
    if fmt not in EXPORT_FORMATS:
        raise fail(f"--to {to!r}: choose {', '.join(EXPORT_FORMATS)}")
    f = read_recording(file)
    text = render(f.header, f.events, str(file), fmt)
    if out is not None and str(out) == "-":
        sys.stdout.write(text)
        return
    name = file.name.removesuffix(".cascade.jsonl").removesuffix(".jsonl")
    dest = out or file.with_name(name + SUFFIXES[fmt])
    try:
        dest.write_text(text, encoding="utf-8")
    except OSError as e:
        raise fail(f"cannot write {dest}: {e.strerror or e}") from None
    typer.echo(f"wrote {dest}", err=True)


@sessions_app.command()
def whatif(
    file: Annotated[Path, typer.Argument(help="A recording.")],
    policy: Annotated[str, typer.Option("--policy", "-p", help="The policy to estimate: off, static:K, cascade, ...")],
    set_: SetOpt = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Estimate what another policy would have done on this recording (a model fitted to it, not a measurement)."""
    from cascade_tui.policy import PolicyError, make_policy, parse_assignments
    from cascade_tui.session.whatif import WhatIf

    try:
        params = parse_assignments(set_)
        make_policy(policy, params)
    except PolicyError as e:
        raise fail(str(e)) from None
    f = read_recording(file)
    try:
        w = WhatIf.from_events(f.header, f.events)
    except ValueError as e:
        raise fail(str(e)) from None
    rep = w.run(policy, params)
    if json_out:
        typer.echo(json.dumps(rep, indent=2))
        return
    cm, rec, pred, off = rep["cost_model"], rep["recorded"], rep["predicted"], rep["predicted_off"]
    echo = typer.echo
    echo(f"what-if for {file}: an ESTIMATE from a model fitted to the recording, not a measurement")
    echo(f"  cost model: {cm['text']}")
    echo(f"  fit: R^2 = {cm['r2']:.2f}, typical error {cm['typical_error']:.0%} of an iteration "
         f"({cm['iterations_fitted']} iterations; verify sizes seen: {', '.join(map(str, cm['verify_sizes_seen']))})")
    acc = rep["acceptance_per_position"]
    echo("  acceptance per draft position: " + (", ".join(f"{a:.2f}" for a in acc) if acc else "none drafted"))
    echo("")
    echo(f"  {'':34s} {'tok/s':>9s} {'vs off':>8s} {'mean K':>7s} {'iterations':>10s}")
    echo(f"  {'recorded ' + rec['policy']:34s} {rec['tokens_per_s']:9.1f} {'':>8s} {'':>7s} {rec['iterations']:10d}")
    chk = rep["model_check"]
    if chk is not None:
        echo(f"  {'model, same policy (check)':34s} {chk['tokens_per_s']:9.1f} {'':>8s} {chk['mean_k']:7.2f} "
             f"{chk['iterations']:10d}   ({chk['error_vs_recorded']:+.1%} vs recorded)")
    echo(f"  {'predicted off':34s} {off['tokens_per_s']:9.1f} {'1.00x':>8s} {0:7.2f} {off['iterations']:10d}")
    sp = pred["speedup_vs_off"]
    echo(f"  {'predicted ' + pred['policy']:34s} {pred['tokens_per_s']:9.1f} {_fmt(sp, '.2f') + 'x':>8s} "
         f"{pred['mean_k']:7.2f} {pred['iterations']:10d}")
    for a in rep["assumptions"]:
        echo(f"  assumed: {a}")
