"""The model factory: shipped BPE vocab, GGUF writer, and what real llama.cpp makes of both."""

from __future__ import annotations

import ctypes
import json
import platform
import subprocess
import sys
import time
from pathlib import Path

import pytest

llama_cpp = pytest.importorskip("llama_cpp")  # import llama_cpp before numpy (DESIGN section 6)

import numpy as np  # noqa: E402
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from cascade_tui.factory import (  # noqa: E402
    ARCHS,
    MOE_NORM_TOPK,
    NORM_EPS,
    ROPE_STYLE,
    default_vocab,
    encode_fast,
    moe_layer_ids,
    permute_qk,
    tensor_shapes,
    write_model,
)
from cascade_tui.factory.tokenizer import bytes_to_unicode  # noqa: E402

gguf = pytest.importorskip("gguf")

ROOT = Path(__file__).resolve().parents[1]

TEXTS = [
    "def fib(n):\n    return n if n < 2 else fib(n - 1) + fib(n - 2)\n",
    "import os, sys\nfor k, v in sorted(os.environ.items()):\n\tprint(f'{k}={v!r}')\n",
    "héllo wörld ✓ 日本",
    "a  b   c\t\td\n\n\n    e     \n",
    "   leading and trailing   ",
    "x = {'key': [1, 2.5e-3, None]}  # comment's here",
    "emoji 🙂👍🏽 and ÅÄÖ ß ﬁ",
    "I'm sure they'll've done it; it's John's 123456789 thing.",
    "<|endoftext|> is plain text here",
    "",
]


def _piece(llm, token: int) -> bytes:
    # Not Llama.detokenize: llama-cpp-python 0.3.36 uses a 32-byte buffer there and silently drops
    # longer pieces (this vocab has one: id 1167, a newline and 36 spaces).
    buf = (ctypes.c_char * 256)()
    n = llama_cpp.llama_token_to_piece(llm._model.vocab, token, buf, 256, 0, True)
    assert 0 <= n <= 256
    return bytes(buf[:n])


def _detok(llm, ids) -> bytes:
    return b"".join(_piece(llm, i) for i in ids)


def _load(path, **kw):
    kw.setdefault("n_ctx", 256)
    return llama_cpp.Llama(model_path=str(path), n_threads=1, n_threads_batch=1, verbose=False, **kw)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    d = tmp_path_factory.mktemp("factory")
    out = {a: write_model(d / f"{a}.gguf", arch=a) for a in ARCHS}
    out["dense"] = write_model(d / "dense.gguf", arch="llama", n_expert=0, n_layer=1, n_ff=96)
    return out


@pytest.fixture(scope="module")
def drafter(models):
    llm = _load(models["dense"])
    yield llm
    llm.close()


# --- vocabulary ---------------------------------------------------------------------------------


def test_vocab_shape():
    v = default_vocab()
    assert v.n_vocab == 2048 and len(set(v.tokens)) == 2048
    b2u = bytes_to_unicode()
    assert list(v.tokens[:256]) == [b2u[b] for b in range(256)]
    assert v.tokens[v.eos_id] == "<|endoftext|>" and v.bos_id == v.eos_id == 2047
    assert len(v.merges) == 2048 - 257
    for r, m in enumerate(v.merges):  # merge r creates token 256 + r from earlier tokens
        a, b = m.split(" ")
        assert v.tokens[256 + r] == a + b
    assert [v.token_bytes(i) for i in range(256)] == [bytes([i]) for i in range(256)]
    assert v.token_bytes(v.eos_id) == b"<|endoftext|>"
    assert v.decode(encode_fast(["héllo ✓"])[0]) == "héllo ✓"


def test_vocab_file_is_reproducible():
    data = json.loads((ROOT / "cascade_tui/factory/data/bpe2048.json").read_text(encoding="utf-8"))
    if f"Python {platform.python_version()} stdlib" not in data["source"]:
        pytest.skip("the shipped vocab was trained on another Python's stdlib")
    pytest.importorskip("tokenizers")
    r = subprocess.run([sys.executable, str(ROOT / "scripts/build_tokenizer.py"), "--check"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr


def test_llamacpp_pieces_equal_vocab(drafter):
    v = default_vocab()
    assert drafter.n_vocab() == v.n_vocab
    pieces = [_piece(drafter, i) for i in range(v.n_vocab)]
    assert pieces == v.pieces()
    # the high-level API loses pieces longer than 32 bytes (worth knowing for backends)
    assert drafter.detokenize([1167]) == b"" and len(v.token_bytes(1167)) > 32
    assert drafter.token_bos() == drafter.token_eos() == v.eos_id


@pytest.mark.parametrize("text", TEXTS)
def test_tokenize_matches_encode_fast_and_round_trips(drafter, text):
    ids = drafter.tokenize(text.encode(), add_bos=False)
    assert ids == encode_fast([text])[0]
    assert _detok(drafter, ids) == text.encode()
    with_bos = drafter.tokenize(text.encode(), add_bos=True)
    assert with_bos == [default_vocab().bos_id] + ids


def test_encode_fast_batch_and_special():
    assert encode_fast(TEXTS) == [encode_fast([t])[0] for t in TEXTS]
    assert encode_fast(["a<|endoftext|>b"], special=True)[0] == [97, 2047, 98]
    assert 2047 not in encode_fast(["a<|endoftext|>b"])[0]
    with pytest.raises(TypeError):
        encode_fast("not a list")


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=40))
def test_tokenize_agrees_on_random_text(drafter, text):
    ids = drafter.tokenize(text.encode(), add_bos=False)
    assert ids == encode_fast([text])[0]
    assert _detok(drafter, ids) == text.encode()


