"""bench: run_bench over the in-memory backend (scripted clock, MoE cost model), the report's
arithmetic, JSON, plot, recommendations, the command's input checks, and one end-to-end run on a
tiny real GGUF pair through llama.cpp."""

from __future__ import annotations

import json
from collections import Counter

import pytest
import typer
from typer.testing import CliRunner

from backends.model_drafter import ModelDrafter
from cascade_tui.bench import BenchError, BenchReport, RunResult, make_policies, parse_policy_list, run_bench
from cascade_tui.bench.render import render_table, summary_lines, write_json
from cascade_tui.engine import GenerationConfig, SpeculativeDecoder
from cascade_tui.policy import make_policy
from cascade_tui.runtime import LoadedModels
from cascade_tui.stats import RunStats
from fakes import FakeModel, ScriptedClock, moe_cost

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
POLICIES = ["off", "static:1", "static:2", "static:3", "cascade", "heuristic", "learned"]
WORKLOADS = {"code": ["def f(x):", "class A:", "import os"], "math": ["2+2=", "x*y"]}


def fake_models(clock: ScriptedClock, noise: float = 0.7) -> LoadedModels:
    target = FakeModel(vocab=16, seed=3, clock=clock, cost=moe_cost(base=1.0, per_token=0.02, per_expert=0.3))
    draft = FakeModel(vocab=16, seed=3, noise=noise, n_moe_layers=0, clock=clock, cost=lambda n, u: 0.05 + 0.01 * n)
    return LoadedModels(target, ModelDrafter(draft, name="fake-draft"), "fake://target", "fake-draft", "fake")


def bench(policies=POLICIES, workloads=WORKLOADS, **kw):
    clock = ScriptedClock()
    kw.setdefault("max_tokens", 24)
    return run_bench(fake_models(clock), workloads, policies, clock=clock, **kw)


# -- the loop ----------------------------------------------------------------------------------------
def test_interleaves_policies_per_prompt_off_first_then_in_reverse():
    """ABBA: off and the policies in the order given on one prompt, in reverse on the next, so
    the machine's drift within a prompt's runs does not always fall on the same policy."""
    seen = []
    report = bench(["cascade", "static:2", "off"], progress=lambda d, t, cur: seen.append((d, t, cur)))
    order = [(r.workload, r.prompt_index, r.policy) for r in report.runs]
    forward = ("off", "cascade", "static:2")
    assert order == [(w, i, p) for w, ps in WORKLOADS.items() for i in range(len(ps))
                     for p in (forward if i % 2 == 0 else forward[::-1])]
    assert seen[0] == (0, 15, "code #1 off") and seen[1] == (1, 15, "code #1 cascade")
    assert seen[3] == (3, 15, "code #2 static:2") and seen[5] == (5, 15, "code #2 off")
    # off ran last on the second prompt: the others are still compared with it
    assert all(r.identical_to_off is True for r in report.runs), [(r.prompt_index, r.policy) for r in report.runs]
    assert seen[-1] == (15, 15, None)
    assert report.complete and report.runs_planned == 15


def standalone(r):
    """The same request outside the bench: one policy object runs the workload's prompts up to
    this one in order (the bench keeps an adaptive policy's state across a workload's prompts)."""
    policy = make_policy(r.policy)
    for j in range(r.prompt_index + 1):
        clock = ScriptedClock()
        m = fake_models(clock)
        dec = SpeculativeDecoder(m.target, m.drafter, policy, clock=clock)
        stats = RunStats()
        for ev in dec.generate(WORKLOADS[r.workload][j], GenerationConfig(max_tokens=24)):
            stats.add(ev)
    return stats


def test_each_run_matches_a_standalone_request_and_output_equals_off():
    report = bench(time_draft_prefill=True)
    assert report.meta["draft_prefill"].startswith("timed")
    for r in report.runs:
        stats = standalone(r)
        assert (r.generated_tokens, r.iterations, r.drafted, r.accepted) == (
            stats.generated_tokens, stats.iterations, stats.drafted, stats.accepted)
        assert r.decode_s == pytest.approx(stats.decode_s)
        assert r.tokens == stats.emitted
        assert r.identical_to_off is True and r.draft_prefill_s == 0
    assert report.summary()["all_identical_to_off"] is True


