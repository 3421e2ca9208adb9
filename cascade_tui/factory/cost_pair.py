"""Cost-realistic synthetic pairs: an MoE target that costs what a Mixtral costs, and drafters
whose greedy agreement with it is a parameter.

The bundled demo pair is small enough to be compute-bound: verifying ``n`` tokens costs about
``n`` times one. A real MoE is memory-bound, so verifying ``n`` tokens costs what reading the
*union* of their experts costs (DESIGN.md section 5). This module writes pairs with that cost
structure, at real sizes, without training anything:

* **target** (arch ``llama`` with experts, F16): the greedy next token is a fixed permutation of
  the current one, ``next[t]`` -- one big cycle over the normal (non-control) tokens, so greedy
  text never reaches EOS. The permutation is carried on the residual stream: unit-RMS random
  embeddings ``E[t]``, and an explicit output head whose row ``next[u]`` is ``E[u]`` (scaled so the
  winning logit is about :data:`LOGIT_TOP`), so ``argmax output(norm(E[t])) = next[t]`` with a wide
  margin. Attention and experts are real random weights (every matmul of a Mixtral block runs),
  their output projections scaled down (:data:`BLOCK_SCALE`) so they perturb the residual by a
  few percent and never flip the argmax. The router reads the same residual, so each token picks
  its own, roughly uniform, top-2: ``n`` distinct tokens touch ``8 (1 - (6/8)^n)`` experts per layer
  on average, like a real MoE and unlike a batch that always hits the same experts.
* **drafters** (dense ``llama``, 1-4 layers, small hidden): the same construction with a
  low-dimensional embedding of their own and a head that predicts ``next[t]`` for a chosen
  fraction ``agreement`` of tokens and a fixed wrong normal token for the others. Greedy drafting
  along the target's own text is then accepted token by token with probability ``agreement``
  (independently along the cycle). Every drafter of one seed shares its embedding and its wrong
  tokens; a higher agreement agrees on a superset of tokens. Drafters never read the target's
  file, so writing one more costs only the drafter.

Both share the factory's 2048-token BPE vocabulary (:func:`~cascade_tui.factory.default_vocab`),
so they pass the engine's vocabulary check. Everything is seeded: same arguments, byte-identical
files. Tensors are generated and written one at a time (the expert stacks one expert at a time),
so writing the 23 GB ``gpu`` target needs well under 0.5 GB of RAM, not 23 GB (``gpu-small``,
5.8 GB: 0.2 GB peak).

    from cascade_tui.factory import write_cost_pair
    pair = write_cost_pair("/tmp/cost-pair", size="cpu", agreement=(0.5, 0.8, 0.95, 1.0))
    pair.target, pair.drafters[0.8]

Sizes (:data:`SIZES`; :func:`size_bytes` gives the exact file sizes):

=============  ==========================================================  =======  =========
size           target: 8 experts top-2, F16 / drafter: dense llama          target   drafter
=============  ==========================================================  =======  =========
``tiny``       4 layers, 128 hidden, ff 256 / 1 layer, 128 hidden (tests)      8 MB   1.4 MB
``cpu-small``  8 layers, 512 hidden, ff 1408 / 1 layer, 256 hidden           292 MB   3.7 MB
``cpu``        8 layers, 1024 hidden, ff 2816 / 1 layer, 512 hidden         1.16 GB    10 MB
``gpu-small``  8 layers, 2048 hidden, ff 7168 / 2 layers, 1024 hidden       5.8 GB    69 MB
``gpu``        8 layers, 4096 hidden, ff 14336 / 4 layers, 1024 hidden      23.3 GB   130 MB
=============  ==========================================================  =======  =========

``cpu`` is a Mixtral block at 1/4 width, ``gpu`` is Mixtral 8x7B's block (8 of its 32 layers), the
shape measured on the H100 in DESIGN.md. Writing runs at about 150 MB/s on one core (``cpu``: 8 s;
``gpu``: about 4 minutes, 0.3 GB peak RSS), bounded by random-number generation and the disk.

Measured (``cpu`` preset, one CPU thread, llama.cpp 0.3.36): verifying 9 distinct tokens costs
4.6x one token and 9 copies of one token 2.8x; a fit over both is about 13 ms per token plus 14 ms
per unique expert per layer, so the expert union is about 40% of a 9-token verify even on a
CPU, where F16 compute is slow; on a GPU the per-token term nearly vanishes (DESIGN.md section 5).
The ``cpu`` drafter costs about 0.5-0.8 ms per token (~1% of a target token).
"""

