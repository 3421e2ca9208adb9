"""Grow the bundled demo target into a memory-bound MoE that writes the same text.

Why: the shipped ``target.gguf`` is 12 MB, so on a CPU it lives in the caches; one decode step costs
about 1 ms, much of it fixed per-call work, and a drafter step costs half of that: speculation
cannot pay there whatever the drafter. A real MoE (Mixtral, Qwen3-30B-A3B) is
memory-bound: a step streams its chosen experts' weights from DRAM, and a batch of n tokens reads
the *union* of their experts once, far less than n steps. The grown target restores that regime
while keeping the trained model's text.

How: each expert's SwiGLU FFN is widened from the trained 192 hidden units to :data:`GROWN_FF`
with zero rows in ``ffn_gate_exps`` / ``ffn_up_exps`` and zero columns in ``ffn_down_exps``. A zero
hidden unit contributes ``down[:, j] * silu(gate[j] . x) * (up[j] . x) = 0 * silu(0) * 0 = 0``, so
the function is unchanged; the zeros come after the trained units, so ggml's dot products see the
trained values in the same SIMD lanes and only add exact zeros: the logits are bit for bit the
shipped model's (``tests/test_demo_grow.py`` checks it with llama.cpp). Attention, router, norms and
embeddings are copied unchanged, so routing, tokenizer and vocabulary are the shipped file's. What
grows is what a step must read: ``3 * n_embd * GROWN_FF * 2`` bytes per expert, 100 MB per token.

Measured on this project's 2-core Xeon (300 MiB L3), 1 thread, minimum of 15 interleaved repeats,
verify time for n = 1..9 tokens (ms):

=====================  ======  =====================================================  ==========
target                 size    n = 1 .. 9                                             n=9 / n=1
=====================  ======  =====================================================  ==========
shipped (ff 192)       12 MB   1.05 1.57 1.83 2.00 2.25 2.52 2.98 3.03 3.10           2.95
ff 8192, F16 (this)    405 MB  11.75 21.11 27.74 32.67 36.03 40.21 42.87 46.72 50.79  4.32
ff 4096, F32 experts   405 MB  8.80 15.03 20.09 21.19 22.68 24.64 26.14 26.72 29.10   3.31
drafter (dense, 2 MB)  2 MB    0.47 0.50 0.63 0.79 0.77 0.82 1.02 1.09 1.17           2.51
=====================  ======  =====================================================  ==========

On the shipped file a drafted token costs 45% of a target step and a step is mostly fixed per-call
work; on the grown one a drafted token costs 4% of a step, and a batch reads each chosen expert
once, so verifying 5 tokens costs about 3 steps: speculation pays when the drafter agrees (~95% on
the built-in code prompts) and loses when it agrees half the time (the prose prompts).
``expert_dtype="f32"`` stores the experts as F32: ggml's F32 dot product needs no conversions, so
a verify costs what its expert union reads (3.3x at n = 9, against 4.3x for F16, whose dot product
is partly compute-bound here), but the activations entering the experts are no longer rounded to
F16, so the logits move by ~2e-3 and routing near-ties occasionally flip: greedy text equal to the
shipped model's only empirically, not by construction. Hence F16 is the default.

The grown file is built on first use into the user cache (``backends.cache``, ``demo/``), keyed by
the shipped file's sha256 and the growth parameters. It is written to a temporary file and renamed
into place, so an interrupted build (Ctrl-C, a crash, a full disk) never leaves a file that looks
complete; a later call removes a dead build's leftover temporary file.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

from cascade_tui.fileid import sha256_file

__all__ = [
    "EXPERT_DTYPE",
    "GROWN_FF",
    "GROW_VERSION",
    "Progress",
    "build_grown_target",
    "ensure_grown_target",
    "grown_target_path",
]

#: Width of each expert's FFN in the grown demo target (the trained one has 192): 405 MB in all,
#: beyond this CPU's 300 MiB L3; about 100 MB read per decoded token; builds in about a second.
GROWN_FF = 8192
#: Storage type of the expert tensors in the grown target ("f16": bit-identical logits, or "f32";
#: see the module doc).
EXPERT_DTYPE = "f16"
#: Bumped whenever the construction changes, so an old cached file is never reused.
GROW_VERSION = 1

_EXPERT_TENSORS = ("ffn_gate_exps", "ffn_up_exps", "ffn_down_exps")
_DTYPES = ("f16", "f32")

#: ``progress(done_bytes, total_bytes)``: called with 0 when a build starts, then as it writes.
Progress = Callable[[int, int], None]


def _check(grown_ff: int, expert_dtype: str) -> None:
    if expert_dtype not in _DTYPES:
        raise ValueError(f"expert_dtype must be one of {', '.join(_DTYPES)}, not {expert_dtype!r}")
    if int(grown_ff) < 1:
        raise ValueError("grown_ff must be positive")


def grown_target_path(cache: str | os.PathLike, source: str | os.PathLike, grown_ff: int = GROWN_FF,
                      expert_dtype: str = EXPERT_DTYPE, *, source_sha: str | None = None) -> Path:
    """Where the grown target of ``source`` lives under ``cache`` (built or not)."""
    _check(grown_ff, expert_dtype)
    sha = source_sha or sha256_file(source)  # remembered per (path, size, mtime): no re-hash per start
    return Path(cache) / f"{sha[:16]}-ff{int(grown_ff)}-{expert_dtype}-v{GROW_VERSION}" / "target.gguf"


def ensure_grown_target(
    source: str | os.PathLike,
    grown_ff: int = GROWN_FF,
    expert_dtype: str = EXPERT_DTYPE,
    *,
    cache: str | os.PathLike | None = None,
    progress: Progress | None = None,
) -> Path:
    """The grown target of ``source`` in ``cache`` (default: the user cache's ``demo/``), built
    first when it is not there yet. ``progress`` is called only while building, so a caller that
    shows a bar from it shows nothing once the file exists. Raises OSError when there is nowhere
    to write it (or the disk fills up)."""
    if cache is None:
        from backends.cache import writable_cache_dir

        cache = writable_cache_dir("demo")
        if cache is None:
            raise OSError("no writable cache directory for the grown demo target (set CASCADE_TUI_CACHE)")
    dest = grown_target_path(cache, source, grown_ff, expert_dtype)
    if dest.is_file():
        return dest
    return build_grown_target(dest, source, grown_ff, expert_dtype, progress=progress)


def _is_expert(name: str) -> bool:
    return any(f".{k}." in name for k in _EXPERT_TENSORS)


def _grown_shape(name: str, shape: tuple[int, ...], grown_ff: int) -> tuple[int, ...]:
    if not _is_expert(name):
        return shape
    e, a, b = shape  # gguf-py (numpy) order: gate/up [E, n_ff, n_embd], down [E, n_embd, n_ff]
    return (e, a, grown_ff) if ".ffn_down_exps." in name else (e, grown_ff, b)


def _grown_tensor(name: str, data, grown_ff: int, dtype):
    """The tensor as the grown model stores it: zero hidden units appended after the trained ones."""
    import numpy as np

    if not _is_expert(name):
        return np.ascontiguousarray(data)
    out = np.zeros(_grown_shape(name, tuple(data.shape), grown_ff), dtype=dtype)
    if ".ffn_down_exps." in name:
        out[:, :, : data.shape[2]] = data
    else:
        out[:, : data.shape[1], :] = data
    return out


def build_grown_target(
    dest: str | os.PathLike,
    source: str | os.PathLike,
    grown_ff: int = GROWN_FF,
    expert_dtype: str = EXPERT_DTYPE,
    *,
    progress: Progress | None = None,
) -> Path:
    """Write the grown copy of the MoE GGUF ``source`` to ``dest`` and return ``dest``.

    ``grown_ff`` must be at least the source's expert width (F16 or F32 source tensors). The file
    appears at ``dest`` only once complete: it is written to ``dest.<pid>.tmp`` beside it, synced and
    renamed; on any error or interrupt the temporary file is removed and the exception propagates.
    """
    import gguf
    import numpy as np

    _check(grown_ff, expert_dtype)
    grown_ff = int(grown_ff)
    dest = Path(dest)
    reader = gguf.GGUFReader(str(source))
    experts = [t for t in reader.tensors if _is_expert(t.name)]
    if not experts:
        raise ValueError(f"{source}: not a MoE (no ffn_*_exps tensors)")
    n_ff = max(int(t.data.shape[1] if ".ffn_down_exps." not in t.name else t.data.shape[2]) for t in experts)
    if grown_ff < n_ff:
        raise ValueError(f"grown_ff={grown_ff} is below the model's expert width {n_ff}")
    arch = reader.fields["general.architecture"].contents()
    edt = np.dtype(np.float32 if expert_dtype == "f32" else np.float16)
    eqt = gguf.GGMLQuantizationType.F32 if expert_dtype == "f32" else gguf.GGMLQuantizationType.F16

    dest.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_temps(dest)
    tmp = dest.with_name(f"{dest.name}.{os.getpid()}.tmp")
    say = progress or (lambda done, total: None)
    w = None
    try:
        w = gguf.GGUFWriter(str(tmp), arch)
        for field in reader.fields.values():
            if field.name == gguf.Keys.General.ARCHITECTURE or field.name.startswith("GGUF."):
                continue  # the writer adds these itself
            vtype = field.types[0]
            sub = field.types[-1] if vtype == gguf.GGUFValueType.ARRAY else None
            value = field.contents()
            if field.name == gguf.Keys.General.NAME:
                value = f"{value} (experts grown to ff {grown_ff}, {expert_dtype})"
            elif field.name in (f"{arch}.feed_forward_length", f"{arch}.expert_feed_forward_length"):
                value = grown_ff  # llama reads the expert width from feed_forward_length
            w.add_key_value(field.name, value, vtype, sub_type=sub)
        plan = []
        for t in reader.tensors:
            shape = _grown_shape(t.name, tuple(int(s) for s in t.data.shape), grown_ff)
            dt, qt = (edt, eqt) if _is_expert(t.name) else (t.data.dtype, t.tensor_type)
            nbytes = int(np.prod(shape)) * dt.itemsize
            w.add_tensor_info(t.name, shape, dt, nbytes, qt)
            plan.append((t, nbytes, dt))
        total, done = sum(n for _, n, _ in plan), 0
        say(0, total)
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_ti_data_to_file()
        for t, nbytes, dt in plan:
            w.write_tensor_data(_grown_tensor(t.name, t.data, grown_ff, dt), tensor_endianess=reader.endianess)
            done += nbytes
            say(done, total)
        w.close()
        w = None
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, dest)
    except BaseException:
        if w is not None:
            try:
                w.close()
            except Exception:
                pass
        try:
            tmp.unlink()
        except OSError:
            pass
        raise
    return dest


def _remove_stale_temps(dest: Path) -> None:
    """Delete temporary files a dead build left next to ``dest``."""
    for p in dest.parent.glob(f"{dest.name}.*.tmp"):
        try:
            pid = int(p.name[len(dest.name) + 1: -len(".tmp")])
        except ValueError:
            continue
        if pid != os.getpid() and _alive(pid):
            continue  # another process is building it right now
        try:
            p.unlink()
        except OSError:
            pass


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, belongs to someone else
        return True
    return True
