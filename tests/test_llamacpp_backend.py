"""The llama.cpp backend on real llama.cpp, with tiny MoE models from cascade_tui.factory.

Every model is generated here (seconds); nothing is downloaded. Always n_threads=1.
"""

from __future__ import annotations

import backends.llamacpp as L  # noqa: I001  (first: loads llama.cpp before numpy where possible)

import dataclasses
import gc
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from backends.base import BackendError, EvalResult, Target, vocab_fingerprint
from backends.llamacpp import lib, native, routing
from backends.model_drafter import ModelDrafter
from cascade_tui.factory import ARCHS, default_vocab, moe_layer_ids, write_model

REPO = Path(__file__).resolve().parents[1]
PROMPT = "def fib(n):\n    return n if n < 2 else fib(n - 1) + fib(n - 2)  # é😀"


@pytest.fixture(scope="session")
def models(tmp_path_factory):
    d = tmp_path_factory.mktemp("llama_models")
    lib.set_log_path(d / "llama.log")  # a fresh log: error tests read reasons back from it
    out = {arch: write_model(d / f"{arch}.gguf", arch=arch) for arch in ARCHS}
    out["dense"] = write_model(d / "dense.gguf", arch="llama", n_expert=0, n_layer=1)
    v = default_vocab()
    toks = list(v.tokens)
    toks[300], toks[301] = toks[301], toks[300]  # same size, first difference at id 300
    out["draft_bad"] = write_model(
        d / "draft_bad.gguf", arch="llama", n_expert=0, n_layer=1, vocab=dataclasses.replace(v, tokens=tuple(toks))
    )
    out["dir"] = d
    return out


# On a build that offloads to a GPU (scripts/offload_check.sh runs this file against one), the
# logits are not bit-for-bit those of the CPU build's exactness checks: one-token and batched
# evals run different GPU kernels (up to 1.4e-2 apart on Vulkan/lavapipe), and capturing routing
# splits the graph at each MoE layer's top-k, so the backend cannot fuse the router's ops there
# (last bits: ~3e-6). Routing itself stays exactly equal.
OFFLOAD = bool(lib.llc is not None and lib.llc.llama_supports_gpu_offload())
BATCH_ATOL = 5e-2 if OFFLOAD else 1e-4  # one-token vs batched evaluation
SPLIT_ATOL = 1e-4 if OFFLOAD else 0.0  # the same eval with and without routing capture


def assert_same_logits(a, b, atol: float = SPLIT_ATOL) -> None:
    """Equal logits: bit for bit on the CPU build, within ``atol`` where the build offloads."""
    if atol == 0.0:
        assert np.array_equal(a, b)
    else:
        np.testing.assert_allclose(a, b, atol=atol, rtol=0)


def load(path, **kw):
    kw.setdefault("n_threads", 1)
    kw.setdefault("n_ctx", 256)
    return L.load_target(path, **kw)


@pytest.fixture
def qwen(models):
    t = load(models["qwen3moe"], kv_f32=True)
    yield t
    t.close()


# -- routing ---------------------------------------------------------------------------------


@pytest.mark.parametrize("arch", ARCHS)
def test_routing_is_topk_of_router_probs_and_batch_invariant(models, arch):
    with load(models[arch], kv_f32=True, capture_probs=True) as t:
        assert isinstance(t, Target)
        info = t.info
        assert info.arch == arch and info.backend == "llama"
        assert info.moe_layers == moe_layer_ids(arch, info.n_layer, info.n_expert)
        assert (info.n_expert, info.n_expert_used) == (8, 2)
        k = info.n_expert_used
        ids = t.tokenize(PROMPT)[:12]
        n = len(ids)
        out = t.eval(ids)
        assert isinstance(out, EvalResult)
        assert out.logits.shape == (n, info.n_vocab) and out.logits.dtype == np.float32
        assert out.routing.shape == (len(info.moe_layers), n, k) and out.routing.dtype == np.int32
        assert np.isfinite(out.logits).all()
        # the captured experts are the router's top-k, in descending order of probability
        probs = t.last_router_probs
        assert probs.shape == (len(info.moe_layers), n, info.n_expert)
        assert np.array_equal(out.routing, np.argsort(-probs, axis=-1, kind="stable")[..., :k])
        assert len(np.unique(out.routing)) > k  # tokens really route differently

        # token by token gives the same routing and (numerically) the same logits
        t.truncate(0)
        steps = [t.eval([x]) for x in ids]
        assert np.array_equal(np.concatenate([s.routing for s in steps], axis=1), out.routing)
        assert_same_logits(np.concatenate([s.logits for s in steps]), out.logits, atol=BATCH_ATOL)


