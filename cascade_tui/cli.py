"""Command line: ``cascade-tui run | inspect | bench``.

Heavy modules (llama.cpp, numpy, the engine) are imported inside the commands so ``--help`` and
``--version`` are instant. Exit codes: 0 success; 2 usage or input error (one line on stderr, no
traceback); 1 anything else; 130 interrupted (what was generated so far is kept).
"""

from __future__ import annotations

import json
import signal
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from cascade_tui import __version__

app = typer.Typer(
    name="cascade-tui",
    help="Speculative decoding for Mixture-of-Experts LLMs, steered by speculation utility (Cascade).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def fail(msg: str, code: int = 2) -> typer.Exit:
    typer.echo(f"cascade-tui: error: {msg}", err=True)
    return typer.Exit(code)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"cascade-tui {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """Run a local MoE with a drafter and see, per iteration, whether speculation pays."""


# -- options shared by every command that runs a model (DESIGN section 1) -----------------------
ModelOpt = Annotated[Optional[str], typer.Option("--model", "-m", help="Target model (.gguf). Default: the bundled demo MoE.")]
DraftOpt = Annotated[Optional[str], typer.Option("--draft", "-d", help="Drafter: a .gguf path, 'ngram' or 'none'. Default: the demo drafter with the demo model, else ngram.")]
BackendOpt = Annotated[str, typer.Option("--backend", help="auto or llama (auto: .gguf -> llama).")]
PolicyOpt = Annotated[str, typer.Option("--policy", "-p", help="cascade, off, static:K or heuristic.")]
SetOpt = Annotated[Optional[list[str]], typer.Option("--set", help="Policy parameter KEY=VALUE (repeatable).")]
MaxTokOpt = Annotated[int, typer.Option("--max-tokens", "-n", min=1, help="Tokens to generate.")]
TempOpt = Annotated[float, typer.Option("--temperature", "-t", min=0.0, help="0 = greedy (default).")]
SeedOpt = Annotated[int, typer.Option("--seed", help="Sampling seed.")]
CtxOpt = Annotated[int, typer.Option("--ctx", help="Context size in tokens.")]
ThreadsOpt = Annotated[Optional[int], typer.Option("--threads", help="CPU threads (default: half the cores, at most 4).")]
GpuOpt = Annotated[int, typer.Option("--n-gpu-layers", help="Layers to offload to the GPU (-1 = all).")]
RoutingOpt = Annotated[bool, typer.Option("--routing/--no-routing", help="Capture expert routing per token.")]


def _model_options(model, draft, backend, ctx, threads, n_gpu_layers, routing, seed):
    from cascade_tui.runtime import ModelOptions

    return ModelOptions(model=model, draft=draft, backend=backend, ctx=ctx, threads=threads,
                        n_gpu_layers=n_gpu_layers, routing=routing, seed=seed)


def _make_policy(policy: str, sets: list[str] | None):
    from cascade_tui.policy import PolicyError, make_policy, parse_assignments

    try:
        return make_policy(policy, parse_assignments(sets))
    except PolicyError as e:
        raise fail(str(e)) from None


def _read_prompt(prompt: str | None, prompt_file: Path | None) -> str:
    if prompt is not None and prompt_file is not None:
        raise fail("give either --prompt or --prompt-file, not both")
    if prompt_file is not None:
        try:
            return sys.stdin.read() if str(prompt_file) == "-" else prompt_file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise fail(f"cannot read prompt file {prompt_file}: {e}") from None
    if prompt is None:
        raise fail("no prompt: pass --prompt TEXT or --prompt-file PATH ('-' reads stdin)")
    if prompt == "":
        raise fail("the prompt is empty")
    return prompt


@app.command()
def run(
    prompt: Annotated[Optional[str], typer.Option("--prompt", help="Prompt text.")] = None,
    prompt_file: Annotated[Optional[Path], typer.Option("--prompt-file", help="Read the prompt from a file ('-' = stdin).")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print one JSON object (text + statistics) instead of streaming.")] = False,
    model: ModelOpt = None,
    draft: DraftOpt = None,
    backend: BackendOpt = "auto",
    policy: PolicyOpt = "cascade",
    set_: SetOpt = None,
    max_tokens: MaxTokOpt = 128,
    temperature: TempOpt = 0.0,
    seed: SeedOpt = 0,
    ctx: CtxOpt = 2048,
    threads: ThreadsOpt = None,
    n_gpu_layers: GpuOpt = 0,
    routing: RoutingOpt = True,
    record: Annotated[Optional[Path], typer.Option("--record", help="Record the session to this file (default: sessions/<UTC time>.cascade.jsonl).")] = None,
    no_record: Annotated[bool, typer.Option("--no-record", help="Do not record the session.")] = False,
) -> None:
    """Generate once, headless: stream the text (or print --json with statistics)."""
    text = _read_prompt(prompt, prompt_file)
    pol = _make_policy(policy, set_)
    opts = _model_options(model, draft, backend, ctx, threads, n_gpu_layers, routing, seed)

    from cascade_tui.runtime import UserError, load_models  # first: loads llama.cpp before numpy
    from cascade_tui.engine import EngineError, GenerationConfig, IterationEvent, SpeculativeDecoder
    from cascade_tui.session import Recorder, default_session_path
    from cascade_tui.stats import RunStats

    try:
        models = load_models(opts)
    except UserError as e:
        raise fail(str(e)) from None
    if models.drafter is None and pol.label != "off":
        typer.echo(f"cascade-tui: note: no drafter, so policy {pol.label} runs as off", err=True)
        pol = _make_policy("off", None)

    recorder = None
    if not no_record:
        path = record or default_session_path()
        try:
            recorder = Recorder(path, {
                "backend": models.backend,
                "model": models.target.info.to_dict(),
                "draft": {"name": models.draft_label},
                "policy": {"name": pol.label, "params": pol.params},
                "argv": sys.argv[1:],
            })
        except OSError as e:
            models.close()
            raise fail(f"cannot write the session recording {path}: {e.strerror or e}") from None

    stats = RunStats()
    decoder = SpeculativeDecoder(models.target, models.drafter, pol)
    cfg = GenerationConfig(max_tokens=max_tokens, temperature=temperature, seed=seed)
    code = 0
    # The first Ctrl-C asks the decoder to stop at the next iteration boundary, so every event up
    # to the end is recorded and printed whole; a second Ctrl-C interrupts at once.
    stopping = []

    def on_sigint(signum, frame):
        if stopping:
            raise KeyboardInterrupt
        stopping.append(True)
        decoder.cancel("interrupted")

    previous_handler = signal.signal(signal.SIGINT, on_sigint)
    try:
        for ev in decoder.generate(text, cfg):
            stats.add(ev)
            if recorder:
                recorder.record(ev)
            if not json_out and isinstance(ev, IterationEvent) and ev.text:
                sys.stdout.write(ev.text)
                sys.stdout.flush()
    except EngineError as e:
        code = 2
        if recorder:
            recorder.note("error", message=str(e))
        typer.echo(f"cascade-tui: error: {e}", err=True)
    except Exception as e:  # a backend failure mid-run: one line; the details go to the recording
        code = 1
        import traceback

        if recorder:
            recorder.note("error", message=str(e), traceback=traceback.format_exc())
        where = f"; details in {recorder.path}" if recorder else ""
        typer.echo(f"cascade-tui: error: generation failed: {type(e).__name__}: {e}{where}", err=True)
    except KeyboardInterrupt:
        code = 130
        stats.reason = "interrupted"
        stats.text = models.target.detokenize(stats.emitted)
        stats.generated_tokens = len(stats.emitted)
        if recorder:
            recorder.note("end", reason="interrupted", generated_tokens=len(stats.emitted))
        typer.echo("\ncascade-tui: interrupted; the output so far is kept", err=True)
    finally:
        signal.signal(signal.SIGINT, previous_handler)
        if recorder:
            recorder.close()
        models.close()
    if code in (1, 2):
        raise typer.Exit(code)
    if stopping and code == 0:
        code = 130
        typer.echo("\ncascade-tui: interrupted; the output so far is kept", err=True)

    out = stats.to_dict()
    out.update({
        "model": models.model_path,
        "backend": models.backend,
        "draft": models.draft_label,
        "policy": pol.label,
        "temperature": temperature,
        "session": str(recorder.path) if recorder else None,
    })
    if json_out:
        typer.echo(json.dumps(out, indent=2))
    else:
        sys.stdout.write("\n")
        acc = out["acceptance_rate"]
        typer.echo(
            f"[{out['generated_tokens']} tokens, {out['tokens_per_s']:.1f} tok/s, {out['iterations']} iterations, "
            f"mean K {out['mean_k']:.2f}, acceptance {'-' if acc is None else f'{acc:.0%}'}, "
            f"stop: {out['stop_reason']}, policy {pol.label}, draft {models.draft_label}"
            + (f", session {out['session']}" if out["session"] else "") + "]",
            err=True,
        )
    raise typer.Exit(code)


@app.command()
def inspect(
    model: Annotated[str, typer.Argument(help="A .gguf file.")],
    draft: Annotated[Optional[str], typer.Option("--draft", "-d", help="Check this drafter's vocabulary against the model.")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Architecture, layers, experts, vocabulary and drafter compatibility of a GGUF model (no weights loaded)."""
    from backends.llamacpp import load_target, make_drafter, read_gguf_info  # before numpy
    from backends.base import BackendError

    try:
        info = read_gguf_info(model)
        report = info.to_dict()
        if draft is not None:
            dinfo = read_gguf_info(draft)
            problem = dinfo.extra.get("load_error")
            if problem is None and dinfo.vocab_fingerprint != info.vocab_fingerprint:
                # load both (tiny context) so the backend can name the first differing token
                target = load_target(model, n_ctx=64, n_threads=1, routing=False)
                try:
                    make_drafter(draft, target, n_ctx=64, n_threads=1).close()
                except BackendError as e:
                    problem = str(e)
                finally:
                    target.close()
            report["draft"] = {"path": draft, "arch": dinfo.arch, "n_vocab": dinfo.n_vocab,
                               "compatible": problem is None, "problem": problem}
    except BackendError as e:
        raise fail(str(e)) from None
    if json_out:
        typer.echo(json.dumps(report, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    t = Table(title=Path(model).name, show_header=False)
    t.add_column("", style="bold")
    t.add_column("")
    moe = report["moe_layers"]
    rows = [
        ("architecture", report["arch"]),
        ("layers", str(report["n_layer"])),
        ("MoE layers", f"{len(moe)} ({_ranges(moe)})" if moe else "none (dense model)"),
        ("experts", f"{report['n_expert']} per layer, top-{report['n_expert_used']}" if moe else "-"),
        ("vocabulary", f"{report['n_vocab']} tokens, fingerprint {report['vocab_fingerprint']}"),
        ("trained context", str(report["n_ctx_train"])),
        ("parameters", f"{report['n_params']:,}"),
        ("file size", f"{report['file_size'] / 2**20:.1f} MiB"),
    ]
    if "draft" in report:
        d = report["draft"]
        rows.append(("drafter", f"{d['path']}: " + ("compatible" if d["compatible"] else f"NOT compatible: {d['problem']}")))
    for k, v in rows:
        t.add_row(k, v)
    Console().print(t)


def _ranges(ids: list[int]) -> str:
    out, start = [], None
    for i, x in enumerate(ids):
        if start is None:
            start = x
        if i + 1 == len(ids) or ids[i + 1] != x + 1:
            out.append(str(start) if start == x else f"{start}-{x}")
            start = None
    return ", ".join(out)


# `bench` lives with the benchmark code; it reuses the option types above
from cascade_tui.bench.command import register as _register_bench  # noqa: E402

_register_bench(app)


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        typer.echo("cascade-tui: interrupted", err=True)
        sys.exit(130)


if __name__ == "__main__":
    main()
