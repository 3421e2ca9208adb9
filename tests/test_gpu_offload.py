"""GPU offload (issue 10) on a llama-cpp-python build that can offload: CUDA, Vulkan, Metal.

The llama-cpp-python that CI installs is CPU-only, so every test here skips in the README's test
run. ``scripts/offload_check.sh`` builds a second llama-cpp-python that offloads (Vulkan on Mesa's
lavapipe, a Vulkan driver that runs on the CPU, on any Debian machine; CUDA on a GPU host), beside
the first and never in pip's cache, and runs this file (and the backend's own tests) against it.

What a user on a GPU build relies on, checked on real llama.cpp:
- without ``--n-gpu-layers`` every layer goes to the GPU (as llama-server does); an explicit N wins;
- speculation through the offloaded model stays token-for-token equal to plain decoding, for every
  policy, through the command line as a user runs it;
- the experts captured from device memory are the ones the CPU build's router picks;
- routing capture costs at most 5% of a verify (on a real GPU, not on lavapipe: a software
  driver's timings say nothing about one).
Always n_threads=1 (see README).
"""

from __future__ import annotations

import backends.llamacpp as L  # noqa: I001  (first: loads llama.cpp before numpy)

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from backends.llamacpp import lib
from cascade_tui.demo import demo_draft_path, demo_target_path
from cascade_tui.factory import ARCHS, write_model

REPO = Path(__file__).resolve().parents[1]
PROMPT = "def fib(n):\n    return n if n < 2 else fib(n - 1) + fib(n - 2)\n\n\nclass Stack:\n    def push(self, x):"


def _offload_devices() -> list:
    if lib.llc is None or not lib.llc.llama_supports_gpu_offload():
        return []
    lib.ensure_backend()
    return [d for d in lib.devices() if d.offloads]


DEVICES = _offload_devices()
SOFTWARE = bool(DEVICES) and all(re.search(r"llvmpipe|lavapipe|swiftshader", d.description, re.I) for d in DEVICES)

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not DEVICES, reason="this llama-cpp-python build cannot offload to a GPU "
                                           "(scripts/offload_check.sh builds one that can)"),
]


def load(path, **kw):
    kw.setdefault("n_threads", 1)
    kw.setdefault("n_ctx", 256)
    return L.load_target(path, **kw)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    d = tmp_path_factory.mktemp("gpu_models")
    return {arch: write_model(d / f"{arch}.gguf", arch=arch, n_layer=3 if arch == "deepseek2" else 2)
            for arch in ARCHS}


def test_every_layer_goes_to_the_gpu_by_default_and_an_explicit_count_wins(tiny):
    path = tiny["llama"]
    with load(path) as t:  # --n-gpu-layers not given
        ex = t.info.extra
        n = t.info.n_layer + 1  # the repeating layers and the output layer, as llama.cpp counts them
        assert ex["gpu_offload_supported"] is True and ex["n_gpu_layers"] == -1
        assert ex["offloaded_layers"] == f"{n}/{n}"
        assert ex["device"] == ", ".join(d.label() for d in DEVICES)
    with load(path, n_gpu_layers=1) as t:
        assert t.info.extra["offloaded_layers"] == f"1/{n}" and t.info.extra["device"] != "cpu"
    with load(path, n_gpu_layers=0) as t:
        assert t.info.extra["offloaded_layers"] == f"0/{n}" and t.info.extra["device"] == "cpu"
    # `inspect` names the devices a load would use, without loading the weights
    info = L.read_gguf_info(path)
    assert [d["name"] for d in info.extra["offload_devices"]] == [d.name for d in DEVICES]


