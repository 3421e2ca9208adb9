"""Drawing one terminal cell at a time for the render_line widgets (since Textual 6 a widget that
renders lines itself must paint its own background). Runs of equal style become one segment and
combined styles are cached: these widgets redraw up to 15 times a second."""

from __future__ import annotations

from functools import lru_cache

from rich.segment import Segment
from rich.style import Style
from textual.strip import Strip


@lru_cache(maxsize=1024)
def _combine(base: Style, st: Style | None) -> Style:
    return base + st if st is not None else base


def strip(cells: list[tuple[str, Style | None]], base: Style, width: int) -> Strip:
    """``cells`` of (text, style over ``base``), padded with ``base`` to ``width``."""
    segs: list[Segment] = []
    run_text: list[str] = []
    run_style = None
    used = 0
    for text, st in cells:
        style = _combine(base, st)
        if style is not run_style and run_text:
            segs.append(Segment("".join(run_text), run_style))
            run_text = []
        run_style = style
        run_text.append(text)
        used += len(text)
    if run_text:
        segs.append(Segment("".join(run_text), run_style))
    if used < width:
        segs.append(Segment(" " * (width - used), base))
    return Strip(segs, max(used, width)).crop(0, width)


@lru_cache(maxsize=256)
def fg(colour: str, **kw) -> Style:
    return Style(color=colour, **kw)


@lru_cache(maxsize=256)
def bg(colour: str, **kw) -> Style:
    return Style(bgcolor=colour, **kw)