def test_drafter_reads_the_prompt_outside_the_timed_request():
    report = bench()
    assert report.meta["draft_prefill"].startswith("untimed")
    compared = 0
    for r in report.runs:
        alone = standalone(r)
        assert r.tokens == alone.emitted and r.identical_to_off is True
        n_prompt = len(WORKLOADS[r.workload][r.prompt_index])
        if r.policy == "off":
            assert r.draft_prefill_s == 0 and r.decode_s == pytest.approx(alone.decode_s)
        else:  # the fake drafter's cost model: 0.05 s + 0.01 s per token and eval
            assert r.draft_prefill_s == pytest.approx(0.05 + 0.01 * n_prompt)
            # an adaptive policy decides from timings, so without the prompt in its first draft
            # it may take another path (learned: 50 drafted instead of 49): compare like with like
            same_path = (r.iterations, r.drafted) == (alone.iterations, alone.drafted)
            if r.policy.startswith("static:"):
                assert same_path
            if r.drafted and same_path:
                assert r.decode_s < alone.decode_s
                compared += 1
    assert compared >= sum(1 for r in report.runs if r.policy.startswith("static:") and r.drafted)


def test_aggregates_are_ratios_of_sums():
    report = bench()
    results = report.results()
    assert [(a.workload, a.policy) for a in results] == [(w, p) for w in WORKLOADS for p in POLICIES]
    for a in results:
        runs = [r for r in report.runs if (r.workload, r.policy) == (a.workload, a.policy)]
        off = [r for r in report.runs if (r.workload, r.policy) == (a.workload, "off")]
        tps = sum(r.generated_tokens for r in runs) / sum(r.decode_s for r in runs)
        tps_off = sum(r.generated_tokens for r in off) / sum(r.decode_s for r in off)
        assert a.tokens_per_s == pytest.approx(tps)
        assert a.speedup_vs_off == pytest.approx(tps / tps_off)
        assert a.generated_tokens == sum(r.generated_tokens for r in runs) == 24 * len(WORKLOADS[a.workload])
        drafted = sum(r.drafted for r in runs)
        assert a.acceptance_rate == (sum(r.accepted for r in runs) / drafted if drafted else None)
        hist = Counter()
        for r in runs:
            hist.update(r.k_hist)
        assert a.mean_k == pytest.approx(sum(k * c for k, c in hist.items()) / sum(hist.values()))
        assert a.iterations == sum(hist.values())
        assert a.mean_unique_experts == pytest.approx(sum(r.unique_sum for r in runs) / sum(r.unique_n for r in runs))
        assert a.identical_to_off is True
    off = report.aggregate("code", "off")
    assert off.speedup_vs_off == 1.0 and off.mean_k == 0 and off.acceptance_rate is None
    assert off.mean_unique_experts == pytest.approx(2.0, abs=0.01)  # one token: top-2 per layer
    assert report.aggregate("code", "static:3").mean_unique_experts > report.aggregate("code", "static:1").mean_unique_experts


def test_summary_from_a_real_run_is_consistent():
    report = bench()
    s = report.summary()
    per = {w: report.aggregate(w, "cascade").speedup_vs_off for w in WORKLOADS}
    assert s["cascade_speedup_vs_off"] == {w: pytest.approx(v, abs=1e-4) for w, v in per.items()}
    assert s["cascade_worst_speedup_vs_off"] == pytest.approx(min(per.values()), abs=1e-4)
    for w, v in s["cascade_vs_best_static"]["per_workload"].items():
        statics = {p: report.aggregate(w, p).tokens_per_s for p in ("static:1", "static:2", "static:3")}
        best = max(statics, key=statics.get)
        assert v["best_static"] == best
        assert v["ratio"] == pytest.approx(report.aggregate(w, "cascade").tokens_per_s / statics[best], abs=1e-4)
    assert s["cascade_vs_best_static"]["min"] == min(v["ratio"] for v in s["cascade_vs_best_static"]["per_workload"].values())
    assert len(s["recommendations"]) == len(WORKLOADS)