def _cli_run(tmp_path: Path, policy: str, *extra: str) -> tuple[dict, dict]:
    rec = tmp_path / ("-".join((policy,) + extra).replace(":", "-") + ".cascade.jsonl")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p))
    r = subprocess.run(
        [sys.executable, "-m", "cascade_tui", "run", "--model", str(demo_target_path()), "--draft",
         str(demo_draft_path()), "--prompt", "import codecs, re", "--max-tokens", "48",
         "--threads", "1", "--policy", policy, "--json", "--record", str(rec), *extra],
        capture_output=True, text=True, env=env, timeout=600, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    header = json.loads(rec.read_text().splitlines()[0])
    return json.loads(r.stdout), header


def test_speculation_through_the_offloaded_demo_equals_plain_decoding(tmp_path):
    """`cascade-tui run` as a user types it on a GPU build, no offload option given: the demo pair
    (the shipped files: lavapipe reads the grown target at ~1 token/s) runs on the GPU, the
    recording says so, and every policy writes exactly the tokens of plain decoding."""
    plain, header = _cli_run(tmp_path, "off")
    mach = header["machine"]
    assert mach["n_gpu_layers"] == -1 and mach["device"] != "cpu"
    done, total = mach["offloaded_layers"].split("/")
    assert done == total
    assert (plain["device"], plain["offloaded_layers"]) == (mach["device"], mach["offloaded_layers"])
    assert plain["generated_tokens"] == 48
    drafted = 0
    for policy in ("static:4", "learned", "cascade"):
        out, _ = _cli_run(tmp_path, policy)
        assert out["text"] == plain["text"], policy
        assert out["generated_tokens"] == plain["generated_tokens"]
        drafted += out["drafted_tokens"]
    assert drafted > 0  # speculation really ran (static:4 drafts every iteration)
    cpu, header0 = _cli_run(tmp_path, "static:4", "--n-gpu-layers", "0")
    assert header0["machine"]["device"] == "cpu" and cpu["device"] == "cpu"
    assert cpu["generated_tokens"] == 48


@pytest.mark.parametrize("mode", ["native", "python"])
@pytest.mark.parametrize("arch", ARCHS)
def test_experts_captured_from_device_memory_are_the_cpus(tiny, arch, mode):
    """Routing read back from the GPU's buffers (ggml_backend_tensor_get) equals what the same
    model picks on the CPU, for a prompt and for verify-sized batches after it. Float arithmetic
    differs between devices, so a row may differ only where the router's k-th and (k+1)-th
    probabilities are a near tie (as the CPU computes them). The logits agree too."""
    ids = None
    runs = {}
    for ngl in (0, -1):
        with load(tiny[arch], n_gpu_layers=ngl, kv_f32=True, capture_probs=True, routing=mode) as t:
            assert t.routing_mode == mode
            if ids is None:
                ids = t.tokenize(PROMPT)[:24]
            parts = [t.eval(ids[:16])]
            probs = [t.last_router_probs]
            for a, b in ((16, 17), (17, 22), (22, 24)):  # one plain step, then two verifies
                parts.append(t.eval(ids[a:b]))
                probs.append(t.last_router_probs)
            runs[ngl] = (np.concatenate([p.routing for p in parts], axis=1), np.concatenate(probs, axis=1),
                         np.concatenate([p.logits for p in parts], axis=0))
    (r_cpu, p_cpu, l_cpu), (r_gpu, p_gpu, l_gpu) = runs[0], runs[-1]
    assert r_gpu.shape == r_cpu.shape and r_gpu.shape[1] == len(ids)
    k = r_cpu.shape[2]
    scale = max(1.0, float(np.abs(p_cpu).max()))  # probabilities, or logits where the router
    np.testing.assert_allclose(p_gpu, p_cpu, atol=2e-3 * scale)  # softmaxes after top-k (gpt-oss)
    assert np.abs(l_gpu - l_cpu).max() < 5e-2 * max(1.0, np.abs(l_cpu).max())
    same = (np.sort(r_gpu, axis=2) == np.sort(r_cpu, axis=2)).all(axis=2)
    for layer, pos in zip(*np.nonzero(~same)):
        ranked = np.sort(p_cpu[layer, pos])[::-1]
        assert ranked[k - 1] - ranked[k] < 2e-3 * scale, (layer, pos, r_cpu[layer, pos], r_gpu[layer, pos], ranked[: k + 1])
    assert same.mean() >= 0.95


@pytest.mark.skipif(SOFTWARE, reason="a software Vulkan driver (lavapipe) is no GPU to time capture on")
def test_routing_capture_costs_at_most_5_percent_of_a_verify():
    """Paired evals on one loaded model, capture paused and resumed (scripts/bench_capture_split.py):
    what capture adds to an eval of 1 and of 9 tokens of the demo target, graph split and the
    callback's copy together."""
    sys.path.insert(0, str(REPO / "scripts"))
    from bench_capture_split import measure

    from cascade_tui.demo import demo_default_target

    with load(demo_default_target(), n_ctx=512) as t:
        assert t.info.extra["device"] != "cpu"
        rows = measure(t, [1, 9], pairs=60)
    for row in rows:
        assert row["total_share"] <= 0.05, rows
