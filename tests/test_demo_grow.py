"""The grown demo target (cascade_tui/demo/grow.py), the CLI's default model: built once into the
user cache (atomically; a Ctrl-C leaves nothing), writes the shipped model's greedy text, and
speculation on it is lossless. Also: every built-in prompt makes the demo pair write text.

Real llama.cpp throughout. The grown file (405 MB) is built once per module into a temporary
cache (about a second from the page cache), once more for the CLI's first-run test."""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import backends.llamacpp  # noqa: F401  (llama.cpp before numpy, see backends/llamacpp/lib.py)
from backends.llamacpp.target import load_target
from cascade_tui.demo import demo_draft_path, demo_target_path
from cascade_tui.fileid import sha256_file
from cascade_tui.demo import grow
from cascade_tui.workloads.builtin import BUILTIN

import numpy as np  # noqa: E402  (after llama.cpp)

README = Path(__file__).resolve().parents[1] / "README.md"
# the quick start's prompt, read from README.md so that this test follows the README
README_PROMPT = re.search(r'cascade-tui run --prompt "([^"]+)"', README.read_text()).group(1)
README_PROMPTS = (README_PROMPT, "def fibonacci(n):")
MIN_TOKENS = 32  # every built-in prompt writes at least this much before any EOS


@pytest.fixture(scope="module")
def cache_root(tmp_path_factory):
    """Stands for the user cache (``$CASCADE_TUI_CACHE``); the grown target goes in its ``demo/``."""
    return tmp_path_factory.mktemp("grow-cache")


@pytest.fixture(scope="module")
def cache(cache_root):
    return cache_root / "demo"


@pytest.fixture(scope="module")
def grown(cache):
    calls = []
    path = grow.ensure_grown_target(demo_target_path(), cache=cache, progress=lambda d, t: calls.append((d, t)))
    return path, calls


@pytest.fixture(scope="module")
def shipped():
    t = load_target(demo_target_path(), n_ctx=1024, n_threads=1, routing=False)
    yield t
    t.close()


def greedy(target, prompt: str, n: int) -> list[int]:
    target.truncate(0)
    toks = target.tokenize(prompt)
    nxt = int(np.argmax(target.eval(toks).logits[-1]))
    out: list[int] = []
    while len(out) < n and nxt not in target.eos_ids:
        out.append(nxt)
        nxt = int(np.argmax(target.eval([nxt]).logits[-1]))
    return out


# -- building and caching ----------------------------------------------------------------------------
def test_grown_model_is_written_once_and_reused(grown, cache):
    path, calls = grown
    assert path.is_file() and path.name == "target.gguf" and Path(cache) in path.parents
    total = calls[-1][1]
    assert calls[0] == (0, total) and calls[-1] == (total, total)
    assert [d for d, _ in calls] == sorted(d for d, _ in calls)
    assert 300_000_000 < path.stat().st_size < 600_000_000  # beyond this CPU's 300 MiB L3, small to build
    assert not list(path.parent.glob("*.tmp"))
    before = path.stat()
    again = []
    assert grow.ensure_grown_target(demo_target_path(), cache=cache, progress=lambda d, t: again.append(d)) == path
    assert again == []  # reused: no progress, no rewrite
    assert (path.stat().st_mtime_ns, path.stat().st_ino) == (before.st_mtime_ns, before.st_ino)
    # the key follows the shipped file's sha256 and the growth parameters
    assert grow.grown_target_path(cache, demo_target_path()) == path
    assert sha256_file(demo_target_path())[:16] in path.parent.name
    assert grow.grown_target_path(cache, demo_target_path(), 2048) != path
    assert grow.grown_target_path(cache, demo_target_path(), expert_dtype="f32") != path


def test_grown_model_has_the_shipped_shape_but_wider_experts(grown):
    import gguf

    path, _ = grown
    src, dst = gguf.GGUFReader(str(demo_target_path())), gguf.GGUFReader(str(path))
    assert dst.fields["llama.feed_forward_length"].contents() == grow.GROWN_FF
    for key in ("llama.expert_count", "llama.expert_used_count", "llama.embedding_length", "llama.block_count",
                "tokenizer.ggml.tokens", "tokenizer.ggml.merges", "tokenizer.ggml.eos_token_id"):
        assert dst.fields[key].contents() == src.fields[key].contents(), key
    a = {t.name: t for t in src.tensors}
    b = {t.name: t for t in dst.tensors}
    assert list(a) == list(b)
    for name, t in a.items():
        g = b[name]
        if "_exps." in name:
            n_ff = t.data.shape[2] if "down" in name else t.data.shape[1]
            trained = g.data[:, :, :n_ff] if "down" in name else g.data[:, :n_ff, :]
            rest = g.data[:, :, n_ff:] if "down" in name else g.data[:, n_ff:, :]
            assert g.data.dtype == t.data.dtype and np.array_equal(trained, t.data), name
            assert not rest.any(), name  # the added hidden units are exact zeros
        else:
            assert g.tensor_type == t.tensor_type and np.array_equal(g.data, t.data), name