from __future__ import annotations

import json
import os
import zlib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np

from .gguf_models import _config, _keep_f32, _plan, _write_kv
from .tokenizer import BPEVocab, default_vocab

__all__ = [
    "BLOCK_SCALE",
    "CostPair",
    "DraftShape",
    "LOGIT_TOP",
    "SIZES",
    "TargetShape",
    "cost_drafter_next",
    "cost_target_next",
    "cycle_prompts",
    "size_bytes",
    "write_cost_drafter",
    "write_cost_pair",
    "write_cost_target",
]

#: Logit of the intended next token (others are ~N(0, LOGIT_TOP / sqrt(n_embd))): greedy and
#: temperature-1 sampling both follow the permutation.
LOGIT_TOP = 16.0
#: Scale of the attention output and expert down projections relative to a plain 1/sqrt(fan_in)
#: init: each block adds a perturbation of about this RMS to the unit-RMS residual.
BLOCK_SCALE = 0.05
#: Router logit std for a unit-RMS input (as the factory's random MoEs).
ROUTER_STD = 3.0
#: Bumped whenever the construction changes (it is written into every file and checked on reuse).
GENERATOR_VERSION = 1
#: Largest chunk generated at once (elements): bounds memory for the big sizes.
_CHUNK = 1 << 24

_META_KEY = "cascade.cost_pair"

Progress = Callable[[int, int, str], None]
"""``progress(done_bytes, total_bytes, label)``, called as tensors are written."""


@dataclass(frozen=True)
class TargetShape:
    n_layer: int
    n_embd: int
    n_head: int
    n_head_kv: int
    n_ff: int
    n_expert: int = 8
    n_expert_used: int = 2


@dataclass(frozen=True)
class DraftShape:
    n_layer: int
    n_embd: int
    n_head: int
    n_head_kv: int
    n_ff: int


@dataclass(frozen=True)
class _Size:
    target: TargetShape
    draft: DraftShape
    note: str = ""


#: Named presets: target and default drafter shapes.
SIZES: dict[str, _Size] = {
    "tiny": _Size(TargetShape(4, 128, 4, 2, 256), DraftShape(1, 128, 2, 1, 256),
                  "tests: a few MB, written in well under a second"),
    "cpu-small": _Size(TargetShape(8, 512, 8, 2, 1408), DraftShape(1, 256, 4, 2, 768),
                       "~0.3 GB: a quick CPU pair"),
    "cpu": _Size(TargetShape(8, 1024, 8, 2, 2816), DraftShape(1, 512, 8, 2, 1536),
                 "~1.2 GB: Mixtral-shaped block at 1/4 width, the CPU measurement size"),
    "gpu-small": _Size(TargetShape(8, 2048, 16, 4, 7168), DraftShape(2, 1024, 16, 4, 4096),
                       "~5.8 GB: Mixtral block at 1/2 width"),
    "gpu": _Size(TargetShape(8, 4096, 32, 8, 14336), DraftShape(4, 1024, 16, 4, 4096),
                 "~23 GB: Mixtral 8x7B's block (8 of its 32 layers), as measured on the H100"),
}


@dataclass(frozen=True)
class CostPair:
    """What :func:`write_cost_pair` wrote: ``drafters`` maps each agreement to its file."""

    target: Path
    drafters: dict[float, Path] = field(default_factory=dict)
    size: str = "cpu"
    seed: int = 0
    written: tuple[Path, ...] = ()  # files written by this call (the others were reused)


# --- the permutation and the drafters' predictions --------------------------------------------


def _rng(seed: int, name: str, *extra: int) -> np.random.Generator:
    return np.random.default_rng(
        [seed & 0xFFFFFFFF, seed >> 32 & 0xFFFFFFFF, zlib.crc32(name.encode()), *extra]
    )


def _normal_ids(vocab: BPEVocab) -> np.ndarray:
    specials = set(vocab.special_ids)
    return np.array([i for i in range(vocab.n_vocab) if i not in specials], dtype=np.int64)


def _cycle_order(seed: int, vocab: BPEVocab) -> np.ndarray:
    """The normal tokens in the order the target's greedy text walks them (``order[i + 1]``
    follows ``order[i]``; the last leads back to the first)."""
    return _rng(seed, "cycle").permutation(_normal_ids(vocab))