# --- writing ------------------------------------------------------------------------------------


def test_write_is_deterministic_and_fast(tmp_path):
    t0 = time.perf_counter()
    a = write_model(tmp_path / "a.gguf", arch="qwen3moe", seed=7)
    assert time.perf_counter() - t0 < 1.0
    b = write_model(tmp_path / "b.gguf", arch="qwen3moe", seed=7)
    c = write_model(tmp_path / "c.gguf", arch="qwen3moe", seed=8)
    assert a.read_bytes() == b.read_bytes() != c.read_bytes()


def test_weights_override(tmp_path):
    shapes = tensor_shapes(arch="llama")
    assert shapes["blk.0.ffn_gate_exps.weight"] == (8, 128, 64)
    assert shapes["blk.0.ffn_down_exps.weight"] == (8, 64, 128)
    assert shapes["blk.0.attn_k.weight"] == (32, 64)  # n_head_kv = 2, head_dim 16
    emb = np.arange(2048 * 64, dtype=np.float32).reshape(2048, 64) / 1e5
    p = write_model(tmp_path / "w.gguf", weights={"token_embd.weight": emb})
    base = {t.name: np.array(t.data) for t in gguf.GGUFReader(write_model(tmp_path / "r.gguf")).tensors}
    got = {t.name: np.array(t.data) for t in gguf.GGUFReader(p).tensors}
    assert np.array_equal(got["token_embd.weight"], emb)
    for name in base:  # only the given tensor changed
        if name != "token_embd.weight":
            assert np.array_equal(got[name], base[name]), name
    with pytest.raises(ValueError, match="expected"):
        write_model(tmp_path / "x.gguf", weights={"token_embd.weight": emb.T})
    with pytest.raises(ValueError, match="does not have"):
        write_model(tmp_path / "x.gguf", weights={"blk.0.ffn_gate.weight": emb})


@pytest.mark.parametrize(
    "kw",
    [dict(arch="nope"), dict(arch="qwen3moe", n_expert=0), dict(n_embd=60, n_head=8),
     dict(n_expert=4, n_expert_used=5), dict(arch="olmoe", n_head_kv=2), dict(n_ff_shared=64),
     dict(dtype="q4_0"), dict(n_dense_lead=1)],
)
def test_bad_configs_raise(tmp_path, kw):
    with pytest.raises(ValueError):
        write_model(tmp_path / "bad.gguf", **kw)


def test_moe_layer_ids():
    assert moe_layer_ids("llama", 3) == (0, 1, 2)
    assert moe_layer_ids("llama", 3, n_expert=0) == ()
    assert moe_layer_ids("deepseek2", 3) == (1, 2)
    assert moe_layer_ids("deepseek2", 3, n_dense_lead=0) == (0, 1, 2)


# --- llama.cpp loads every architecture -------------------------------------------------------


def _kv(reader, key):
    f = reader.fields[key]
    if f.types and f.types[0] == gguf.GGUFValueType.ARRAY:
        return len(f.data)
    v = f.parts[f.data[0]]
    return bytes(v).decode() if f.types[0] == gguf.GGUFValueType.STRING else v.item()