def test_an_interrupted_build_leaves_no_file(tmp_path):
    def stop(done, total):
        if done > total // 3:
            raise KeyboardInterrupt

    dest = grow.grown_target_path(tmp_path, demo_target_path(), 1024)
    with pytest.raises(KeyboardInterrupt):
        grow.ensure_grown_target(demo_target_path(), 1024, cache=tmp_path, progress=stop)
    assert not dest.exists() and list(dest.parent.iterdir()) == []
    # a killed build's temp file (its process gone) is cleaned up by the next build
    stale = dest.with_name(f"{dest.name}.999999999.tmp")
    stale.write_bytes(b"half a model")
    assert grow.ensure_grown_target(demo_target_path(), 1024, cache=tmp_path) == dest
    assert dest.is_file() and not stale.exists()


def test_bad_growth_parameters_are_refused(tmp_path):
    with pytest.raises(ValueError, match="below"):
        grow.build_grown_target(tmp_path / "x.gguf", demo_target_path(), 64)
    with pytest.raises(ValueError, match="expert_dtype"):
        grow.build_grown_target(tmp_path / "x.gguf", demo_target_path(), 1024, "q8")
    with pytest.raises(ValueError, match="not a MoE"):
        grow.build_grown_target(tmp_path / "x.gguf", demo_draft_path(), 1024)
    assert list(tmp_path.iterdir()) == []


# -- same text ---------------------------------------------------------------------------------------
def test_grown_logits_are_bit_identical_to_the_shipped_models(grown, shipped):
    """Along the shipped model's greedy answers (README prompts, the first built-in prompts of each
    set) the grown model computes the very same logits, bit for bit (teacher-forced, one batch
    each; bit identity is structural, so a few prompts stand for all), and the README prompt's
    256-token answer is the same when generated token by token."""
    path, _ = grown
    g = load_target(path, n_ctx=1024, n_threads=1, routing=False)
    try:
        for prompt in README_PROMPTS + tuple(p for name in ("code", "extraction", "math") for p in BUILTIN[name][:2]):
            out = greedy(shipped, prompt, 24)
            toks = shipped.tokenize(prompt)
            shipped.truncate(0)
            g.truncate(0)
            assert np.array_equal(g.eval(toks + out).logits, shipped.eval(toks + out).logits), prompt
        assert greedy(g, README_PROMPTS[0], 256) == greedy(shipped, README_PROMPTS[0], 256)
    finally:
        g.close()


def test_f32_experts_are_close_but_not_bit_identical(tmp_path, shipped):
    """The faster-verifying F32 option: same weights, the experts' input no longer rounded to F16."""
    import gguf

    path = grow.build_grown_target(tmp_path / "f32.gguf", demo_target_path(), 1024, "f32")
    assert {t.tensor_type for t in gguf.GGUFReader(str(path)).tensors if "_exps." in t.name} == {
        gguf.GGMLQuantizationType.F32}
    g = load_target(path, n_ctx=512, n_threads=1, routing=False)
    try:
        out = greedy(shipped, BUILTIN["code"][0], 64)
        toks = shipped.tokenize(BUILTIN["code"][0])
        shipped.truncate(0)
        a, b = shipped.eval(toks + out).logits, g.eval(toks + out).logits
        assert np.median(np.abs(a - b)) < 0.01
        assert (np.argmax(a, axis=1) == np.argmax(b, axis=1)).mean() > 0.95
    finally:
        g.close()


def test_every_builtin_prompt_writes_text_on_the_demo_pair(shipped):
    draft = load_target(demo_draft_path(), n_ctx=1024, n_threads=1, routing=False)
    try:
        for name in ("code", "extraction", "math"):
            for prompt in BUILTIN[name]:
                out = greedy(shipped, prompt, MIN_TOKENS)
                assert len(out) == MIN_TOKENS, (name, prompt)  # no EOS straight away
                assert shipped.detokenize(out).strip(), (name, prompt)
                assert len(greedy(draft, prompt, 8)) == 8, (name, prompt)
    finally:
        draft.close()


def test_the_quick_start_prompt_gets_ten_lines_of_python(shipped):
    """What a newcomer reads first: the README's prompt answered (greedy, 256 tokens, the length
    ``run`` writes) with 10+ lines that parse as Python, all but the last cut-off statement."""
    text = shipped.detokenize(greedy(shipped, README_PROMPT, 256))
    text = text.decode("utf-8", "replace") if isinstance(text, bytes) else text
    lines = (README_PROMPT + text).split("\n")[:-1]
    while lines and (not lines[-1].strip() or lines[-1].rstrip().endswith(":")):
        lines.pop()  # a block header whose body was the cut-off line is part of that statement
    assert len(lines) >= 10 and sum(1 for ln in lines if ln.strip()) >= 8, text
    ast.parse("\n".join(lines))  # raises on anything that is not Python


# -- the CLI's default ----------------------------------------------------------------------------------
def _cli(*args, cache):
    env = {**os.environ, "CASCADE_TUI_CACHE": str(cache), "CASCADE_TUI_COST_CACHE": str(Path(cache) / "costs")}
    p = subprocess.run([sys.executable, "-m", "cascade_tui", *map(str, args)], capture_output=True, text=True,
                       timeout=300, env=env)
    assert p.returncode == 0, (p.stdout[-2000:], p.stderr[-2000:])
    return p


