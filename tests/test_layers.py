"""Layer contracts (DESIGN section 2), checked on the source: every import statement, including
those inside functions, of every module.

- policy is pure: only the standard library's non-I/O modules and itself;
- policy, engine, session and backends import neither the UI (textual, cascade_tui.tui) nor the
  command line (typer, cascade_tui.cli);
- backends import nothing from cascade_tui;
- the engine knows backends only through ``backends.base`` (no runtime, no drafter module).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

PURE_STDLIB = {"__future__", "abc", "collections", "dataclasses", "enum", "functools", "itertools", "math",
               "statistics", "typing", "bisect", "heapq", "operator", "numbers", "copy"}


def modules(package: str) -> list[Path]:
    return sorted((ROOT / package.replace(".", "/")).rglob("*.py"))


def imports_of(path: Path, root: Path = ROOT) -> set[str]:
    """Absolute names of every module ``path`` imports (relative imports resolved)."""
    rel = path.relative_to(root).with_suffix("")
    parts = list(rel.parts)
    pkg = parts[:-1] if parts[-1] != "__init__" else parts[:-1]
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = pkg[: len(pkg) - node.level + 1]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            out.add(name)
            out.update(f"{name}.{a.name}" for a in node.names)  # `from pkg import module`
    return out


def offenders(package: str, forbidden) -> list[str]:
    bad = []
    for path in modules(package):
        for name in sorted(imports_of(path)):
            if forbidden(name):
                bad.append(f"{path.relative_to(ROOT)} imports {name}")
    return bad


def under(name: str, *prefixes: str) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


@pytest.mark.parametrize("package", ["cascade_tui.policy", "cascade_tui.engine", "cascade_tui.session", "backends"])
def test_core_layers_import_no_ui_and_no_cli(package):
    assert offenders(package, lambda n: under(n, "textual", "typer", "cascade_tui.tui", "cascade_tui.cli")) == []


def test_the_tui_never_touches_a_backend():
    """The TUI talks to a session (through its host); models, engine and runtime stay behind it."""
    assert offenders("cascade_tui.tui", lambda n: under(n, "backends", "cascade_tui.runtime", "cascade_tui.engine.decoder",
                                                        "llama_cpp")) == []


def test_backends_import_nothing_from_cascade_tui():
    assert offenders("backends", lambda n: under(n, "cascade_tui")) == []


def test_policy_is_pure():
    def forbidden(n: str) -> bool:
        top = n.split(".")[0]
        return not (under(n, "cascade_tui.policy") or top in PURE_STDLIB)

    assert offenders("cascade_tui.policy", forbidden) == []


def test_engine_knows_backends_only_through_the_contract():
    assert offenders("cascade_tui.engine", lambda n: under(n, "backends") and not under(n, "backends.base")) == []


def test_the_checker_sees_lazy_and_relative_imports(tmp_path):
    """The contract checks cannot pass vacuously: they see imports inside functions, relative
    imports, and ``from package import module``."""
    mod = tmp_path / "pkg" / "sub" / "m.py"
    mod.parent.mkdir(parents=True)
    mod.write_text("def f():\n    import textual.app\n    from os import path\n"
                   "from ..other import thing\nfrom . import sibling\n")
    assert imports_of(mod, tmp_path) == {"textual.app", "os", "os.path", "pkg.other", "pkg.other.thing",
                                         "pkg.sub", "pkg.sub.sibling"}


def test_one_default_threads():
    defs = []
    for package in ("cascade_tui", "backends"):
        for path in modules(package):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.FunctionDef) and node.name == "default_threads":
                    defs.append(str(path.relative_to(ROOT)))
    assert defs == ["backends/base.py"]
