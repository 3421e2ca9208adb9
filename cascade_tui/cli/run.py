"""``cascade-tui run``: one turn, headless. A thin consumer of the session: it prints the text as it
streams (or one JSON object at the end) and turns the session's events into an exit status."""

import json
import signal
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from cascade_tui.cli.app import app
from cascade_tui.cli.options import (
    GenerationArgs,
    ModelArgs,
    PolicyArgs,
    RecordArgs,
    fail,
    note,
    read_prompt,
    with_options,
)


@app.command()
@with_options(defaults={"max_tokens": 256}, model=ModelArgs, pol=PolicyArgs, gen=GenerationArgs, rec=RecordArgs)
def run(
    prompt: Annotated[Optional[str], typer.Option("--prompt", help="Prompt text.")] = None,
    prompt_file: Annotated[Optional[Path], typer.Option(
        "--prompt-file", help="Read the prompt from a file ('-' = stdin).")] = None,
    json_out: Annotated[bool, typer.Option(
        "--json", help="Print one JSON object (text + statistics) instead of streaming.")] = False,
    *,
    model: ModelArgs,
    pol: PolicyArgs,
    gen: GenerationArgs,
    rec: RecordArgs,
) -> None:
    """Generate once, headless: stream the text (or print --json with statistics)."""
    text = read_prompt(prompt, prompt_file)
    pol.check()

    from cascade_tui.runtime import UserError  # first: loads llama.cpp before numpy
    from cascade_tui.session.core import Session

    try:
        session = Session.open(model.options(), policy=pol.policy, params=pol.params(),
                               generation=gen.config(model.seed), record=rec.options(), argv=sys.argv[1:],
                               cost_cache=pol.cost_cache)
    except UserError as e:
        raise fail(str(e)) from None
    for line in session.notes:
        note(line)

    # The first Ctrl-C asks the session to stop at the next iteration boundary, so every event up
    # to the end is recorded and printed whole; a second Ctrl-C interrupts at once.
    stopping = []

    def on_sigint(signum, frame):
        if stopping:
            raise KeyboardInterrupt
        stopping.append(True)
        session.cancel("interrupted")

    code = 0
    end = None
    events = session.turn(text)
    previous_handler = signal.signal(signal.SIGINT, on_sigint)
    try:
        for ev in events:
            if ev.type == "iteration" and ev.text and not json_out:
                sys.stdout.write(ev.text)
                sys.stdout.flush()
            elif ev.type == "end":
                end = ev
                if ev.tail and not json_out:
                    sys.stdout.write(ev.tail)
            elif ev.type == "error":
                if ev.kind == "input":
                    code = 2
                    typer.echo(f"cascade-tui: error: {ev.message}", err=True)
                else:
                    code = 1
                    where = f"; details in {session.record_path}" if session.record_path else ""
                    typer.echo(f"cascade-tui: error: generation failed: {ev.message}{where}", err=True)
    except KeyboardInterrupt:
        events.close()  # ends the turn in the recording ("interrupted")
        code = 130
    finally:
        signal.signal(signal.SIGINT, previous_handler)
        out = session.summary()
        spec_line = session.total.speculation_line()
        session.close()
    if code in (1, 2):
        raise typer.Exit(code)
    if code == 130 or (end is not None and end.reason == "interrupted"):
        code = 130
        typer.echo("\ncascade-tui: interrupted; the output so far is kept", err=True)

    if json_out:
        typer.echo(json.dumps(out, indent=2))
    else:
        sys.stdout.write("\n")
        acc = out["acceptance_rate"]
        typer.echo(
            f"[{out['generated_tokens']} tokens, {out['tokens_per_s']:.1f} tok/s, {out['iterations']} iterations, "
            f"mean K {out['mean_k']:.2f}, acceptance {'-' if acc is None else f'{acc:.0%}'}, "
            f"stop: {out['stop_reason']}, policy {out['policy']}, draft {out['draft']}"
            + (f", session {out['session']}" if out["session"] else "") + "]",
            err=True,
        )
        typer.echo(spec_line, err=True)
    raise typer.Exit(code)
