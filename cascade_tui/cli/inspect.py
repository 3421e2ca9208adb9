"""``cascade-tui inspect``: what a model file is, without loading its weights."""

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from cascade_tui.cli.app import app
from cascade_tui.cli.options import fail


@app.command()
def inspect(
    model: Annotated[str, typer.Argument(help="A .gguf file.")],
    draft: Annotated[Optional[str], typer.Option(
        "--draft", "-d", help="Check this drafter's vocabulary against the model.")] = None,
    backend: Annotated[str, typer.Option("--backend", help="auto, llama or torch (auto: a directory -> torch, a file -> llama).")] = "auto",
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Architecture, layers, experts, vocabulary and drafter compatibility of a model (no weights loaded)."""
    import backends.llamacpp  # noqa: F401  (llama.cpp before numpy)
    from backends import registry
    from backends.base import BackendError, check_vocab_compatible

    try:
        mod = registry.get(registry.resolve(model, backend))
        info = mod.read_info(model)
        report = info.to_dict()
        if draft is not None:
            dmod = registry.get(registry.resolve(draft, "auto"))
            dinfo = dmod.read_info(draft)
            problem = dinfo.extra.get("load_error")
            if problem is None and dinfo.vocab_fingerprint != info.vocab_fingerprint:
                # load both (tiny context) so the check can name the first differing token
                target = mod.load_target(model, n_ctx=64, n_threads=1, routing=False)
                try:
                    dm = dmod.load_target(draft, n_ctx=64, n_threads=1, routing=False)
                    try:
                        check_vocab_compatible(target, dm)
                    finally:
                        dm.close()
                except BackendError as e:
                    problem = str(e)
                finally:
                    target.close()
            report["draft"] = {"path": draft, "arch": dinfo.arch, "n_vocab": dinfo.n_vocab,
                               "compatible": problem is None, "problem": problem}
    except BackendError as e:
        raise fail(str(e)) from None
    if json_out:
        typer.echo(json.dumps(report, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    t = Table(title=Path(model).name, show_header=False)
    t.add_column("", style="bold")
    t.add_column("")
    moe = report["moe_layers"]
    rows = [
        ("architecture", report["arch"]),
        ("layers", str(report["n_layer"])),
        ("MoE layers", f"{len(moe)} ({ranges(moe)})" if moe else "none (dense model)"),
        ("experts", f"{report['n_expert']} per layer, top-{report['n_expert_used']}" if moe else "-"),
        ("vocabulary", f"{report['n_vocab']} tokens, fingerprint {report['vocab_fingerprint']}"),
        ("trained context", str(report["n_ctx_train"])),
        ("parameters", f"{report['n_params']:,}"),
        ("file size", f"{report['file_size'] / 2**20:.1f} MiB"),
    ]
    devs = report["extra"].get("offload_devices")
    if devs is not None:
        rows.append(("GPU offload", "\n".join(
            f"{d['name']}: {d['description']} ({d['memory_total'] / 2**30:.1f} GiB)" for d in devs)
            + "\nevery layer unless --n-gpu-layers N" if devs else "none (a CPU-only llama-cpp-python build, or no GPU visible)"))
    if "draft" in report:
        d = report["draft"]
        rows.append(("drafter", f"{d['path']}: " + ("compatible" if d["compatible"] else f"NOT compatible: {d['problem']}")))
    for k, v in rows:
        t.add_row(k, v)
    Console().print(t)


def ranges(ids: list[int]) -> str:
    """``[0, 1, 2, 5]`` -> ``"0-2, 5"``."""
    out, start = [], None
    for i, x in enumerate(ids):
        if start is None:
            start = x
        if i + 1 == len(ids) or ids[i + 1] != x + 1:
            out.append(str(start) if start == x else f"{start}-{x}")
            start = None
    return ", ".join(out)