def test_set_params_reach_the_policies_that_have_them():
    report = bench(["off", "cascade"], set_params={"k_max": "2"}, workloads={"code": ["def f(x):"]}, max_tokens=40)
    assert max(report.aggregate("code", "cascade").k_hist) <= 2
    assert make_policies(["off", "cascade", "heuristic"], {"k_max": 3})[2].get("k_max") == 3
    with pytest.raises(BenchError, match="no policy in off, static:1 has the parameter 'k_max'"):
        make_policies(["off", "static:1"], {"k_max": 3})
    with pytest.raises(BenchError, match="static:K"):
        make_policies(["off"], {"k": 3})
    with pytest.raises(BenchError, match="cascade: .*k_max"):
        make_policies(["cascade"], {"k_max": "lots"})


def test_parse_policy_list():
    assert parse_policy_list("cascade, static:2,off,static:2") == ["off", "cascade", "static:2"]
    assert parse_policy_list("static:1") == ["off", "static:1"]
    with pytest.raises(BenchError, match="unknown policy 'turbo'"):
        parse_policy_list("off,turbo")
    with pytest.raises(BenchError, match="--policies static:x: k: 'x' is not a valid int"):
        parse_policy_list("off,static:x")
    with pytest.raises(BenchError, match="empty policy name"):
        parse_policy_list("off,,cascade")


def test_n_prompts_and_workload_objects():
    from cascade_tui.workloads import Workload

    report = bench(["off"], {"w": Workload("w", ("a b", "c d", "e f"), "test source")}, n_prompts=2)
    assert report.workloads == {"w": ("a b", "c d")} and report.sources == {"w": "test source"}
    assert len(report.runs) == 2


def test_prompt_too_long_is_skipped():
    report = bench(["off", "static:1"], {"code": ["x" * 600, "ok"]})
    assert [(r.prompt_index, r.policy) for r in report.runs] == [(1, "static:1"), (1, "off")]  # 2nd: reversed
    assert report.skipped[0]["prompt_index"] == 0 and "context" in report.skipped[0]["reason"]
    assert report.runs_planned == 2


def test_ctrl_c_returns_a_partial_report(tmp_path):
    def progress(done, total, cur):
        if done == 4:
            raise KeyboardInterrupt

    report = bench(progress=progress)
    assert report.interrupted and not report.complete
    assert len(report.runs) == 4 and report.runs_planned == 5 * len(POLICIES)
    d = json.loads(write_json(report, tmp_path / "r.json").read_text())
    assert d["partial"] is True and d["runs_done"] == 4
    assert {r["policy"] for r in d["results"]} == {"off", "static:1", "static:2", "static:3"}
    assert any("PARTIAL" in line for line in summary_lines(report))


# -- report arithmetic on hand-made runs --------------------------------------------------------------
def run(w, i, policy, tokens, seconds, k_hist=None, same=True, drafted=0, accepted=0):
    return RunResult(workload=w, prompt_index=i, policy=policy, generated_tokens=tokens, decode_s=seconds,
                     prefill_s=0.0, iterations=sum((k_hist or {0: tokens}).values()), drafted=drafted,
                     accepted=accepted, k_hist=Counter(k_hist or {0: tokens}), unique_sum=0.0, unique_n=0,
                     stop_reason="max_tokens", identical_to_off=None if policy == "off" else same)