@pytest.mark.parametrize("arch", ARCHS)
def test_native_and_python_callbacks_agree(models, arch):
    ids = None
    outs = {}
    for mode in ("native", "python"):
        with load(models[arch], routing=mode) as t:
            assert t.routing_mode == mode
            ids = ids or t.tokenize(PROMPT)
            outs[mode] = t.eval(ids)
    assert np.array_equal(outs["native"].routing, outs["python"].routing)
    assert np.array_equal(outs["native"].logits, outs["python"].logits)


def test_routing_off_gives_none_and_same_logits(models):
    with load(models["olmoe"]) as on, load(models["olmoe"], routing=False) as off:
        ids = on.tokenize(PROMPT)
        a, b = on.eval(ids), off.eval(ids)
        assert a.routing is not None and b.routing is None
        assert off.routing_mode is None and off.info.extra["routing"] == "off"
        assert_same_logits(a.logits, b.logits)
        on.set_routing(False)  # paused at run time: no routing, same logits
        on.truncate(0)
        c = on.eval(ids)
        assert c.routing is None
        assert_same_logits(c.logits, a.logits)
        on.set_routing(True)
        on.truncate(0)
        assert np.array_equal(on.eval(ids).routing, a.routing)
        with pytest.raises(BackendError):
            off.set_routing(True)


def test_dense_model_has_no_routing(models):
    with load(models["dense"]) as t:
        assert t.info.moe_layers == () and t.info.n_expert == 0 and not t.info.is_moe
        assert t.routing_mode is None and t.info.extra["routing"] == "dense"
        out = t.eval(t.tokenize("hello"))
        assert out.routing is None and out.logits.shape[1] == t.info.n_vocab


def test_chunked_eval_matches_one_batch(models):
    with load(models["qwen2moe"], kv_f32=True) as big, load(models["qwen2moe"], kv_f32=True, n_batch=4) as small:
        ids = big.tokenize(PROMPT)[:11]
        a, b = big.eval(ids), small.eval(ids)  # 11 tokens = 3 decodes of at most 4
        assert small.n_batch == 4 and small.n_past == 11
        assert np.array_equal(a.routing, b.routing)
        assert_same_logits(a.logits, b.logits, atol=BATCH_ATOL)


def test_truncate_then_reeval_reproduces(qwen):
    ids = qwen.tokenize(PROMPT)
    prompt, cont, other = ids[:8], ids[8:12], ids[12:16]
    qwen.eval(prompt)
    first = qwen.eval(cont)
    assert qwen.n_past == 12
    qwen.truncate(8)
    assert qwen.n_past == 8
    qwen.eval(other)  # a rejected draft ...
    qwen.truncate(8)  # ... rolled back
    again = qwen.eval(cont)
    assert np.array_equal(first.logits, again.logits)
    assert np.array_equal(first.routing, again.routing)
    qwen.truncate(8)
    qwen.truncate(8)  # no-op
    with pytest.raises(BackendError, match="cannot keep 9 tokens"):
        qwen.truncate(9)
    with pytest.raises(BackendError):
        qwen.truncate(-1)


def test_eval_empty_and_out_of_range(qwen):
    e = qwen.eval([])
    assert e.logits.shape == (0, qwen.info.n_vocab) and e.routing.shape == (2, 0, 2)
    with pytest.raises(BackendError, match=r"token id -1 is outside the vocabulary"):
        qwen.eval([1, -1])
    with pytest.raises(BackendError, match=rf"token id {qwen.info.n_vocab} is outside"):
        qwen.eval([qwen.info.n_vocab])
    assert qwen.n_past == 0


def test_context_overflow_raises_before_decode(models):
    with load(models["llama"], n_ctx=16) as t:
        assert t.n_ctx == 16
        with pytest.raises(BackendError, match="context full: 0 cached \\+ 17 new tokens exceed the context size 16"):
            t.eval(list(range(17)))
        t.eval(list(range(10)))
        with pytest.raises(BackendError, match="10 cached \\+ 7 new"):
            t.eval(list(range(7)))
        assert t.n_past == 10  # nothing was decoded
        t.eval(list(range(6)))
        assert t.n_past == 16


def test_overflowing_capture_degrades_to_none_not_garbage(models):
    """A capture buffer that cannot hold the rows must lose the routing, never the logits."""
    with load(models["qwen3moe"], routing=False) as ref:
        ids = ref.tokenize(PROMPT)[:6]
        want = ref.eval(ids).logits
    for mode in ("native", "python"):
        with load(models["qwen3moe"], routing=mode) as t:
            t._capture.state.cap_tokens = 2  # pretend the buffer holds 2 rows per layer
            out = t.eval(ids)
            assert out.routing is None and "incomplete" in t.routing_error
            assert_same_logits(out.logits, want)


