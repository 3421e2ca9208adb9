"""The Typer application and the root options. Commands live in their own modules and attach
themselves with ``@app.command()``; ``cascade_tui.cli`` imports them all.

Heavy modules (llama.cpp, numpy, textual, the engine) are imported inside the commands, so
``--help`` and ``--version`` are instant. Exit codes: 0 success; 2 usage or input error (one line
on stderr, no traceback); 1 anything else; 130 interrupted (what was generated so far is kept).
"""

import sys
from typing import Annotated

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


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        typer.echo("cascade-tui: interrupted", err=True)
        sys.exit(130)