def handmade() -> BenchReport:
    pols = ["off", "static:1", "static:2", "cascade", "heuristic"]
    rep = BenchReport("m.gguf", "d.gguf", "llama", pols, {"code": ("a", "b"), "chat": ("c",), "mix": ("d",)},
                      {"code": "s", "chat": "s", "mix": "s"}, 10, runs_planned=20)
    rep.runs = [
        # code: off 10 tok/s; static:1 12; static:2 15 (best); cascade 14; heuristic 11
        run("code", 0, "off", 10, 1.0), run("code", 1, "off", 10, 1.0),
        run("code", 0, "static:1", 10, 0.9), run("code", 1, "static:1", 14, 1.1),
        run("code", 0, "static:2", 15, 1.0), run("code", 1, "static:2", 15, 1.0),
        run("code", 0, "cascade", 14, 1.0, {0: 2, 3: 5, 2: 1}), run("code", 1, "cascade", 14, 1.0, {3: 4}),
        run("code", 0, "heuristic", 11, 1.0), run("code", 1, "heuristic", 11, 1.0),
        # chat: everything slower than off
        run("chat", 0, "off", 10, 1.0), run("chat", 0, "static:1", 10, 1.25), run("chat", 0, "static:2", 10, 2.0),
        run("chat", 0, "cascade", 10, 1.05, {0: 9, 1: 1}), run("chat", 0, "heuristic", 10, 1.5, same=False),
        # mix: cascade best, mostly at K=0 -> closest fixed setting is no draft
        run("mix", 0, "off", 10, 1.0), run("mix", 0, "static:1", 10, 1.0), run("mix", 0, "static:2", 10, 1.25),
        run("mix", 0, "cascade", 11, 1.0, {0: 6, 1: 2}), run("mix", 0, "heuristic", 10, 1.0),
    ]
    return rep


def test_summary_math_and_recommendations():
    rep = handmade()
    s = rep.summary()
    assert s["cascade_speedup_vs_off"] == {"code": 1.4, "chat": pytest.approx(0.9524, abs=1e-4), "mix": 1.1}
    assert s["cascade_worst_speedup_vs_off"] == pytest.approx(0.9524, abs=1e-4)
    vs = s["cascade_vs_best_static"]
    assert vs["per_workload"]["code"] == {"ratio": pytest.approx(14 / 15, abs=1e-4), "best_static": "static:2",
                                          "best_static_speedup_vs_off": 1.5}
    assert vs["per_workload"]["chat"]["best_static"] == "static:1"
    assert vs["per_workload"]["chat"]["ratio"] == pytest.approx(1.25 / 1.05, abs=1e-4)
    assert vs["per_workload"]["mix"]["ratio"] == pytest.approx(1.1, abs=1e-4)
    assert vs["min"] == pytest.approx(14 / 15, abs=1e-4)
    assert s["all_identical_to_off"] is False
    assert rep.aggregate("chat", "heuristic").identical_to_off is False
    assert rep.aggregate("code", "static:1").speedup_vs_off == pytest.approx(24 / 20)
    assert rep.aggregate("code", "cascade").mean_k == pytest.approx((3 * 5 + 2 + 3 * 4) / 12)

    recs = {r.workload: r for r in rep.recommendations()}
    assert (recs["code"].policy, recs["code"].draft_k) == ("static:2", 2)
    assert recs["code"].llama_server == "--draft-max 2 --draft-min 2"
    assert recs["code"].text.startswith("code: use static:2, 1.50x the tokens/s of off (next: cascade 1.40x)")
    assert (recs["chat"].policy, recs["chat"].draft_k) == ("off", None)
    assert "no policy beat plain decoding; best was cascade at 0.95x" in recs["chat"].text
    assert "no draft" in recs["chat"].llama_server
    assert recs["mix"].policy == "cascade" and recs["mix"].draft_k is None  # modal K is 0
    assert "most used K was 0" in recs["mix"].text and "no draft" in recs["mix"].text
    assert any("WARNING: greedy output differed from off in: chat #1 heuristic" in x for x in summary_lines(rep))


def test_cascade_recommendation_uses_its_modal_k():
    rep = handmade()
    rep.runs = [r for r in rep.runs if r.policy != "static:2"]
    rep.policies.remove("static:2")
    rec = {r.workload: r for r in rep.recommendations()}["code"]
    assert (rec.policy, rec.draft_k, rec.llama_server) == ("cascade", 3, "--draft-max 3 --draft-min 3")