def test_python_callback_never_raises_into_ggml(models, monkeypatch):
    with load(models["qwen3moe"], routing=False) as ref:
        ids = ref.tokenize(PROMPT)[:6]
        want = ref.eval(ids).logits
    with load(models["qwen3moe"], routing="python") as t:
        def boom(*a, **k):
            raise RuntimeError("bug in the callback")

        monkeypatch.setattr(np.lib.stride_tricks, "as_strided", boom)
        out = t.eval(ids)
        assert t._capture.py_exceptions > 0
        assert out.routing is None
        assert_same_logits(out.logits, want)  # the graph ran to the end

        def interrupt(*a, **k):
            raise KeyboardInterrupt

        monkeypatch.setattr(np.lib.stride_tricks, "as_strided", interrupt)
        with pytest.raises(KeyboardInterrupt):
            t.eval([5, 6, 7])
        assert t.n_past == 6  # rolled back to before the interrupted eval
        monkeypatch.undo()
        assert t.eval([5, 6, 7]).routing.shape == (2, 3, 2)


# -- tokens ------------------------------------------------------------------------------------


def test_tokenize_detokenize_utf8_across_tokens(qwen):
    text = "naïve café 😀 日本"
    ids = qwen.tokenize(text, add_bos=False)
    pieces = [qwen.token_bytes(i) for i in ids]
    assert b"".join(pieces) == text.encode()

    def valid(b):
        try:
            b.decode("utf-8")
            return True
        except UnicodeDecodeError:
            return False

    assert not all(valid(p) for p in pieces), "expected a character split over tokens"
    assert qwen.detokenize(ids) == text
    cut = next(i for i, p in enumerate(pieces) if not valid(p))
    assert qwen.detokenize(ids[: cut + 1]).endswith("\ufffd")  # a half character is replaced


def test_bos_eos_and_special_tokens(qwen):
    v = default_vocab()
    assert v.eos_id in qwen.eos_ids
    with_bos, without = qwen.tokenize("hi"), qwen.tokenize("hi", add_bos=False)
    assert with_bos == [v.bos_id] + without  # factory models ask for a BOS
    assert qwen.detokenize(with_bos) == "hi"  # control tokens are not text ...
    assert qwen.detokenize(with_bos, special=True).endswith("hi")  # ... unless asked
    assert qwen.token_bytes(v.eos_id) == b"<|endoftext|>"
    with pytest.raises(BackendError):
        qwen.token_bytes(qwen.info.n_vocab)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text(max_size=40))
def test_detokenize_roundtrip(qwen, text):
    assert qwen.detokenize(qwen.tokenize(text, add_bos=False, special=False)) == text


def test_vocab_fingerprint_matches_factory_and_header(models, qwen):
    assert qwen.info.vocab_fingerprint == vocab_fingerprint(default_vocab().pieces())
    info = L.read_gguf_info(models["qwen3moe"])
    for f in ("arch", "n_layer", "moe_layers", "n_expert", "n_expert_used", "n_vocab", "n_ctx_train",
              "vocab_fingerprint", "file_size", "n_params"):
        assert getattr(info, f) == getattr(qwen.info, f), f
    assert info.file_size == os.path.getsize(models["qwen3moe"])
    assert L.read_gguf_info(models["qwen3moe"], fingerprint=False).vocab_fingerprint == ""


# -- drafters ------------------------------------------------------------------------------------


def test_make_drafter_and_vocab_mismatch(models, qwen):
    with pytest.raises(BackendError) as e:
        L.make_drafter(models["draft_bad"], qwen, n_threads=1)
    msg = str(e.value)
    assert "token id 300" in msg and "draft_bad.gguf" in msg and "\n" not in msg

    d = L.make_drafter(models["dense"], qwen, n_threads=1)
    try:
        assert isinstance(d, ModelDrafter) and d.model.n_ctx == qwen.n_ctx and d.model.routing_mode is None
        ctx = qwen.tokenize(PROMPT)[:10]
        draft = d.propose(ctx, 3, 0.0, np.random.default_rng(0))
        assert len(draft.tokens) == 3 and draft.probs is None
        with load(models["dense"]) as ref:  # greedy drafting = the draft model's own argmax chain
            want = [int(np.argmax(ref.eval(ctx).logits[-1]))]
            for _ in range(2):
                want.append(int(np.argmax(ref.eval([want[-1]]).logits[-1])))
        assert draft.tokens == want
    finally:
        d.close()


