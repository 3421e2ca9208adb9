"""Options shared by the commands (DESIGN section 1), each declared once.

A group is a dataclass whose fields carry their Typer option; :func:`with_options` adds a group's
options to a command's signature and hands the command one object per group::

    @app.command()
    @with_options(model=ModelArgs, decode=DecodeArgs)
    def run(prompt: ..., model: ModelArgs, decode: DecodeArgs): ...

Not ``from __future__ import annotations``: Typer reads these annotations at run time.
"""

import dataclasses
import functools
import inspect
import sys
from pathlib import Path
from typing import Annotated, Any, Optional, get_type_hints

import typer

from cascade_tui.policy import DEFAULT_POLICY


SetOpt = Annotated[Optional[list[str]], typer.Option("--set", help="Policy parameter KEY=VALUE (repeatable).")]
MaxTokensOpt = Annotated[int, typer.Option("--max-tokens", "-n", min=1, help="Tokens to generate.")]


@dataclasses.dataclass
class ModelArgs:
    """Which models, on what, with which capture."""

    model: Annotated[Optional[str], typer.Option(
        "--model", "-m", help="Target model: a .gguf file or a transformers checkpoint directory. Default: the bundled "
                              "demo MoE.")] = None
    draft: Annotated[Optional[str], typer.Option(
        "--draft", "-d", help="Drafter: a .gguf path, a checkpoint directory, 'ngram' or 'none'. Default: the demo drafter with the "
                              "demo model, else ngram.")] = None
    backend: Annotated[str, typer.Option(
        "--backend", help="auto, llama or torch (auto: a file -> llama, a checkpoint directory -> torch).")] = "auto"
    ctx: Annotated[int, typer.Option("--ctx", help="Context size in tokens.")] = 2048
    threads: Annotated[Optional[int], typer.Option(
        "--threads", help="CPU threads (default: half the cores, at most 8).")] = None
    n_gpu_layers: Annotated[Optional[int], typer.Option(
        "--n-gpu-layers", help="Layers to offload to the GPU (-1 = all). Default: all when llama.cpp was built "
                               "with GPU offload, else 0.")] = None
    routing: Annotated[bool, typer.Option("--routing/--no-routing", help="Capture expert routing per token.")] = True
    seed: Annotated[int, typer.Option("--seed", help="Sampling seed.")] = 0
    device: Annotated[str, typer.Option(
        "--device", help="torch backend: cpu, cuda or auto (cuda when torch sees a GPU).")] = "auto"
    dtype: Annotated[Optional[str], typer.Option(
        "--dtype", help="torch backend: float32, bfloat16 or float16. Default: float32 on CPU, bfloat16 on CUDA.")] = None

    def options(self):
        from cascade_tui.runtime import ModelOptions  # first: loads llama.cpp before numpy

        if self.model is None and self.backend != "torch":
            build_demo_target()
        return ModelOptions(model=self.model, draft=self.draft, backend=self.backend, ctx=self.ctx,
                            threads=self.threads, n_gpu_layers=self.n_gpu_layers, routing=self.routing,
                            seed=self.seed, device=self.device, dtype=self.dtype)


def build_demo_target() -> None:
    """The default target is the grown demo MoE in the user cache (``cascade_tui.demo.grow``):
    build it now if it is not there yet, with a one-line progress bar on stderr; print nothing once
    it exists. A failure is left to ``load_models``, which reports it in one line."""
    from cascade_tui.demo import demo_default_target

    shown: list = []

    def progress(done: int, total: int) -> None:
        if not shown:
            from rich.console import Console
            from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeElapsedColumn

            bar = Progress(TextColumn("building the demo target (once)"), BarColumn(), DownloadColumn(),
                           TimeElapsedColumn(), console=Console(stderr=True))
            shown.extend([bar, bar.add_task("", total=total)])
            bar.start()
        shown[0].update(shown[1], completed=done)

    try:
        demo_default_target(progress=progress)
    except KeyboardInterrupt:
        if shown:
            shown[0].stop()
        raise fail("interrupted: the demo target was not written", 130) from None
    except Exception:
        pass
    if shown:
        shown[0].stop()