def test_speedup_uses_only_prompts_both_policies_finished():
    rep = handmade()
    rep.runs = [r for r in rep.runs if not (r.workload == "code" and r.prompt_index == 1 and r.policy != "off")]
    assert rep.aggregate("code", "static:1").speedup_vs_off == pytest.approx((10 / 0.9) / 10)
    assert rep.aggregate("code", "off").prompts == 2


def test_json_schema(tmp_path):
    d = json.loads(write_json(handmade(), tmp_path / "r.json").read_text())
    assert {"model", "draft", "backend", "results", "summary"} <= set(d)
    assert (d["model"], d["draft"], d["backend"], d["partial"]) == ("m.gguf", "d.gguf", "llama", False)
    for r in d["results"]:
        assert {"workload", "policy", "tokens_per_s", "speedup_vs_off", "acceptance_rate", "mean_k",
                "generated_tokens", "identical_to_off", "mean_unique_experts"} <= set(r)
    assert {"cascade_worst_speedup_vs_off", "cascade_vs_best_static", "recommendations"} <= set(d["summary"])
    assert len(d["results"]) == 15 and len(d["runs"]) == 20


def test_table_renders():
    from rich.console import Console

    c = Console(width=80, record=True)
    c.print(render_table(handmade()))
    text = c.export_text()
    assert "static:2" in text and "1.50x" in text and "NO" in text


def test_plot_writes_a_png(tmp_path):
    from cascade_tui.bench.plot import plot_report

    out = plot_report(handmade(), tmp_path / "s.png")
    assert out.read_bytes()[:8] == PNG_MAGIC


