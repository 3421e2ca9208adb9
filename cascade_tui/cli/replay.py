"""``cascade-tui replay``: a recorded session on the live screen, without the model."""

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from cascade_tui.cli.app import app
from cascade_tui.cli.options import fail


def read_recording(path: Path):
    """The recording, or a one-line error (exit 2); what was skipped goes to stderr."""
    from cascade_tui.session import SessionFormatError, read_session

    try:
        f = read_session(path)
    except SessionFormatError as e:
        raise fail(str(e)) from None
    for w in f.warnings():
        typer.echo(f"cascade-tui: warning: {w}", err=True)
    return f


def parse_speed(text: str) -> Optional[float]:
    s = text.strip().lower().rstrip("x")
    if s in ("max", "fastest", "inf"):
        return None
    try:
        v = float(s)
    except ValueError:
        raise fail(f"--speed {text!r}: give a factor from 0.25 to 16 (e.g. 2 or 0.5x) or 'max'") from None
    if not 0.25 <= v <= 16:
        raise fail(f"--speed {text!r}: give a factor from 0.25 to 16, or 'max'")
    return v


@app.command()
def replay(
    file: Annotated[Path, typer.Argument(help="A recording (sessions/*.cascade.jsonl).")],
    speed: Annotated[str, typer.Option("--speed", help="Playback speed: 0.25 to 16, or max.")] = "1",
    paused: Annotated[bool, typer.Option("--paused", help="Start paused (space plays).")] = False,
    light: Annotated[bool, typer.Option("--light", help="Start with the light theme.")] = False,
) -> None:
    """Replay a recorded session on the live screen (no model is loaded)."""
    rate = parse_speed(speed)
    f = read_recording(file)
    if not any(ev.type == "iteration" for ev in f.events):
        raise fail(f"{file} holds no iterations to replay")
    if not sys.stdin.isatty() or not sys.stdout.isatty():
        raise fail("replay needs a terminal; `cascade-tui sessions show` prints the statistics")
    from cascade_tui.tui.app import DARK, LIGHT, CascadeApp
    from cascade_tui.tui.sources import ReplaySource

    source = ReplaySource(f.header, f.events, speed=rate, playing=not paused, notes=f.warnings())
    CascadeApp(source, title=f"replay {file.name}", theme=LIGHT if light else DARK).run()