@dataclasses.dataclass
class PolicyArgs:
    """Which policy, with which parameters."""

    policy: Annotated[str, typer.Option("--policy", "-p", help=f"{DEFAULT_POLICY} (the default), cascade, off, static:K or heuristic.")] = DEFAULT_POLICY
    set_: SetOpt = None
    cost_cache: Annotated[bool, typer.Option(
        "--cost-cache/--no-cost-cache",
        help="Start the learned policy from the cost curve an earlier run measured on this model, "
             "drafter, backend, device and threads, and save what it learns (user cache).")] = True

    def params(self) -> dict[str, str]:
        """``--set`` as a dict; a malformed item is a one-line error (exit 2)."""
        from cascade_tui.policy import PolicyError, parse_assignments

        try:
            return parse_assignments(self.set_)
        except PolicyError as e:
            raise fail(str(e)) from None

    def check(self) -> None:
        """Refuse an unknown policy or parameter before any model loads."""
        from cascade_tui.policy import PolicyError, make_policy

        try:
            make_policy(self.policy, self.params())
        except PolicyError as e:
            raise fail(str(e)) from None


@dataclasses.dataclass
class GenerationArgs:
    max_tokens: MaxTokensOpt = 128
    temperature: Annotated[float, typer.Option("--temperature", "-t", min=0.0, help="0 = greedy (default).")] = 0.0

    def config(self, seed: int):
        from cascade_tui.engine import GenerationConfig

        return GenerationConfig(max_tokens=self.max_tokens, temperature=self.temperature, seed=seed)


@dataclasses.dataclass
class RecordArgs:
    record: Annotated[Optional[Path], typer.Option(
        "--record", help="Record the session to this file (default: sessions/<UTC time>.cascade.jsonl).")] = None
    no_record: Annotated[bool, typer.Option("--no-record", help="Do not record the session.")] = False

    def options(self):
        from cascade_tui.session.core import RecordOptions

        return RecordOptions(record=not self.no_record, path=self.record)


def with_options(defaults: dict[str, Any] | None = None, **groups: type) -> Any:
    """Add the options of each group (``name=GroupClass``) to the decorated command; the command
    receives ``name=GroupClass(...)``. ``defaults`` overrides a field's default for this command."""
    defaults = dict(defaults or {})

    def deco(func):
        sig = inspect.signature(func)
        own = [p for p in sig.parameters.values() if p.name not in groups]
        names: dict[str, list[str]] = {}
        added = []
        for gname, cls in groups.items():
            hints = get_type_hints(cls, include_extras=True)
            names[gname] = []
            for f in dataclasses.fields(cls):
                names[gname].append(f.name)
                added.append(inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY,
                                               default=defaults.get(f.name, f.default), annotation=hints[f.name]))

        @functools.wraps(func)
        def wrapper(**kwargs):
            for gname, cls in groups.items():
                kwargs[gname] = cls(**{n: kwargs.pop(n) for n in names[gname]})
            return func(**kwargs)

        params = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in own] + added
        wrapper.__signature__ = sig.replace(parameters=params)
        own_hints = get_type_hints(func, include_extras=True)
        wrapper.__annotations__ = {**{p.name: own_hints.get(p.name, p.annotation) for p in own},
                                   **{p.name: p.annotation for p in added}}
        return wrapper

    return deco


def fail(msg: str, code: int = 2) -> typer.Exit:
    """Print one ``cascade-tui: error:`` line; return the Exit to raise."""
    typer.echo(f"cascade-tui: error: {msg}", err=True)
    return typer.Exit(code)


def note(msg: str) -> None:
    typer.echo(f"cascade-tui: note: {msg}", err=True)


def read_prompt(prompt: Optional[str], prompt_file: Optional[Path]) -> str:
    if prompt is not None and prompt_file is not None:
        raise fail("give either --prompt or --prompt-file, not both")
    if prompt_file is not None:
        try:
            return sys.stdin.read() if str(prompt_file) == "-" else prompt_file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise fail(f"cannot read prompt file {prompt_file}: {e}") from None
    if prompt is None:
        raise fail("no prompt: pass --prompt TEXT or --prompt-file PATH ('-' reads stdin)")
    if prompt == "":
        raise fail("the prompt is empty")
    return prompt
