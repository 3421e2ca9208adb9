"""``cascade-tui bench``: policies side by side on named prompt sets."""

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from cascade_tui.bench import (
    DEFAULT_MAX_TOKENS,
    DEFAULT_POLICIES,
    DEFAULT_PROMPTS_PER_WORKLOAD,
    DEFAULT_WORKLOADS,
)
from cascade_tui.cli.app import app
from cascade_tui.cli.options import MaxTokensOpt, ModelArgs, SetOpt, fail, with_options


@app.command()
@with_options(model=ModelArgs)
def bench(
    workload: Annotated[Optional[str], typer.Option(
        "--workload", "-w",
        help=f"Comma-separated prompt sets: code, extraction, math, mixed. Default: {DEFAULT_WORKLOADS} "
             "(or none when --prompts is given).")] = None,
    policies: Annotated[str, typer.Option(
        "--policies", help="Comma-separated policies to compare; off (the baseline) is always run.")] = DEFAULT_POLICIES,
    prompts: Annotated[Optional[Path], typer.Option(
        "--prompts", help='JSONL file, one {"prompt": "...", "workload": "code"} per line (workload optional).')] = None,
    json_path: Annotated[Optional[Path], typer.Option("--json", help="Write the full report as JSON here.")] = None,
    plot: Annotated[Optional[Path], typer.Option(
        "--plot", help="Write a speedup-vs-K chart here (.png, .svg or .pdf; needs matplotlib).")] = None,
    prompts_per_workload: Annotated[Optional[int], typer.Option(
        "--prompts-per-workload", min=1,
        help=f"First N prompts of each set. Default: {DEFAULT_PROMPTS_PER_WORKLOAD} for named sets, all for --prompts.")] = None,
    prompt_source: Annotated[str, typer.Option(
        "--prompt-source", help="auto (HumanEval / MT-Bench if installed, else built-in), packaged, or builtin.")] = "auto",
    time_draft_prefill: Annotated[bool, typer.Option(
        "--time-draft-prefill",
        help="Count the drafter reading the prompt as decode time (default: it reads the prompt "
             "before each timed request, untimed like the target's prefill, as llama-server reports).")] = False,
    rounds: Annotated[int, typer.Option(
        "--rounds", min=1,
        help="Run the whole schedule N times, each round with fresh policies (an adaptive one starts cold), "
             "and print each round's speedup next to the pooled one (a shared machine's speed wanders: "
             "one round of 8 prompts x 128 tokens on the demo moved +-5%).")] = 1,
    set_: SetOpt = None,
    max_tokens: MaxTokensOpt = DEFAULT_MAX_TOKENS,
    *,
    model: ModelArgs,
) -> None:
    """Compare policies side by side (greedy, interleaved per prompt): tokens/s, speedup over off, acceptance, mean K, and which setting to use."""
    from cascade_tui.bench.plot import PLOT_SUFFIXES, check_plot_support, plot_report
    from cascade_tui.bench.render import check_writable, render_table, summary_lines, write_json
    from cascade_tui.bench.runner import BenchError, make_policies, parse_policy_list, run_bench
    from cascade_tui.policy import PolicyError, parse_assignments
    from cascade_tui.workloads import WorkloadError, load_prompts_file, load_workloads, parse_workload_names

    # -- everything the user typed is checked before a model loads --------------------------
    try:
        labels = parse_policy_list(policies)
        try:
            sets = parse_assignments(set_)
        except PolicyError as e:
            raise BenchError(str(e)) from None
        make_policies(labels, sets)
        sets_named: dict = {}
        if workload is not None or prompts is None:
            names = parse_workload_names(workload if workload is not None else DEFAULT_WORKLOADS)
            sets_named = load_workloads(names, prompt_source, prompts_per_workload or DEFAULT_PROMPTS_PER_WORKLOAD)
        sets_file = load_prompts_file(prompts) if prompts is not None else {}
        if prompts_per_workload:
            sets_file = {k: v.head(prompts_per_workload) for k, v in sets_file.items()}
        workloads = {**sets_named, **sets_file}
        if model.draft is not None and model.draft.strip().lower() == "none":
            raise BenchError("bench compares draft policies; with --draft none every policy is plain decoding")
        if json_path is not None:
            check_writable(json_path, "--json file")
        if plot is not None:
            if plot.suffix.lower() not in PLOT_SUFFIXES:
                raise BenchError(f"--plot {plot}: use a .png, .svg or .pdf file name")
            check_writable(plot, "--plot file")
            check_plot_support()
    except (BenchError, WorkloadError) as e:
        raise fail(str(e)) from None

    from cascade_tui.runtime import UserError, load_models  # llama.cpp before numpy

    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from backends.base import default_threads
    from cascade_tui.machine import machine_info

    try:
        models = load_models(model.options())
    except UserError as e:
        raise fail(str(e)) from None

    err = Console(stderr=True)
    out = Console()
    bar = Progress(TextColumn("[bold]bench[/]"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                   TextColumn("{task.description}"), console=err, transient=True)
    task = bar.add_task("", total=None)

    def on_progress(done: int, total: int, current: Optional[str]) -> None:
        bar.update(task, completed=done, total=total, description=current or "")

    try:
        with bar:
            report = run_bench(models, dict(workloads), labels, max_tokens=max_tokens,
                               set_params=sets, progress=on_progress, seed=model.seed,
                               time_draft_prefill=time_draft_prefill, rounds=rounds)
    finally:
        models.close()
    report.meta["machine"] = machine_info(model.threads or default_threads(), models.target.info.extra)
    report.meta["model_info"] = models.target.info.to_dict()
    dmodel = models.draft_model
    report.meta["draft_info"] = dmodel.info.to_dict() if dmodel is not None else None
    report.meta["argv"] = sys.argv[1:]

    if report.nothing_generated:
        # nothing to show or recommend: say so, keep the JSON (the stop reasons are in it)
        if json_path is not None:
            try:
                write_json(report, json_path)
            except BenchError:
                pass
        first = report.empty_requests()[0]
        raise fail(f"no request generated any token (every one stopped at once; the first, "
                   f"{first.workload} #{first.prompt_index + 1}, with stop reason {first.stop_reason!r}): "
                   "nothing was measured", 1)
    out.print(render_table(report))
    for line in summary_lines(report):
        out.print(line, markup=False, highlight=False, soft_wrap=True)
    try:
        if json_path is not None:
            write_json(report, json_path)
            err.print(f"wrote {json_path}" + (" (partial)" if report.interrupted else ""), markup=False, highlight=False)
        if plot is not None and report.runs:
            plot_report(report, plot)
            err.print(f"wrote {plot}" + (" (partial)" if report.interrupted else ""), markup=False, highlight=False)
    except BenchError as e:
        raise fail(str(e), 1) from None
    if report.interrupted:
        raise typer.Exit(130)