def test_cli_default_is_the_grown_target_built_once_with_one_progress_line(tmp_path):
    args = ("run", "--prompt", "def getregentry():", "--threads", "1", "--max-tokens", "16", "--no-record",
            "--json", "--policy", "off")
    first = _cli(*args, cache=tmp_path)
    assert "building the demo target" in first.stderr
    assert len([ln for ln in first.stderr.splitlines() if "building the demo target" in ln]) == 1
    second = _cli(*args, cache=tmp_path)
    assert "building" not in second.stderr
    out1, out2 = json.loads(first.stdout), json.loads(second.stdout)
    grown = grow.grown_target_path(tmp_path / "demo", demo_target_path())
    assert out1["model"] == out2["model"] == str(grown) and grown.is_file()
    assert out1["draft"].endswith(os.path.join("demo", "draft.gguf"))
    assert out1["text"] == out2["text"] and out1["generated_tokens"] == 16


def test_speculation_on_the_grown_target_is_lossless(grown, cache_root, tmp_path):
    """Greedy output of every policy equals off on the default (grown) target, on prompts where the
    drafter agrees for long stretches (code) and where it mostly does not (math): one bench run."""
    prompts = tmp_path / "p.jsonl"
    prompts.write_text("".join(json.dumps({"prompt": p, "workload": w}) + "\n"
                               for w, p in (("code", BUILTIN["code"][0]), ("math", BUILTIN["math"][0]))))
    _cli("bench", "--prompts", prompts, "--policies", "static:1,static:4,cascade,heuristic", "--threads", "1",
         "-n", "64", "--json", tmp_path / "r.json", cache=cache_root)
    d = json.loads((tmp_path / "r.json").read_text())
    assert d["model"] == str(grown[0])
    assert {r["policy"] for r in d["results"]} == {"off", "static:1", "static:4", "cascade", "heuristic"}
    assert all(r["identical_to_off"] and r["generated_tokens"] == 64 for r in d["results"])
    accept = {(r["workload"], r["policy"]): r["acceptance_rate"] for r in d["results"]}
    assert accept[("code", "static:4")] > 0.8 > accept[("math", "static:4")]  # the two regimes


# -- the quick start shows speculation switching ------------------------------------------------------
class _Timed:
    """A real model whose evals advance a scripted clock by a fixed cost (the real eval runs too):
    the policy then sees the grown demo's costs without this machine's noise."""

    def __init__(self, model, clock, cost):
        self._model, self._clock, self._cost = model, clock, cost

    def eval(self, tokens):
        out = self._model.eval(tokens)
        self._clock.now += self._cost(len(tokens))
        return out

    def __getattr__(self, name):
        return getattr(self._model, name)


def test_the_quick_start_answer_switches_speculation_off_and_back_on(grown):
    """README's first command on the default demo (grown target, demo drafter, the default
    policy): within its 256-token answer speculation goes off where the drafter cannot follow
    (the first line) and comes back on for the codec boilerplate, for a long stretch each, and
    the text is exactly plain decoding's. Costs are the grown demo's measured ones (a scripted
    clock), acceptance is the real drafter's on the real text."""
    from backends.model_drafter import ModelDrafter
    from cascade_tui.engine import GenerationConfig, IterationEvent, SpeculativeDecoder
    from cascade_tui.policy import DEFAULT_POLICY, make_policy
    from fakes import ScriptedClock, grown_demo

    clock = ScriptedClock()
    target = load_target(grown[0], n_ctx=1024, n_threads=1, routing=False)
    draft = load_target(demo_draft_path(), n_ctx=1024, n_threads=1, routing=False)
    try:
        def draft_cost(n):  # a drafter eval: 0.3 ms + 0.05 ms a token
            return 1e-3 * (0.3 + 0.05 * n)

        dec = SpeculativeDecoder(_Timed(target, clock, grown_demo),
                                 ModelDrafter(_Timed(draft, clock, draft_cost), max_catch_up=32),
                                 make_policy(DEFAULT_POLICY), clock=clock)
        its = [e for e in dec.generate(README_PROMPT, GenerationConfig(max_tokens=256)) if isinstance(e, IterationEvent)]
        out = [t for e in its for t in e.emitted]
        assert out == greedy(target, README_PROMPT, 256)
    finally:
        target.close()
        draft.close()
    ks = [e.k for e in its]
    runs, cur = [], None  # (on?, iterations, tokens) per stretch
    for e in its:
        on = e.k > 0
        if cur is None or cur[0] != on:
            cur = [on, 0, 0]
            runs.append(cur)
        cur[1] += 1
        cur[2] += len(e.emitted)
    assert ks[0] > 0 or ks[1] > 0, ks  # it tries first
    off = max((r for r in runs if not r[0]), key=lambda r: r[1])
    after = runs[runs.index(off) + 1:]
    assert off[1] >= 10 and any(r[0] and r[2] >= 60 for r in after), runs  # off, then long drafts
    assert any(e.shadow for e in its) and sum(e.k > 0 for e in its) > 10
