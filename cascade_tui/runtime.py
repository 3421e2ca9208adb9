"""From command-line choices to a loaded target + drafter + policy (shared by run, bench, chat).

Every user mistake surfaces as :class:`UserError` with one line; the CLI turns it into exit 2.
"""

from __future__ import annotations

# llama.cpp's shared libraries must load before numpy's (a CUDA host segfaulted otherwise; see
# backends/llamacpp/lib.py), and backends.base imports numpy: so the backend comes first.
import backends.llamacpp  # noqa: F401,I001

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from backends import registry
from backends.base import BackendError, Drafter, Target, check_vocab_compatible, default_threads
from backends.model_drafter import ModelDrafter
from cascade_tui.errors import UserError  # noqa: F401  (raised here; re-exported for callers)


@dataclass
class ModelOptions:
    model: str | None = None  # None: the bundled demo target
    draft: str | None = None  # path, "ngram", "none"; None: demo drafter with the demo, else ngram
    backend: str = "auto"
    ctx: int = 2048
    threads: int | None = None
    n_gpu_layers: int | None = None  # None: every layer when the build can offload, else 0
    routing: bool = True
    seed: int = 0
    # a model drafter idle through a long K=0 stretch re-reads at most this many recent tokens when
    # speculation resumes (None: all it missed); measured on the demo pair, 32 made Cascade's
    # re-tests cheaper without changing the output (see docs/BENCHMARKS.md)
    draft_catch_up: int | None = 32
    device: str = "auto"  # torch backend only: cpu, cuda, auto
    dtype: str | None = None  # torch backend only: float32 (CPU default), bfloat16 (CUDA default), float16
    extra: dict[str, Any] = field(default_factory=dict)  # backend-specific load options


@dataclass
class LoadedModels:
    target: Target
    drafter: Drafter | None
    model_path: str
    draft_label: str  # "ngram", "none" or the drafter's path
    backend: str
    notes: list[str] = field(default_factory=list)  # one-line remarks for the user (e.g. a dense target)

    @property
    def draft_model(self) -> Target | None:
        """The drafter's own model (None for ngram / no drafter)."""
        return getattr(self.drafter, "model", None)

    def close(self) -> None:
        if self.drafter is not None:
            self.drafter.close()
        self.target.close()


def demo_paths(backend: str = "auto") -> tuple[Path, Path]:
    """(target, drafter) of the bundled demo pair. The target is the grown, memory-bound copy of
    ``target.gguf`` (``cascade_tui.demo.demo_default_target``, built into the user cache on first
    use), except for ``--backend torch``, which exports the shipped files its own way."""
    try:
        from cascade_tui.demo import demo_default_target, demo_draft_path, demo_target_path

        target = demo_target_path() if backend == "torch" else demo_default_target()
        return target, demo_draft_path()
    except Exception as e:  # the package data is missing or the cache unwritable: say so, do not crash
        raise UserError(f"the bundled demo model is not available ({e}); pass --model PATH") from None


def load_models(
    opts: ModelOptions,
    *,
    need_drafter: bool = True,
    progress: Callable[[str], None] | None = None,
) -> LoadedModels:
    """Load the target and the drafter; raise UserError with one line on any problem.
    ``progress(message)`` is told what is being loaded (for a spinner or a status line)."""
    if opts.ctx < 16:
        raise UserError(f"--ctx must be at least 16 (got {opts.ctx})")
    if opts.threads is not None and opts.threads < 1:
        raise UserError(f"--threads must be at least 1 (got {opts.threads})")
    if opts.n_gpu_layers is not None and opts.n_gpu_layers < -1:
        raise UserError(f"--n-gpu-layers must be -1 (all), 0 or more (got {opts.n_gpu_layers})")
    using_demo = opts.model is None
    if using_demo:
        demo_target, demo_draft = demo_paths(opts.backend)
        model_path = str(demo_target)
    else:
        model_path = opts.model
    draft = opts.draft
    if draft is None:
        draft = str(demo_draft) if using_demo else "ngram"
    threads = opts.threads or default_threads()
    say = progress or (lambda message: None)

    try:
        backend = registry.resolve(model_path, opts.backend)
        module = registry.get(backend)
        if using_demo and backend == "torch":  # the demo pair as transformers checkpoints
            from cascade_tui.demo.torch_export import demo_paths as torch_demo_paths

            demo_target, demo_draft = torch_demo_paths(progress=say)
            model_path = str(demo_target)
            if opts.draft is None:
                draft = str(demo_draft)
        say(f"loading {Path(model_path).name} ({backend})")
        target = module.load_target(
            model_path,
            n_ctx=opts.ctx,
            n_threads=threads,
            n_gpu_layers=opts.n_gpu_layers,
            routing=opts.routing,
            seed=opts.seed,
            **_backend_options(backend, opts),
            **opts.extra,
        )
    except BackendError as e:
        raise UserError(str(e)) from None
    notes = [target.info.extra["note"]] if target.info.extra.get("note") else []

    drafter: Drafter | None = None
    label = draft
    if not need_drafter or draft.lower() == "none":
        label = "none"
    elif draft.lower() == "ngram":
        from backends.ngram import NgramDrafter

        drafter, label = NgramDrafter(), "ngram"
    else:
        try:
            say(f"loading drafter {Path(draft).name}")
            dbackend = registry.resolve(draft, "auto")
            dmodel = registry.get(dbackend).load_target(
                draft, n_ctx=target.n_ctx, n_threads=threads, n_gpu_layers=opts.n_gpu_layers,
                routing=False, seed=opts.seed, **_backend_options(dbackend, opts), **opts.extra,
            )
            try:
                check_vocab_compatible(target, dmodel)
            except BaseException:
                dmodel.close()
                raise
        except BackendError as e:
            target.close()
            raise UserError(f"drafter: {e}") from None
        drafter = ModelDrafter(dmodel, name=f"model:{Path(draft).name}", max_catch_up=opts.draft_catch_up)
    return LoadedModels(target, drafter, model_path, label, backend, notes)


def _backend_options(backend: str, opts: ModelOptions) -> dict[str, Any]:
    """Load options only one backend takes (the torch backend's device and dtype)."""
    return {"device": opts.device, "dtype": opts.dtype} if backend == "torch" else {}
