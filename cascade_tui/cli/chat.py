"""``cascade-tui chat``: the live TUI on a local MoE + drafter."""

import sys
from typing import Annotated

import typer

from cascade_tui.cli.app import app
from cascade_tui.cli.options import GenerationArgs, ModelArgs, PolicyArgs, RecordArgs, fail, with_options


def check_model_paths(model: ModelArgs) -> None:
    """Refuse a missing or unreadable model before the screen opens (one line, exit 2)."""
    from backends import registry
    from backends.base import BackendError

    paths = [(model.model, model.backend)] if model.model else []
    if model.draft and model.draft.strip().lower() not in ("ngram", "none"):
        paths.append((model.draft, "auto"))
    for path, backend in paths:
        try:
            info = registry.get(registry.resolve(path, backend)).read_info(path)
        except BackendError as e:
            raise fail(str(e)) from None
        problem = info.extra.get("load_error")
        if problem:
            raise fail(problem)


@app.command()
@with_options(defaults={"max_tokens": 256}, model=ModelArgs, pol=PolicyArgs, gen=GenerationArgs, rec=RecordArgs)
def chat(
    light: Annotated[bool, typer.Option("--light", help="Start with the light theme (Ctrl+T toggles).")] = False,
    *,
    model: ModelArgs,
    pol: PolicyArgs,
    gen: GenerationArgs,
    rec: RecordArgs,
) -> None:
    """Chat with a local MoE and watch speculation live: utility, K, accepted tokens, phases, experts."""
    pol.check()
    params = pol.params()

    from cascade_tui.runtime import UserError  # noqa: F401  (first: loads llama.cpp before numpy)

    check_model_paths(model)
    if not sys.stdin.isatty() or not sys.stdout.isatty():
        raise fail("chat needs a terminal; for scripts use `cascade-tui run --prompt ...`")
    from functools import partial

    from cascade_tui.session.host import open_session
    from cascade_tui.tui.app import DARK, LIGHT, CascadeApp
    from cascade_tui.tui.sources import LiveSource

    opener = partial(open_session, model.options(), pol.policy, params, gen.config(model.seed), rec.options(),
                     sys.argv[1:], cost_cache=pol.cost_cache)
    source = LiveSource(opener)
    source.launch()  # the models load while the screen opens
    tui = CascadeApp(source, theme=LIGHT if light else DARK)
    try:
        tui.run()
    finally:
        source.close()
    if source.failed:
        raise fail(source.failed)
    if source.record_path:
        typer.echo(f"session recorded: {source.record_path} (replay it with `cascade-tui replay`)", err=True)
