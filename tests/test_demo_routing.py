"""The bundled demo MoE routes like a trained MoE: experts are not used uniformly, and
consecutive tokens share experts more often than tokens in random order (they specialise)."""

from __future__ import annotations

import difflib
import inspect

import backends.llamacpp  # noqa: F401,I001  (llama.cpp before numpy)
import numpy as np
from scipy.stats import chisquare

from backends.llamacpp import load_target
from cascade_tui.demo import demo_target_path


def test_demo_routing_is_not_uniform_and_experts_specialise():
    # held-out code (difflib is one of the files the trainer holds out), read through llama.cpp
    text = inspect.getsource(difflib)[:6000]
    target = load_target(demo_target_path(), n_ctx=1024, n_threads=1, routing=True)
    try:
        ids = target.tokenize(text)[:800]
        routing = target.eval(ids).routing  # [layers, tokens, top-k]
    finally:
        target.close()
    assert routing.shape == (4, len(ids), 2)
    rng = np.random.default_rng(0)
    for layer in routing:
        counts = np.bincount(layer.ravel(), minlength=8)
        assert (counts > 0).all()  # every expert is used (load balancing worked)
        assert chisquare(counts).pvalue < 1e-3  # ... but not uniformly
        windows = np.lib.stride_tricks.sliding_window_view(layer, 4, axis=0)  # [n-3, k, 4]
        together = np.mean([len(np.unique(w)) for w in windows])
        shuffled = layer[rng.permutation(len(layer))]
        sw = np.lib.stride_tricks.sliding_window_view(shuffled, 4, axis=0)
        apart = np.mean([len(np.unique(w)) for w in sw])
        assert together < apart - 0.1, (together, apart)