def test_plot_without_matplotlib_is_a_clear_error(monkeypatch, tmp_path):
    import cascade_tui.bench.plot as plot

    monkeypatch.setattr(plot.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(BenchError, match="--plot needs matplotlib.*pip install"):
        plot.plot_report(handmade(), tmp_path / "s.png")


# -- the command -----------------------------------------------------------------------------------------
def bench_app() -> typer.Typer:
    from cascade_tui.cli import app

    return app


@pytest.fixture
def no_model_load(monkeypatch):
    import cascade_tui.runtime as runtime

    def boom(*a, **k):
        raise AssertionError("a model was loaded")

    monkeypatch.setattr(runtime, "load_models", boom)


@pytest.mark.parametrize(
    "args, message",
    [
        (["-w", "code,poetry"], "unknown workload 'poetry'"),
        (["--policies", "off,turbo"], "unknown policy 'turbo'"),
        (["--prompts", "/nonexistent/p.jsonl"], "prompts file /nonexistent/p.jsonl not found"),
        (["--json", "/nonexistent/dir/r.json"], "directory /nonexistent/dir does not exist"),
        (["--plot", "chart.gif"], "use a .png, .svg or .pdf"),
        (["--set", "nonsense"], "--set expects KEY=VALUE"),
        (["--set", "tolerance=2", "--policies", "off,static:1"], "has the parameter 'tolerance'"),
        (["--prompt-source", "web"], "unknown prompt source"),
        (["--draft", "none"], "with --draft none every policy is plain decoding"),
    ],
)
def test_bad_input_exits_2_before_loading(no_model_load, args, message):
    res = CliRunner().invoke(bench_app(), ["bench", *args])
    assert res.exit_code == 2, res.output
    assert message in res.stderr
    assert res.stderr.count("\n") == 1 and "Traceback" not in res.stderr


def test_bad_prompts_line_exits_2(no_model_load, tmp_path):
    p = tmp_path / "p.jsonl"
    p.write_text('{"prompt": "a"}\n{oops}\n')
    res = CliRunner().invoke(bench_app(), ["bench", "--prompts", str(p)])
    assert res.exit_code == 2 and "line 2: not valid JSON" in res.stderr


def test_cli_has_bench_once_wired():
    from cascade_tui.cli import app

    names = [c.name or c.callback.__name__ for c in app.registered_commands]
    assert names.count("bench") == 1


# -- end to end on a tiny real GGUF pair (llama.cpp) ---------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_gguf(tmp_path_factory):
    pytest.importorskip("backends.llamacpp.target")
    from cascade_tui.factory import write_model

    d = tmp_path_factory.mktemp("bench-gguf")
    common = dict(arch="llama", n_layer=2, n_embd=64, n_head=4, n_ff=128, seed=0)
    write_model(d / "target.gguf", n_expert=8, n_expert_used=2, **common)
    write_model(d / "draft.gguf", n_expert=0, **common)
    return d / "target.gguf", d / "draft.gguf"


def test_end_to_end_on_tiny_gguf(tiny_gguf, tmp_path):
    target, draft = tiny_gguf
    prompts = tmp_path / "p.jsonl"
    prompts.write_text('{"prompt": "def add(a, b):", "workload": "code"}\n{"prompt": "The capital of"}\n')
    args = ["bench", "--model", str(target), "--draft", str(draft), "--threads", "1", "--ctx", "256",
            "--policies", "static:1,static:2,cascade", "-w", "math", "--prompt-source", "builtin",
            "--prompts-per-workload", "1", "--prompts", str(prompts), "-n", "12",
            "--json", str(tmp_path / "r.json"), "--plot", str(tmp_path / "r.png")]
    res = CliRunner().invoke(bench_app(), args)
    assert res.exit_code == 0, res.output + res.stderr
    d = json.loads((tmp_path / "r.json").read_text())
    assert (d["model"], d["draft"], d["backend"]) == (str(target), str(draft), "llama")
    assert [(r["workload"], r["policy"]) for r in d["results"]] == [
        (w, p) for w in ("math", "code", "custom") for p in ("off", "static:1", "static:2", "cascade")]
    assert all(r["identical_to_off"] for r in d["results"])
    assert all(r["generated_tokens"] == 12 for r in d["results"])
    assert all(r["mean_unique_experts"] >= 2.0 for r in d["results"])
    assert d["workloads"]["math"]["source"].startswith("built-in")
    assert d["machine"]["threads"] == 1
    assert (tmp_path / "r.png").read_bytes()[:8] == PNG_MAGIC
    assert "recommendation:" in res.stdout and "closest llama-server setting" in res.stdout


def test_end_to_end_ctrl_c_writes_partial_report(tiny_gguf, tmp_path, monkeypatch):
    import cascade_tui.bench.runner as runner

    real = runner.run_bench

    def interrupted(*a, **kw):
        outer = kw["progress"]

        def progress(done, total, cur):
            outer(done, total, cur)
            if done == 3:
                raise KeyboardInterrupt

        kw["progress"] = progress
        return real(*a, **kw)

    monkeypatch.setattr(runner, "run_bench", interrupted)
    target, draft = tiny_gguf
    res = CliRunner().invoke(bench_app(), [
        "bench", "--model", str(target), "--draft", str(draft), "--threads", "1", "--ctx", "256", "-n", "6",
        "-w", "code", "--prompt-source", "builtin", "--policies", "off,static:1", "--json", str(tmp_path / "r.json")])
    assert res.exit_code == 130, res.output + res.stderr
    d = json.loads((tmp_path / "r.json").read_text())
    assert d["partial"] is True and d["runs_done"] == 3 and d["runs_planned"] == 6
    assert "PARTIAL RESULTS: interrupted after 3 of 6 runs" in res.stdout


def test_subprocess_loads_llama_cpp_before_numpy(tiny_gguf, tmp_path):
    """In a fresh interpreter, as a user runs it: llama.cpp's libraries load before numpy's."""
    import subprocess
    import sys

    target, draft = tiny_gguf
    res = subprocess.run(
        [sys.executable, "-m", "cascade_tui", "bench", "--model", str(target), "--draft", str(draft), "--threads", "1",
         "--ctx", "128", "-n", "4", "-w", "code", "--prompt-source", "builtin", "--prompts-per-workload", "1",
         "--policies", "off", "--json", str(tmp_path / "r.json")],
        capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    d = json.loads((tmp_path / "r.json").read_text())
    assert d["model_info"]["extra"]["numpy_imported_first"] is False
    assert d["model_info"]["n_expert"] == 8 and d["draft_info"]["n_expert"] == 0


def test_recommendation_flags_a_win_that_is_not_on_every_prompt():
    rep = handmade()
    rep.policies = ["off", "static:1"]
    rep.runs = [r for r in rep.runs if r.workload == "code" and r.policy in rep.policies]
    rep.workloads = {"code": ("a", "b")}
    assert "not on every prompt" not in rep.recommendations()[0].text
    rep.runs[2] = run("code", 0, "static:1", 10, 1.2)
    assert rep.per_prompt_speedups("code", "static:1") == pytest.approx([10 / 12, 14 / 11])
    text = rep.recommendations()[0].text
    assert text.startswith("code: use static:1, 1.04x the tokens/s of off (not on every prompt: 0.83x-1.27x)")


def test_cascade_keeps_what_it_learned_across_a_workloads_prompts():
    """Where speculation loses, Cascade with memory drafts less over a workload than Cascade
    restarting every prompt (memory=false), and is faster for it."""
    prompts = {"code": ["def f(x):", "class A:", "import os", "for i in", "while x", "return y"]}

    def cascade_runs(memory):
        clock = ScriptedClock()
        m = fake_models(clock, noise=6.0)  # a poor drafter: speculation never pays here
        rep = run_bench(m, prompts, ["off", "cascade"], clock=clock, max_tokens=48,
                        set_params={"memory": memory})
        return [r for r in rep.runs if r.policy == "cascade"]

    with_memory, without = cascade_runs("true"), cascade_runs("false")
    assert sum(r.drafted for r in with_memory[1:]) < sum(r.drafted for r in without[1:])
    assert sum(r.decode_s for r in with_memory) < sum(r.decode_s for r in without)
    assert [r.tokens for r in with_memory] == [r.tokens for r in without]


# -- an empty measurement is never presented as a result (issue 12) --------------------------------
def test_a_workload_that_generated_nothing_is_reported_and_left_out():
    rep = handmade()
    rep.workloads["dead"] = ("p1", "p2")
    rep.sources["dead"] = "s"
    for i in range(2):
        for p in rep.policies:
            r = run("dead", i, p, 0, 0.0, {})
            r.stop_reason, r.prompt = "eos", f"prompt {i}\nmore"
            rep.runs.append(r)
    assert rep.empty_workloads() == ["dead"]
    assert "dead" not in {a.workload for a in rep.results()}
    assert "dead" not in {r.workload for r in rep.recommendations()}
    assert "dead" not in rep.summary()["cascade_speedup_vs_off"]
    lines = summary_lines(rep)
    assert any(x.startswith("WARNING: dead: no prompt generated any token") for x in lines)
    notes = [x for x in lines if x.startswith("NOTE: dead")]
    assert notes == ["NOTE: dead #1 generated no tokens (stop: eos): 'prompt 0'",
                     "NOTE: dead #2 generated no tokens (stop: eos): 'prompt 1'"]
    assert not rep.nothing_generated
    d = rep.to_dict()
    assert d["summary"]["empty_workloads"] == ["dead"] and len(d["summary"]["empty_requests"]) == 2


def test_bench_that_generates_nothing_says_so_in_one_line_and_exits_1(tmp_path):
    """A docstring-terminated prompt makes the shipped demo target stop at EOS at once (its corpus had
    no docstrings): nothing is measured, and bench must not print a table of zeros."""
    from cascade_tui.demo import demo_draft_path, demo_target_path

    prompt = ('def running_mean(values: list[float], window: int) -> list[float]:\n'
              '    """Return the mean of each full window of ``window`` consecutive values."""\n')
    p = tmp_path / "p.jsonl"
    p.write_text(json.dumps({"prompt": prompt, "workload": "code"}) + "\n")
    res = CliRunner().invoke(bench_app(), [
        "bench", "--model", str(demo_target_path()), "--draft", str(demo_draft_path()), "--threads", "1",
        "--prompts", str(p), "--policies", "off,static:1", "-n", "8", "--json", str(tmp_path / "r.json")])
    assert res.exit_code == 1, res.output + res.stderr
    err = res.stderr.strip().splitlines()
    assert err[-1].startswith("cascade-tui: error: no request generated any token") and "'eos'" in err[-1]
    assert "tok/s" not in res.stdout and "recommendation" not in res.stdout
    d = json.loads((tmp_path / "r.json").read_text())
    assert d["summary"]["empty_requests"][0]["stop_reason"] == "eos"


def test_utility_check_compares_prediction_with_static_k():
    rep = handmade()
    rep.policies.append("learned")
    rep.predictions[("code", "learned")] = [{1: 1.0, 2: 1.3}, {1: 1.2, 2: 1.5}]  # the first prompt knew less
    rep.predictions[("chat", "learned")] = [{1: 0.8, 2: 0.5}]
    chk = rep.utility_check()["learned"]
    got = {(p["workload"], p["k"]): (round(p["predicted"], 4), p["predicted_last"], round(p["realized"], 4))
           for p in chk["points"]}
    assert got == {("code", 1): (1.1, 1.2, 1.2), ("code", 2): (1.4, 1.5, 1.5), ("chat", 1): (0.8, 0.8, 0.8),
                   ("chat", 2): (0.5, 0.5, 0.5)}
    assert chk["r2_last"] == pytest.approx(1.0) and 0.9 < chk["r2"] < 1.0
    lines = summary_lines(rep)
    assert any("learned predicted utility / static:K's realized speedup, R^2 0.9" in x for x in lines)
    assert any("learned after the workload (last prediction), R^2 1.00" in x for x in lines)


def test_rounds_repeat_the_schedule_with_fresh_policies_and_flipped_order():
    """--rounds N: the whole schedule N times, ABBA flipped from one round to the next (each
    prompt sees both orders), each round's policies fresh (an adaptive one starts cold, so a
    round repeats the first exactly on this scripted clock), pooled aggregates and per-round
    speedups."""
    one = bench(["off", "learned"], rounds=1)
    report = bench(["off", "learned"], rounds=2)
    assert report.runs_planned == 2 * one.runs_planned == len(report.runs) and report.rounds == 2
    order = [(r.round_no, r.workload, r.prompt_index, r.policy) for r in report.runs]
    fwd = ("off", "learned")
    assert order == [(rnd, w, i, p) for rnd in range(2) for w, ps in WORKLOADS.items() for i in range(len(ps))
                     for p in (fwd if (i + rnd) % 2 == 0 else fwd[::-1])]
    first = {(r.workload, r.prompt_index, r.policy): r for r in report.runs if r.round_no == 0}
    for r in report.runs:
        if r.round_no == 1:  # fresh policies: the same decisions and tokens as round 1
            assert r.tokens == first[(r.workload, r.prompt_index, r.policy)].tokens
            assert r.k_hist == first[(r.workload, r.prompt_index, r.policy)].k_hist
        assert r.identical_to_off is True
    for w in WORKLOADS:
        per = report.round_ratios(w, "learned")
        assert len(per) == 2 and per[0] == pytest.approx(per[1], rel=0.05)
        assert report.ratio(w, "learned", "off") == pytest.approx(one.ratio(w, "learned", "off"), rel=0.05)
        assert report.aggregate(w, "learned").prompts == 2 * len(WORKLOADS[w])
    s = report.summary()["policies"]["learned"]
    assert set(s["speedup_vs_off_per_round"]) == set(WORKLOADS)
    assert any("in each of 2 rounds" in line for line in summary_lines(report))
    assert json.loads(json.dumps(report.to_dict()))["rounds"] == 2
    assert one.summary()["policies"]["learned"]["speedup_vs_off_per_round"] == {}
    with pytest.raises(BenchError):
        bench(["off"], rounds=0)
