#!/usr/bin/env python3
"""Engine overhead at K = 0: cascade-tui's decoder against a plain llama-cpp-python greedy loop.

Same GGUF, same thread count, same prompt, same number of tokens, alternating rounds; prints the
median tokens/s of each and their ratios (issue 10: the engine must reach >= 0.97x the plain loop).

* ``plain``: the loop a user would write with llama-cpp-python's low-level API -- ``llama_decode``
  one token, read its logits, ``argmax``, repeat (no sampler chain, no Python-side score buffer),
  with the context settings the engine's target uses (flash attention off); ``plain(fa auto)``
  the same with llama.cpp's default flash-attention setting;
* ``llama``: the same with the high-level ``Llama.eval`` + ``argmax`` of ``Llama.scores``;
* ``engine``: ``SpeculativeDecoder.generate`` with policy ``off`` (what ``run --policy off``
  does per token: policy, events, text stream, statistics), routing capture on and off.

    python scripts/bench_engine_overhead.py [--model PATH] [--tokens 256] [--rounds 7]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import llama_cpp  # noqa: E402  (llama.cpp before numpy, DESIGN section 6)

import numpy as np  # noqa: E402

PROMPT = "def fibonacci(n):"


def plain_lowlevel(path: str, ids: list[int], n: int, threads: int, flash: int | None = 0) -> tuple[float, list[int]]:
    """``flash``: 0 = flash attention off, as the engine's target loads (the like-for-like
    comparison); None = llama.cpp's default (auto)."""
    llama_cpp.llama_backend_init()
    mp = llama_cpp.llama_model_default_params()
    mp.n_gpu_layers = 0
    model = llama_cpp.llama_model_load_from_file(path.encode(), mp)
    cp = llama_cpp.llama_context_default_params()
    cp.n_ctx, cp.n_batch, cp.n_threads, cp.n_threads_batch = 1024, 512, threads, threads
    if flash is not None:
        cp.flash_attn_type = flash
    ctx = llama_cpp.llama_init_from_model(model, cp)
    vocab = llama_cpp.llama_model_get_vocab(model)
    n_vocab = llama_cpp.llama_vocab_n_tokens(vocab)
    try:
        arr = (llama_cpp.llama_token * len(ids))(*ids[:-1])
        llama_cpp.llama_decode(ctx, llama_cpp.llama_batch_get_one(arr, len(ids) - 1))
        tok = ids[-1]
        out = []
        one = (llama_cpp.llama_token * 1)()
        t0 = time.perf_counter()
        for _ in range(n):
            one[0] = tok
            llama_cpp.llama_decode(ctx, llama_cpp.llama_batch_get_one(one, 1))
            logits = np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(ctx, -1), shape=(n_vocab,))
            tok = int(np.argmax(logits))
            out.append(tok)
        return time.perf_counter() - t0, out
    finally:
        llama_cpp.llama_free(ctx)
        llama_cpp.llama_model_free(model)


def plain_highlevel(path: str, ids: list[int], n: int, threads: int) -> tuple[float, list[int]]:
    llm = llama_cpp.Llama(path, n_ctx=1024, n_threads=threads, n_threads_batch=threads, n_gpu_layers=0,
                          verbose=False, logits_all=True, flash_attn=False)
    try:
        llm.eval(ids[:-1])
        tok = ids[-1]
        out = []
        t0 = time.perf_counter()
        for _ in range(n):
            llm.eval([tok])
            tok = int(np.argmax(llm.scores[llm.n_tokens - 1]))
            out.append(tok)
        return time.perf_counter() - t0, out
    finally:
        llm.close()


def engine(path: str, ids: list[int], n: int, threads: int, routing: bool) -> tuple[float, list[int]]:
    from backends.llamacpp import load_target
    from cascade_tui.engine import GenerationConfig, SpeculativeDecoder
    from cascade_tui.policy import make_policy

    target = load_target(path, n_ctx=1024, n_threads=threads, n_gpu_layers=0, routing=routing)
    try:
        dec = SpeculativeDecoder(target, None, make_policy("off"))
        out, t, t0 = [], 0.0, 0.0
        for ev in dec.generate(ids, GenerationConfig(max_tokens=n, stop_at_eos=False)):
            if ev.type == "iteration":
                out.extend(ev.emitted)
            elif ev.type == "turn":
                t0 = time.perf_counter()  # decode only: after the prefill, as for the loops
            elif ev.type == "end":
                t = time.perf_counter() - t0
        return t, out
    finally:
        target.close()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None, help="GGUF (default: the shipped demo target)")
    ap.add_argument("--tokens", type=int, default=256)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", default=None)
    a = ap.parse_args(argv)
    from backends.llamacpp import load_target
    from cascade_tui.demo import demo_target_path

    path = a.model or str(demo_target_path())
    probe = load_target(path, n_ctx=1024, n_threads=a.threads, n_gpu_layers=0, routing=False)
    ids = probe.tokenize(PROMPT)
    probe.close()
    # every run loads its own model (untimed) so no runner finds the weights warmer than another
    runs = {
        "plain": lambda: plain_lowlevel(path, ids, a.tokens, a.threads),
        "plain(fa auto)": lambda: plain_lowlevel(path, ids, a.tokens, a.threads, None),
        "llama": lambda: plain_highlevel(path, ids, a.tokens, a.threads),
        "engine": lambda: engine(path, ids, a.tokens, a.threads, False),
        "engine+routing": lambda: engine(path, ids, a.tokens, a.threads, True),
    }
    times: dict[str, list[float]] = {k: [] for k in runs}
    ref = None
    for r in range(a.rounds):
        for name, fn in (list(runs.items()) if r % 2 == 0 else list(runs.items())[::-1]):
            t, toks = fn()
            if ref is None:
                ref = toks
            if toks != ref:
                print(f"warning: {name} generated other tokens than the first run", file=sys.stderr)
            times[name].append(a.tokens / t)
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"model {path}, {a.tokens} tokens, {a.threads} thread(s), {a.rounds} alternating rounds (median tok/s)")
    for k, v in med.items():
        print(f"  {k:15s} {v:8.1f} tok/s   {v / med['plain']:.3f}x plain   {v / med['llama']:.3f}x Llama.eval")
    if a.json:
        Path(a.json).write_text(json.dumps({"model": path, "tokens": a.tokens, "threads": a.threads,
                                            "tok_s": times, "median": med}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