# -- errors --------------------------------------------------------------------------------------


def _bad_files(d: Path, good: Path) -> dict[str, tuple[Path, str]]:
    data = good.read_bytes()
    files = {
        "missing": (d / "nope.gguf", "model file not found"),
        "not_gguf": (d / "notes.gguf", "is not a GGUF file"),
        "empty": (d / "empty.gguf", "is not a GGUF file"),
        "truncated": (d / "cut.gguf", "truncated or corrupt GGUF file: tensor data ends at byte"),
        "truncated_header": (d / "cut_header.gguf", "truncated or corrupt GGUF file: header ends early"),
        "directory": (d, "is a directory"),
        "unknown_arch": (d / "alien.gguf", "does not support the architecture 'alienmoe'"),
    }
    files["not_gguf"][0].write_bytes(b"PK\x03\x04 a zip file, not a model")
    files["empty"][0].write_bytes(b"")
    files["truncated"][0].write_bytes(data[: len(data) - 4096])
    files["truncated_header"][0].write_bytes(data[:1500])
    # same bytes with the architecture renamed (same length keeps every offset valid)
    files["unknown_arch"][0].write_bytes(data.replace(b"qwen3moe", b"alienmoe"))
    return files


@pytest.fixture(scope="module")
def bad_files(models, tmp_path_factory):
    return _bad_files(tmp_path_factory.mktemp("bad"), Path(models["qwen3moe"]))


@pytest.mark.parametrize(
    "kind", ["missing", "not_gguf", "empty", "truncated", "truncated_header", "directory", "unknown_arch"]
)
def test_bad_model_files_give_one_line_errors(bad_files, kind):
    path, want = bad_files[kind]
    with pytest.raises(BackendError) as e:
        load(path)
    msg = str(e.value)
    assert want in msg and "\n" not in msg and "Traceback" not in msg
    if kind != "directory":
        assert path.name in msg
    if kind != "unknown_arch":  # inspect reports the same problem without loading
        with pytest.raises(BackendError, match=want):
            L.read_gguf_info(path)


def test_inspect_unknown_arch_without_loading(bad_files):
    info = L.read_gguf_info(bad_files["unknown_arch"][0])
    assert info.arch == "alienmoe" and info.n_layer == 2 and info.moe_layers == (0, 1)
    assert info.vocab_fingerprint == "" and "alienmoe" in info.extra["load_error"]


def test_gpu_layers_on_cpu_build(models):
    if lib.llc.llama_supports_gpu_offload():
        pytest.skip("this llama-cpp-python build supports GPU offload")
    with pytest.raises(BackendError, match="--n-gpu-layers 4 needs GPU offload.*CPU-only"):
        load(models["llama"], n_gpu_layers=4)


def test_bad_arguments(models):
    with pytest.raises(BackendError, match="context size"):
        load(models["llama"], n_ctx=0)
    with pytest.raises(BackendError, match="thread count"):
        load(models["llama"], n_threads=0)
    with pytest.raises(BackendError, match="routing must be"):
        load(models["llama"], routing="sometimes")


def test_closed_target(models):
    t = load(models["llama"])
    t.close()
    t.close()  # idempotent
    with pytest.raises(BackendError, match="closed"):
        t.eval([1])
    for _ in range(3):  # dropped without close(): freed by the garbage collector, no crash
        u = load(models["qwen2moe"], routing="python")
        u.eval([1, 2, 3])
        del u
        gc.collect()


# -- native helper, logging, import order --------------------------------------------------


def test_native_layout_matches_python_mirror(tmp_path, monkeypatch):
    """The struct offsets compiled from the installed headers, from the hand declarations and in
    the Python mirror must all agree (the hand-declared build is what hosts without headers use)."""
    import ctypes

    monkeypatch.setenv("CASCADE_TUI_CACHE", str(tmp_path))
    layouts = []
    for headers in (True, False):
        so = native.build(headers=headers, force=True)
        assert so is not None and so.parent == tmp_path / "native", native.last_error
        so_lib = ctypes.CDLL(str(so))
        native._declare(so_lib)
        lay = native.layout(so_lib)
        assert lay["headers"] == (1 if headers and native.find_headers() else 0)
        layouts.append({k: v for k, v in lay.items() if k != "headers"})
    hand = routing.hand_layout()
    for lay in layouts:
        assert {k: lay[k] for k in hand} == hand
    assert native.find_headers() is not None, "llama-cpp-python installed no ggml headers"


