"""Tokens/s with the TUI open against headless `run`, same prompt, model and policy, side by side.

    python scripts/bench_tui.py [--policy cascade] [--tokens 512] [--rounds 5] [--mode process]

Each round runs the headless session once and the TUI once (Textual's headless driver at
140x40: every panel draws at up to 15 Hz exactly as on screen, the terminal writes aside), in
alternating order so machine drift hits both alike. tokens/s is generated tokens / decode time,
as `run --json` reports it. Prints each round and the median ratio TUI / headless.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
from functools import partial

import cascade_tui.runtime  # noqa: F401  (llama.cpp before numpy)
from cascade_tui.engine import GenerationConfig
from cascade_tui.runtime import ModelOptions
from cascade_tui.session.core import RecordOptions, Session
from cascade_tui.session.host import open_session

PROMPT = "def fibonacci(n):"


def headless(opts: ModelOptions, policy: str, tokens: int) -> float:
    s = Session.open(opts, policy=policy, generation=GenerationConfig(max_tokens=tokens),
                     record=RecordOptions(record=False))
    try:
        list(s.turn(PROMPT))
        return s.total.tokens_per_s
    finally:
        s.close()


async def tui(opts: ModelOptions, policy: str, tokens: int, mode: str) -> float:
    from cascade_tui.tui.app import CascadeApp
    from cascade_tui.tui.sources import LiveSource

    src = LiveSource(partial(open_session, opts, policy, {}, GenerationConfig(max_tokens=tokens),
                             RecordOptions(record=False), []), mode=mode)
    src.launch()
    app = CascadeApp(src)
    async with app.run_test(size=(140, 40)) as pilot:
        while not src.ready:
            if src.failed:
                raise SystemExit(src.failed)
            await pilot.pause(0.05)
        state = app.main.state
        assert src.submit(PROMPT) is None
        while state.total.turns < 1 or src.running or state.running:
            await pilot.pause(0.05)
        await pilot.pause(0.2)
        return state.total.tokens_per_s


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--policy", default="cascade")
    ap.add_argument("--tokens", type=int, default=512)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--mode", choices=("process", "thread"), default="process",
                    help="where the TUI runs the session (process is what `cascade-tui chat` does)")
    a = ap.parse_args()
    opts = ModelOptions(threads=a.threads)
    ratios = []
    for r in range(a.rounds):
        if r % 2 == 0:
            h = headless(opts, a.policy, a.tokens)
            t = asyncio.run(tui(opts, a.policy, a.tokens, a.mode))
        else:
            t = asyncio.run(tui(opts, a.policy, a.tokens, a.mode))
            h = headless(opts, a.policy, a.tokens)
        ratios.append(t / h)
        print(f"round {r + 1}: headless {h:7.0f} tok/s   TUI {t:7.0f} tok/s   ratio {t / h:.3f}", flush=True)
    print(f"median ratio TUI / headless: {statistics.median(ratios):.3f} "
          f"(policy {a.policy}, {a.tokens} tokens, {a.rounds} rounds, session in a {a.mode})")


if __name__ == "__main__":
    sys.exit(main())