def cost_target_next(seed: int = 0, vocab: BPEVocab | None = None) -> np.ndarray:
    """``next[t]``: the target's greedy next token after token ``t``, for every id.

    One cycle through all normal tokens (so greedy text never ends); control tokens (BOS/EOS)
    lead to the cycle's first token.
    """
    vocab = vocab or default_vocab()
    order = _cycle_order(seed, vocab)
    nxt = np.full(vocab.n_vocab, order[0], dtype=np.int64)
    nxt[order] = np.roll(order, -1)
    return nxt


def cost_drafter_next(seed: int = 0, agreement: float = 0.9, vocab: BPEVocab | None = None,
                      phase_len: int = 0) -> np.ndarray:
    """``draft_next[t]``: the drafter's greedy next token after ``t``. Equals
    :func:`cost_target_next` on ``round(agreement * N)`` of the ``N`` normal tokens (a prefix of
    one seeded order, so a higher agreement agrees on a superset), and a fixed wrong normal token
    on the others. Control tokens agree.

    ``phase_len > 0``: acceptance that changes along the text. The target's cycle is cut into
    blocks of ``phase_len`` consecutive tokens; in every other block the drafter agrees on every
    token, in the blocks between on the fraction ``agreement`` only. Greedy text then alternates
    between ``phase_len`` easy tokens and ``phase_len`` hard ones."""
    agreement = _check_agreement(agreement)
    vocab = vocab or default_vocab()
    nxt = cost_target_next(seed, vocab)
    normal = _normal_ids(vocab)
    n = len(normal)
    priority = _rng(seed, "draft.agree").permutation(normal)
    # a wrong token per normal token: a random normal token other than the right one
    r = _rng(seed, "draft.wrong").integers(0, n - 1, size=vocab.n_vocab)
    pos_right = np.searchsorted(normal, nxt)  # index of next[t] among the normal ids
    wrong = normal[np.where(r >= pos_right, r + 1, r)]
    out = nxt.copy()
    bad = priority[int(round(agreement * n)):]
    if phase_len > 0:
        order = _cycle_order(seed, vocab)
        pos = np.empty(vocab.n_vocab, dtype=np.int64)
        pos[order] = np.arange(n)
        bad = bad[(pos[bad] // int(phase_len)) % 2 == 1]  # easy blocks agree everywhere
    out[bad] = wrong[bad]
    return out


def cycle_prompts(n: int, tokens: int, tokenize: Callable[[str], Sequence[int]], *, seed: int = 0,
                  vocab: BPEVocab | None = None) -> list[str]:
    """``n`` prompts whose greedy continuations are ``n`` different stretches of the target's cycle.

    The target's next token depends on the current token only, so every prompt that ends on the
    same token gets the same text: the bench's built-in code prompts all end on ``:`` (two
    distinct tokens among 12 prompts), so "4 prompts" were one 128-token text measured four
    times, and one text's few misses decided which K looked best. These prompts end on tokens
    evenly spaced around the cycle, so their continuations of ``tokens`` tokens do not overlap
    (while ``n * tokens`` fits in the cycle) and each meets its own misses.

    ``tokenize(text)``: the model's tokenizer (ids, no BOS); a prompt is kept only where it ends on
    the chosen token (BPE can merge a piece with what precedes it).
    """
    vocab = vocab or default_vocab()
    order = _cycle_order(seed, vocab)
    length = len(order)
    if not 1 <= n <= length or tokens < 1:
        raise ValueError(f"need 1 <= n <= {length} and tokens >= 1, not n={n}, tokens={tokens}")
    spacing = length // n
    slack = max(spacing - tokens, 1)  # how far a start may move along and stay clear of the next stretch
    prompts = []
    for i in range(n):
        for j in range(slack):
            t = int(order[(i * spacing + j) % length])
            text = f"Continue text {i + 1}:\n" + vocab.decode([t])
            ids = list(tokenize(text))
            if ids and ids[-1] == t:
                prompts.append(text)
                break
        else:
            raise ValueError(f"no prompt ends on a token near cycle position {i * spacing}")
    return prompts


def _check_agreement(agreement) -> float:
    a = float(agreement)
    if not 0.0 <= a <= 1.0:
        raise ValueError(f"agreement must be in [0, 1], not {agreement!r}")
    return a


# --- tensors ----------------------------------------------------------------------------------


def _unit_rms_rows(rng: np.random.Generator, n: int, d: int) -> np.ndarray:
    e = rng.standard_normal((n, d), dtype=np.float32)
    e *= np.sqrt(d, dtype=np.float32) / np.linalg.norm(e, axis=1, keepdims=True)
    return e


def _head(emb16: np.ndarray, nxt: np.ndarray) -> np.ndarray:
    """Output head whose row ``v`` is the sum of the embeddings of the tokens ``u`` with
    ``nxt[u] == v`` (rows no token leads to are zero), scaled to a top logit of LOGIT_TOP."""
    d = emb16.shape[1]
    head = np.zeros(emb16.shape, np.float32)
    np.add.at(head, nxt, emb16.astype(np.float32))
    head *= np.float32(LOGIT_TOP / d)
    return head


def _check_clean(emb16: np.ndarray, head16: np.ndarray, nxt: np.ndarray, what: str) -> float:
    """Without the blocks' perturbation, argmax must be ``nxt`` for every token; returns the worst
    margin (top logit minus the runner-up)."""
    # rmsnorm of a norm-sqrt(d) row is the row itself: these are the logits llama.cpp computes
    # for a lone token when the blocks add nothing
    logits = emb16.astype(np.float32) @ head16.astype(np.float32).T
    got = logits.argmax(axis=1)
    bad = np.flatnonzero(got != nxt)
    if bad.size:
        raise RuntimeError(f"{what}: the clean path misses {bad.size} tokens (e.g. {bad[:5]}); "
                           "use a larger n_embd")
    rows = np.arange(len(nxt))
    top = logits[rows, nxt]
    logits[rows, nxt] = -np.inf
    return float((top - logits.max(axis=1)).min())


def _uniform_chunks(rng: np.random.Generator, shape: tuple[int, ...], std: float) -> Iterator[np.ndarray]:
    """A seeded uniform(-a, a) matrix of this std, as F16 chunks along the first axes."""
    a = np.float32(std * np.sqrt(3.0) * 2.0)
    rows = int(np.prod(shape[:-1]))
    per = max(1, _CHUNK // shape[-1])
    for start in range(0, rows, per):
        m = min(per, rows - start)
        x = rng.random((m, shape[-1]), dtype=np.float32)
        x -= np.float32(0.5)
        x *= a
        yield x.astype(np.float16)


def _block_tensor(name: str, shape: tuple[int, ...], kind: str, seed: int, prefix: str) -> Iterator[np.ndarray]:
    """Chunks of one block tensor (norms, attention, router, experts, dense FFN)."""
    if kind == "one":
        yield np.ones(shape, np.float32)
        return
    fan_in = shape[-1]
    if ".ffn_gate_inp." in name:  # router: Gaussian, f32 (see gguf_models._keep_f32)
        rng = _rng(seed, prefix + name)
        yield rng.standard_normal(shape, dtype=np.float32) * np.float32(ROUTER_STD / np.sqrt(fan_in))
        return
    std = 1.0 / np.sqrt(fan_in)
    if name.endswith(("attn_output.weight", "ffn_down_exps.weight", "ffn_down.weight")):
        std *= BLOCK_SCALE
    if len(shape) == 3:  # expert stack: one stream per expert, so one expert at a time
        for x in range(shape[0]):
            yield from _uniform_chunks(_rng(seed, prefix + name, x), shape[1:], std)
        return
    yield from _uniform_chunks(_rng(seed, prefix + name), shape, std)


def _tensor_bytes(name: str, shape: tuple[int, ...]) -> int:
    return int(np.prod(shape)) * (4 if _keep_f32(name, shape) else 2)


# --- the streaming GGUF writer ----------------------------------------------------------------


def _spec(kind: str, size: str, seed: int, shape, **more) -> str:
    return json.dumps({"kind": kind, "size": size, "seed": int(seed), "version": GENERATOR_VERSION,
                       "shape": asdict(shape), **more}, sort_keys=True)


def _existing_spec(path: Path) -> str | None:
    try:
        import gguf

        r = gguf.GGUFReader(str(path))
        f = r.fields.get(_META_KEY)
        if f is None:
            return None
        return bytes(f.parts[f.data[0]]).decode("utf-8")
    except Exception:
        return None


def _write_streaming(path: Path, c, vocab: BPEVocab, name: str, spec: str,
                     tensors: Callable[[str, tuple[int, ...], str], Iterator[np.ndarray]],
                     tick: Callable[[int], None]) -> Path:
    """Write a GGUF whose tensors come as chunks from ``tensors(name, shape, kind)``; the file
    appears at ``path`` only once complete (written as ``path.part`` first)."""
    import gguf

    plan = _plan(c)
    path.parent.mkdir(parents=True, exist_ok=True)
    part = path.with_name(path.name + ".part")
    w = gguf.GGUFWriter(str(part), c.arch)
    _write_kv(w, c, vocab, n_ctx_train=4096, rope_theta=10000.0, dtype="f16", name=name)
    w.add_string(_META_KEY, spec)
    for tname, (shape, _kind) in plan.items():
        f32 = _keep_f32(tname, shape)
        w.add_tensor_info(tname, shape, np.dtype(np.float32 if f32 else np.float16),
                          _tensor_bytes(tname, shape))
    try:
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_ti_data_to_file()
        fout = w.fout[0]
        align = w.data_alignment
        for tname, (shape, kind) in plan.items():
            want = _tensor_bytes(tname, shape)
            dt = np.float32 if _keep_f32(tname, shape) else np.float16
            fout.write(b"\0" * (-fout.tell() % align))
            n = 0
            for chunk in tensors(tname, shape, kind):
                chunk = np.ascontiguousarray(chunk, dtype=dt)
                chunk.tofile(fout)
                n += chunk.nbytes
                tick(chunk.nbytes)
            if n != want:
                raise AssertionError(f"{tname}: wrote {n} bytes, expected {want}")
            fout.write(b"\0" * (-n % align))
        w.close()
        os.replace(part, path)
    except BaseException:
        w.close()
        part.unlink(missing_ok=True)
        raise
    return path


def _configs(size: str, vocab: BPEVocab):
    if size not in SIZES:
        raise ValueError(f"unknown size {size!r}; choose one of {', '.join(SIZES)}")
    t, d = SIZES[size].target, SIZES[size].draft
    ct = _config("llama", t.n_layer, t.n_embd, t.n_head, t.n_head_kv, t.n_ff, t.n_expert,
                 t.n_expert_used, None, None, vocab.n_vocab)
    cd = _config("llama", d.n_layer, d.n_embd, d.n_head, d.n_head_kv, d.n_ff, 0, 0, None, None,
                 vocab.n_vocab)
    return ct, cd


def size_bytes(size: str = "cpu") -> tuple[int, int]:
    """Exact file sizes (target, one drafter) of a preset, without writing anything (the
    tensor data; the header adds about 60 kB)."""
    vocab = default_vocab()
    ct, cd = _configs(size, vocab)
    return tuple(sum(_tensor_bytes(n, s) for n, (s, _) in _plan(c).items()) for c in (ct, cd))


def _ticker(progress: Progress | None, total: int, label: str, done0: list[int]):
    def tick(n: int) -> None:
        done0[0] += n
        if progress is not None:
            progress(done0[0], total, label)
    return tick


def write_cost_target(path: str | os.PathLike, *, size: str = "cpu", seed: int = 0,
                      progress: Progress | None = None, _state=None) -> Path:
    """Write the cost-realistic MoE target of preset ``size`` to ``path`` (see the module doc).
    ``progress(done_bytes, total_bytes, label)`` is called as it goes."""
    vocab = default_vocab()
    ct, _ = _configs(size, vocab)
    return _write_cycle_model(
        path, ct, vocab, cost_target_next(seed, vocab), seed=seed, emb_stream="token_embd.weight",
        block_prefix="target.", what=f"cost target {size}", name=f"cascade cost-pair target {size} (seed {seed})",
        spec=_spec("target", size, seed, SIZES[size].target), total=size_bytes(size)[0],
        progress=progress, _state=_state)


def _write_cycle_model(path, c, vocab, nxt: np.ndarray, *, seed: int, emb_stream: str, block_prefix: str,
                       what: str, name: str, spec: str, total: int, progress, _state) -> Path:
    """Write a model whose greedy next token after ``t`` is ``nxt[t]`` along its residual path
    (unit-RMS embedding, a head that maps each embedding to its successor), every block real
    seeded weights: the target and the drafters differ only in these arguments."""
    emb16 = _unit_rms_rows(_rng(seed, emb_stream), vocab.n_vocab, c.n_embd).astype(np.float16)
    head16 = _head(emb16, nxt).astype(np.float16)
    _check_clean(emb16, head16, nxt, what)

    def tensors(tname, tshape, kind):
        if tname == "token_embd.weight":
            yield emb16
        elif tname == "output.weight":
            yield head16
        elif tname == "output_norm.weight":
            yield np.ones(tshape, np.float32)
        else:
            yield from _block_tensor(tname, tshape, kind, seed, block_prefix)

    total, done, label = _state or (total, [0], Path(path).name)
    return _write_streaming(Path(path), c, vocab, name, spec, tensors, _ticker(progress, total, label, done))


def write_cost_drafter(path: str | os.PathLike, *, size: str = "cpu", agreement: float = 0.9,
                       seed: int = 0, progress: Progress | None = None, _state=None,
                       phase_len: int = 0) -> Path:
    """Write a dense drafter for the ``size``/``seed`` target whose greedy next token equals the
    target's on a fraction ``agreement`` of tokens (:func:`cost_drafter_next`). Needs nothing
    from the target's file."""
    agreement = _check_agreement(agreement)
    vocab = default_vocab()
    _, cd = _configs(size, vocab)
    return _write_cycle_model(
        path, cd, vocab, cost_drafter_next(seed, agreement, vocab, phase_len), seed=seed,
        emb_stream="draft.token_embd.weight", block_prefix="draft.",
        what=f"cost drafter {size} agreement {agreement:g}",
        name=f"cascade cost-pair drafter {size} agreement {agreement:g} (seed {seed})",
        spec=_spec("drafter", size, seed, SIZES[size].draft, agreement=agreement,
                   **({"phase_len": int(phase_len)} if phase_len else {})),
        total=size_bytes(size)[1], progress=progress, _state=_state)


def target_filename(size: str, seed: int = 0) -> str:
    return f"cost-target-{size}-s{seed}.gguf"


def drafter_filename(size: str, agreement: float, seed: int = 0, phase_len: int = 0) -> str:
    phase = f"-p{int(phase_len)}" if phase_len else ""
    return f"cost-draft-{size}-a{_check_agreement(agreement):g}{phase}-s{seed}.gguf"


def write_cost_pair(
    out_dir: str | os.PathLike,
    *,
    size: str = "cpu",
    agreement: float | Sequence[float] = 0.9,
    seed: int = 0,
    progress: Progress | None = None,
    reuse: bool = True,
) -> CostPair:
    """Write a target and one drafter per agreement into ``out_dir``; return their paths.

    Files are ``cost-target-<size>-s<seed>.gguf`` and ``cost-draft-<size>-a<agreement>-s<seed>.gguf``.
    ``reuse``: keep a file already there when it was written by this generator with the same
    arguments (its ``cascade.cost_pair`` metadata says so), so adding drafters to a big target
    costs only the drafters. ``progress(done_bytes, total_bytes, label)`` covers the whole call.
    """
    if size not in SIZES:
        raise ValueError(f"unknown size {size!r}; choose one of {', '.join(SIZES)}")
    agreements = [agreement] if np.isscalar(agreement) else list(agreement)
    agreements = list(dict.fromkeys(_check_agreement(a) for a in agreements))
    out = Path(out_dir)
    tb, db = size_bytes(size)
    tpath = out / target_filename(size, seed)
    dpaths = {a: out / drafter_filename(size, a, seed) for a in agreements}
    t_spec = _spec("target", size, seed, SIZES[size].target)
    d_specs = {a: _spec("drafter", size, seed, SIZES[size].draft, agreement=a) for a in agreements}
    todo_t = not (reuse and tpath.is_file() and _existing_spec(tpath) == t_spec)
    todo_d = [a for a in agreements if not (reuse and dpaths[a].is_file() and _existing_spec(dpaths[a]) == d_specs[a])]
    total = (tb if todo_t else 0) + db * len(todo_d)
    done = [0]
    written = []
    if progress is not None:
        progress(0, total, tpath.name)
    if todo_t:
        write_cost_target(tpath, size=size, seed=seed, progress=progress, _state=(total, done, tpath.name))
        written.append(tpath)
    for a in todo_d:
        write_cost_drafter(dpaths[a], size=size, agreement=a, seed=seed, progress=progress,
                           _state=(total, done, dpaths[a].name))
        written.append(dpaths[a])
    return CostPair(target=tpath, drafters=dpaths, size=size, seed=seed, written=tuple(written))