@pytest.mark.parametrize("arch", ARCHS)
def test_arch_loads_and_generates(models, arch):
    path = models[arch]
    r = gguf.GGUFReader(path)
    a = _kv(r, "general.architecture")
    assert a == arch
    assert _kv(r, f"{a}.expert_count") == 8
    assert _kv(r, f"{a}.expert_used_count") == 2
    assert _kv(r, f"{a}.block_count") == 2
    assert _kv(r, f"{a}.embedding_length") == 64
    assert _kv(r, "tokenizer.ggml.model") == "gpt2" and _kv(r, "tokenizer.ggml.pre") == "gpt-2"
    assert _kv(r, "tokenizer.ggml.tokens") == 2048
    assert _kv(r, "tokenizer.ggml.eos_token_id") == 2047
    if arch == "deepseek2":
        assert _kv(r, "deepseek2.leading_dense_block_count") == 1
    moe = moe_layer_ids(arch, 2)
    names = {t.name for t in r.tensors}
    assert all(f"blk.{i}.ffn_gate_exps.weight" in names for i in moe)
    assert set(names) == set(tensor_shapes(arch=arch))

    llm = _load(path)
    try:
        assert llm.n_vocab() == 2048
        prompt = llm.tokenize(TEXTS[0].encode())
        out = []
        for tok in llm.generate(prompt, temp=0.0, top_k=1, reset=True):
            out.append(tok)
            if len(out) == 8:
                break
        assert len(out) == 8 and all(0 <= t < 2048 for t in out)
        assert len(set(out)) > 1  # not stuck on one token
        meta = llm.metadata
        assert meta["general.architecture"] == arch and meta[f"{arch}.expert_count"] == "8"
    finally:
        llm.close()


def test_dense_drafter(models, drafter):
    r = gguf.GGUFReader(models["dense"])
    assert "llama.expert_count" not in r.fields
    assert not any("exps" in t.name for t in r.tensors)
    out = []
    for tok in drafter.generate(drafter.tokenize(b"import "), temp=0.0, top_k=1, reset=True):
        out.append(tok)
        if len(out) == 6:
            break
    assert len(out) == 6


@pytest.mark.parametrize("arch", ARCHS)
def test_f16_close_to_f32(tmp_path, arch):
    ids = encode_fast([TEXTS[1]])[0][:24]
    logits = {}
    for dt in ("f32", "f16"):
        p = write_model(tmp_path / f"{dt}.gguf", arch=arch, dtype=dt, seed=3, n_layer=3)
        llm = _load(p, logits_all=True)
        llm.eval(ids)
        logits[dt] = np.array(llm.scores[: len(ids)])
        llm.close()
    a, b = logits["f32"], logits["f16"]
    assert np.abs(a - b).max() < 0.05 * a.std()
    assert (a.argmax(1) == b.argmax(1)).mean() > 0.9


# --- numerics: a numpy forward pass following the module docstring equals llama.cpp -------------


def _rms(x, w):
    return x / np.sqrt((x * x).mean(-1, keepdims=True) + NORM_EPS) * w


