"""From command-line choices to a loaded target + drafter + policy (shared by run, bench, chat).

Every user mistake surfaces as :class:`UserError` with one line; the CLI turns it into exit 2.
"""

from __future__ import annotations

# llama.cpp's shared libraries must load before numpy's (a CUDA host segfaulted otherwise; see
# backends/llamacpp/lib.py), and backends.base imports numpy: so the backend comes first.
import backends.llamacpp  # noqa: F401,I001

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from backends.base import BackendError, Drafter, Target


class UserError(Exception):
    """Bad input from the user: one clear line, exit status 2."""


@dataclass
class ModelOptions:
    model: str | None = None  # None: the bundled demo target
    draft: str | None = None  # path, "ngram", "none"; None: demo drafter with the demo, else ngram
    backend: str = "auto"
    ctx: int = 2048
    threads: int | None = None
    n_gpu_layers: int = 0
    routing: bool = True
    seed: int = 0
    # a model drafter idle through a long K=0 stretch re-reads at most this many recent tokens when
    # speculation resumes (None: all it missed); measured on the demo pair, 32 made Cascade's
    # re-tests cheaper without changing the output (see docs/BENCHMARKS.md)
    draft_catch_up: int | None = 32
    extra: dict[str, Any] = field(default_factory=dict)  # backend-specific load options


@dataclass
class LoadedModels:
    target: Target
    drafter: Drafter | None
    model_path: str
    draft_label: str  # "ngram", "none" or the drafter's path
    backend: str
    draft_info: Any = None

    def close(self) -> None:
        if self.drafter is not None:
            self.drafter.close()
        self.target.close()


def demo_paths() -> tuple[Path, Path]:
    try:
        from cascade_tui.demo import demo_draft_path, demo_target_path

        return demo_target_path(), demo_draft_path()
    except Exception as e:  # the package data is missing: say so, do not crash
        raise UserError(f"the bundled demo model is not available ({e}); pass --model PATH") from None


def resolve_backend(path: str, backend: str) -> str:
    backend = backend.lower()
    if backend not in ("auto", "llama"):
        raise UserError(f"unknown backend {backend!r} (choose auto or llama)")
    p = Path(path)
    if backend == "auto":
        if p.is_dir():
            raise UserError(f"{path} is a directory; only GGUF files (llama.cpp backend) are supported so far")
        return "llama"
    return backend


def default_threads() -> int:
    return max(1, min(4, (os.cpu_count() or 2) // 2))


def load_models(opts: ModelOptions, *, need_drafter: bool = True) -> LoadedModels:
    """Load the target and the drafter; raise UserError with one line on any problem."""
    if opts.ctx < 16:
        raise UserError(f"--ctx must be at least 16 (got {opts.ctx})")
    if opts.threads is not None and opts.threads < 1:
        raise UserError(f"--threads must be at least 1 (got {opts.threads})")
    if opts.n_gpu_layers < -1:
        raise UserError(f"--n-gpu-layers must be -1 (all), 0 or more (got {opts.n_gpu_layers})")
    using_demo = opts.model is None
    if using_demo:
        demo_target, demo_draft = demo_paths()
        model_path = str(demo_target)
    else:
        model_path = opts.model
    draft = opts.draft
    if draft is None:
        draft = str(demo_draft) if using_demo else "ngram"
    backend = resolve_backend(model_path, opts.backend)
    threads = opts.threads or default_threads()

    try:
        from backends.llamacpp import load_target, make_drafter

        target = load_target(
            model_path,
            n_ctx=opts.ctx,
            n_threads=threads,
            n_gpu_layers=opts.n_gpu_layers,
            routing=opts.routing,
            seed=opts.seed,
            **opts.extra,
        )
    except BackendError as e:
        raise UserError(str(e)) from None

    drafter: Drafter | None = None
    label = draft
    if not need_drafter or draft.lower() == "none":
        label = "none"
    elif draft.lower() == "ngram":
        from backends.ngram import NgramDrafter

        drafter, label = NgramDrafter(), "ngram"
    else:
        try:
            drafter = make_drafter(
                draft, target, n_ctx=opts.ctx, n_threads=threads, n_gpu_layers=opts.n_gpu_layers,
                seed=opts.seed, **opts.extra,
            )
        except BackendError as e:
            target.close()
            raise UserError(f"drafter: {e}") from None
        drafter.max_catch_up = opts.draft_catch_up
    return LoadedModels(target, drafter, model_path, label, backend)
