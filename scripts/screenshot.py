"""The README's screenshot: `cascade-tui chat` on the bundled demo pair after one answer.

    python scripts/screenshot.py docs/chat.svg [--prompt "import codecs, re"] [--policy learned] [--size 140x40]
"""

from __future__ import annotations

import argparse
import asyncio
from functools import partial

import cascade_tui.runtime  # noqa: F401  (llama.cpp before numpy)
from cascade_tui.engine import GenerationConfig
from cascade_tui.policy import DEFAULT_POLICY
from cascade_tui.runtime import ModelOptions
from cascade_tui.session.core import RecordOptions
from cascade_tui.session.host import open_session


async def shoot(path: str, prompt: str, size: tuple[int, int], tokens: int, policy: str) -> None:
    from cascade_tui.tui.app import CascadeApp
    from cascade_tui.tui.sources import LiveSource

    src = LiveSource(partial(open_session, ModelOptions(threads=1), policy, {}, GenerationConfig(max_tokens=tokens),
                             RecordOptions(record=False), []))
    src.launch()
    app = CascadeApp(src)
    async with app.run_test(size=size) as pilot:
        while not src.ready:
            await pilot.pause(0.05)
        app.main.query_one("#prompt").focus()
        await pilot.press(*prompt, "enter")
        state = app.main.state
        while state.total.turns < 1 or src.running or state.running:
            await pilot.pause(0.05)
        await pilot.pause(0.5)
        app.save_screenshot(path)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("path")
    ap.add_argument("--prompt", default="import codecs, re")
    ap.add_argument("--policy", default=DEFAULT_POLICY)
    ap.add_argument("--size", default="140x40")
    ap.add_argument("--tokens", type=int, default=256)
    a = ap.parse_args()
    w, h = (int(x) for x in a.size.split("x"))
    asyncio.run(shoot(a.path, a.prompt, (w, h), a.tokens, a.policy))
    print(f"wrote {a.path}")


if __name__ == "__main__":
    main()