def _rope(x, style, base=10000.0):  # x: [n, heads, d]
    n, _, d = x.shape
    inv = base ** (-np.arange(0, d, 2, dtype=np.float64) / d)
    ang = np.arange(n)[:, None] * inv[None, :]
    cos, sin = np.cos(ang)[:, None, :], np.sin(ang)[:, None, :]
    if style == "norm":
        x0, x1 = x[..., 0::2], x[..., 1::2]
        out = np.empty_like(x)
        out[..., 0::2], out[..., 1::2] = x0 * cos - x1 * sin, x0 * sin + x1 * cos
        return out
    x0, x1 = x[..., : d // 2], x[..., d // 2:]
    return np.concatenate([x0 * cos - x1 * sin, x0 * sin + x1 * cos], -1)


def _silu(x):
    return x / (1 + np.exp(-x))


def reference_forward(path, arch, ids, n_head=4, n_head_kv=2, k=2):
    """Logits [n, vocab] and top-k expert ids per MoE layer, in float64."""
    W = {t.name: np.array(t.data, dtype=np.float64) for t in gguf.GGUFReader(path).tensors}
    h = W["token_embd.weight"][ids]
    n = len(ids)
    routes = []
    i = 0
    while f"blk.{i}.attn_norm.weight" in W:
        b = f"blk.{i}."
        x = _rms(h, W[b + "attn_norm.weight"])
        q, kk, v = (x @ W[b + f"attn_{c}.weight"].T + W.get(b + f"attn_{c}.bias", 0) for c in "qkv")
        if arch == "olmoe":
            q, kk = _rms(q, W[b + "attn_q_norm.weight"]), _rms(kk, W[b + "attn_k_norm.weight"])
        hd = q.shape[1] // n_head
        q, kk, v = q.reshape(n, n_head, hd), kk.reshape(n, -1, hd), v.reshape(n, -1, hd)
        if arch == "qwen3moe":
            q, kk = _rms(q, W[b + "attn_q_norm.weight"]), _rms(kk, W[b + "attn_k_norm.weight"])
        q, kk = _rope(q, ROPE_STYLE[arch]), _rope(kk, ROPE_STYLE[arch])
        g = n_head // kk.shape[1]
        kk, v = np.repeat(kk, g, axis=1), np.repeat(v, g, axis=1)
        s = np.einsum("qhd,khd->hqk", q, kk) / np.sqrt(hd)
        s = np.where(np.tril(np.ones((n, n), bool))[None], s, -np.inf)
        p = np.exp(s - s.max(-1, keepdims=True))
        p /= p.sum(-1, keepdims=True)
        o = np.einsum("hqk,khd->qhd", p, v).reshape(n, -1)
        h = h + o @ W[b + "attn_output.weight"].T
        x = _rms(h, W[b + "ffn_norm.weight"])
        logits = x @ W[b + "ffn_gate_inp.weight"].T
        pr = np.exp(logits - logits.max(-1, keepdims=True))
        pr /= pr.sum(-1, keepdims=True)
        top = np.argsort(-pr, axis=-1, kind="stable")[:, :k]
        routes.append(top)
        out = np.zeros_like(h)
        for t in range(n):
            wts = pr[t, top[t]]
            if MOE_NORM_TOPK[arch]:
                wts = wts / wts.sum()
            for e, wt in zip(top[t], wts):
                a = _silu(W[b + "ffn_gate_exps.weight"][e] @ x[t]) * (W[b + "ffn_up_exps.weight"][e] @ x[t])
                out[t] += wt * (W[b + "ffn_down_exps.weight"][e] @ a)
        if b + "ffn_gate_shexp.weight" in W:
            gate = 1 / (1 + np.exp(-(x @ W[b + "ffn_gate_inp_shexp.weight"])))
            a = _silu(x @ W[b + "ffn_gate_shexp.weight"].T) * (x @ W[b + "ffn_up_shexp.weight"].T)
            out += gate[:, None] * (a @ W[b + "ffn_down_shexp.weight"].T)
        h = h + out
        i += 1
    h = _rms(h, W["output_norm.weight"])
    return h @ W["output.weight"].T, routes


@pytest.mark.parametrize("arch", ["llama", "qwen2moe", "qwen3moe", "olmoe"])
def test_llamacpp_matches_documented_math(models, arch):
    ids = [2047] + encode_fast([TEXTS[0]])[0][:20]
    llm = _load(models[arch], logits_all=True)
    try:
        llm.eval(ids)
        got = np.array(llm.scores[: len(ids)], dtype=np.float64)
    finally:
        llm.close()
    want, routes = reference_forward(models[arch], arch, ids, n_head_kv=4 if arch == "olmoe" else 2)
    assert np.abs(got - want).max() < 0.02 * want.std(), np.abs(got - want).max()
    assert (got.argmax(1) == want.argmax(1)).all()
    assert want.std() > 1.0  # logits are spread out, argmaxes clear
    for top in routes:  # routing is varied: most experts used, top-1 not constant
        assert len(np.unique(top)) >= 6 and len(np.unique(top[:, 0])) >= 3


def test_permute_qk_converts_rotate_half_to_llama_rope(tmp_path):
    # A q projection written for HF rotate_half, permuted, must give llama-style RoPE the same scores.
    rng = np.random.default_rng(0)
    n_head, hd, n = 2, 8, 5
    wq = rng.standard_normal((n_head * hd, 16))
    x = rng.standard_normal((n, 16))
    hf = _rope((x @ wq.T).reshape(n, n_head, hd), "neox")
    ll = _rope((x @ permute_qk(wq, n_head).T).reshape(n, n_head, hd), "norm")
    # same dot products between positions (the attention scores), element order aside
    assert np.allclose(np.einsum("qhd,khd->hqk", hf, hf), np.einsum("qhd,khd->hqk", ll, ll))


@pytest.mark.parametrize("arch", ["llama", "qwen3moe"])
def test_tied_embeddings(tmp_path, arch):
    tied = write_model(tmp_path / "tied.gguf", arch=arch, tie_embeddings=True, seed=5)
    assert "output.weight" not in {t.name for t in gguf.GGUFReader(tied).tensors}
    emb = next(np.array(t.data) for t in gguf.GGUFReader(tied).tensors if t.name == "token_embd.weight")
    untied = write_model(tmp_path / "untied.gguf", arch=arch, seed=5, weights={"output.weight": emb})
    ids = encode_fast([TEXTS[1]])[0][:12]
    scores = []
    for p in (tied, untied):
        llm = _load(p, logits_all=True)  # without it Llama.eval fills no scores (0.3.36)
        llm.eval(ids)
        scores.append(np.array(llm.scores[len(ids) - 1]))
        llm.close()
    assert np.allclose(scores[0], scores[1], atol=1e-4)
    with pytest.raises(ValueError, match="output.weight"):
        write_model(tmp_path / "bad.gguf", arch="qwen2moe", tie_embeddings=True)