def test_native_build_falls_back_to_tmp_when_cache_unwritable(tmp_path, monkeypatch):
    blocker = tmp_path / "not_a_dir"
    blocker.write_text("")
    monkeypatch.setenv("CASCADE_TUI_CACHE", str(blocker / "cache"))
    so = native.build(force=True)
    assert so is not None and so.parent == native.fallback_dir() / "native", native.last_error


_CHILD = r"""
import json, sys
pre = sys.argv[1]
if pre == "numpy":
    import numpy
import backends.llamacpp as L
t = L.load_target(sys.argv[2], n_threads=1, n_ctx=64)
out = t.eval(t.tokenize("hello world"))
print(json.dumps({"mode": t.routing_mode, "log_mode": L.lib.log_mode(), "shape": list(out.routing.shape),
                  "numpy_first": L.lib.NUMPY_IMPORTED_FIRST, "log": str(L.lib.log_path())}))
t.close()
"""


@pytest.mark.parametrize("no_native", [False, True])
def test_llama_log_never_reaches_the_terminal(models, tmp_path, no_native):
    # the repository first, then what was already on the path (scripts/offload_check.sh puts a GPU
    # build of llama-cpp-python there, and the child must load that one too)
    path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)
    env = dict(os.environ, PYTHONPATH=path, CASCADE_TUI_LLAMA_LOG=str(tmp_path / "llama.log"))
    if no_native:
        env["CASCADE_TUI_NO_NATIVE"] = "1"  # no compiler: python callback + fd-2 redirection
    pre = "numpy" if no_native else "none"
    r = subprocess.run([sys.executable, "-c", _CHILD, pre, str(models["olmoe"])], capture_output=True,
                       text=True, env=env, timeout=120, cwd=REPO)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stderr == ""  # nothing from llama.cpp on the terminal
    res = json.loads(r.stdout)
    assert res["mode"] == ("python" if no_native else "native")
    assert res["log_mode"] == ("fd2" if no_native else "native")
    assert res["shape"][0] == 2 and res["numpy_first"] == no_native
    assert "llama_model_loader" in (tmp_path / "llama.log").read_text()


def test_gpu_offload_by_default_only_where_the_build_supports_it(tmp_path):
    from backends.llamacpp import lib
    from backends.llamacpp.target import resolve_gpu_layers
    from cascade_tui.factory import write_model

    assert resolve_gpu_layers(None, True) == -1  # a CUDA/Metal build: every layer, as llama-server
    assert resolve_gpu_layers(None, False) == 0
    assert resolve_gpu_layers(8, True) == 8 and resolve_gpu_layers(0, True) == 0  # an explicit N wins
    t = L.load_target(write_model(tmp_path / "m.gguf", n_expert=4, n_expert_used=2), n_ctx=64, n_threads=1)
    try:
        supported = bool(lib.llc.llama_supports_gpu_offload())
        assert t.info.extra["n_gpu_layers"] == (-1 if supported else 0)
        assert t.info.extra["gpu_offload_supported"] is supported
    finally:
        t.close()


def test_a_gpu_too_small_for_the_default_offload_gets_one_line_saying_what_to_do(tmp_path):
    """What llama.cpp logs when device memory runs out (lines as its CUDA build and its loader
    write them) becomes one line naming --n-gpu-layers and --ctx; on the CPU, or for any other
    failure, the log's own reason is kept."""
    from backends.llamacpp.target import _gpu_memory_hint, _load_failure

    oom = ("ggml_backend_cuda_buffer_type_alloc_buffer: allocating 23040.00 MiB on device 0: cudaMalloc failed: "
           "out of memory\nalloc_tensor_range: failed to allocate CUDA0 buffer of size 24159191040\n"
           "llama_model_load: error loading model: unable to allocate CUDA0 buffer\n")
    msg = str(_load_failure(Path("mixtral.gguf"), oom, -1))
    assert msg.startswith("llama.cpp cannot load mixtral.gguf: the GPU has too little free memory for every layer")
    assert "--n-gpu-layers N" in msg and "--ctx" in msg and "\n" not in msg
    assert "for 20 layers" in str(_load_failure(Path("m.gguf"), oom, 20))
    kv = "llama_kv_cache: failed to allocate buffer for kv cache\n"
    assert _gpu_memory_hint(kv, -1) and _gpu_memory_hint(kv, 0) is None  # on the CPU: not a GPU problem
    assert str(_load_failure(Path("m.gguf"), oom, 0)) == "llama.cpp cannot load m.gguf: unable to allocate CUDA0 buffer"
    bad = "llama_model_load: error loading model: missing tensor 'blk.0.ffn_gate_inp.weight'\n"
    assert "missing tensor" in str(_load_failure(Path("m.gguf"), bad, -1))
