"""`cascade-tui sessions list | show | export | whatif` and `replay` on recordings: real `run`
recordings on llama.cpp where it matters (show = run --json, what-if validation), the in-memory
model where a long or deterministic session is needed."""

from __future__ import annotations

import csv
import io
import json
import os
import signal
import statistics
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import pytest

import backends.llamacpp  # noqa: F401  (llama.cpp before numpy)
from cascade_tui.session import read_session
from cascade_tui.session.report import chrome_trace, to_csv, to_markdown
from cascade_tui.session.whatif import WhatIf
from test_cli import _expect_user_error, cli
from tui_fakes import fake_events, fake_session, record_events

PROMPT = "def fibonacci(n):"


def run_recorded(path: Path, policy: str, tokens: int = 96, *extra) -> dict:
    p = cli("run", "--prompt", PROMPT, "--policy", policy, "--threads", "1", "--max-tokens", str(tokens),
            "--record", path, "--json", *extra, check=0)
    return json.loads(p.stdout)


@pytest.fixture(scope="module")
def demo_runs(tmp_path_factory):
    """Recordings of the demo pair under several policies (real llama.cpp, through `run`)."""
    d = tmp_path_factory.mktemp("demo-runs")
    return {pol: (d / f"{pol.replace(':', '_')}.cascade.jsonl", run_recorded(d / f"{pol.replace(':', '_')}.cascade.jsonl", pol))
            for pol in ("cascade", "static:2")}


def test_show_prints_the_statistics_run_printed(demo_runs):
    for policy, (rec, out) in demo_runs.items():
        shown = json.loads(cli("sessions", "show", rec, "--json", check=0).stdout)
        assert shown["total"] == out, policy  # same field names, same values
        assert len(shown["turns"]) == 1 and shown["turns"][0] == out
        text = cli("sessions", "show", rec, check=0).stdout
        assert "total" in text and f"{out['tokens_per_s']:.1f}" in text and "target.gguf" in text


@pytest.mark.damaged_recordings
def test_list_shows_every_recording_and_skips_what_it_cannot_read(demo_runs, tmp_path):
    for rec, _ in demo_runs.values():
        (tmp_path / rec.name).write_bytes(rec.read_bytes())
    (tmp_path / "broken.cascade.jsonl").write_text("not json\n")
    p = cli("sessions", "list", tmp_path, "--json", check=0)
    rows = json.loads(p.stdout)
    assert sorted(r["policy"] for r in rows) == ["cascade", "static:2"]
    for r in rows:
        out = demo_runs[r["policy"]][1]
        assert r["tokens"] == out["generated_tokens"] and r["tokens_per_s"] == pytest.approx(out["tokens_per_s"], abs=1e-3)
        assert r["model"] == "target.gguf" and r["turns"] == 1
        assert r["estimated_speedup"] == out["estimated_speedup"]
    assert "skipped" in p.stderr and "broken.cascade.jsonl" in p.stderr
    table = cli("sessions", "list", tmp_path, check=0).stdout
    assert "cascade.cascade.jsonl" in table and "static_2.cascade.jsonl" in table and "speedup" in table
    _expect_user_error(cli("sessions", "list", tmp_path / "nowhere"), "no such directory")


def test_chrome_trace_is_valid_trace_event_json_with_nested_slices_and_counters(demo_runs, tmp_path):
    rec, out = demo_runs["cascade"]
    dest = tmp_path / "t.trace.json"
    cli("sessions", "export", rec, "--to", "chrome-trace", "-o", dest, check=0)
    trace = json.loads(dest.read_text())
    evs = trace["traceEvents"]
    assert trace["displayTimeUnit"] == "ms"
    for e in evs:  # the fields Perfetto's JSON importer requires
        assert e["ph"] in ("X", "C", "i", "M") and isinstance(e["pid"], int) and isinstance(e["name"], str)
        if e["ph"] != "M":
            assert isinstance(e["ts"], (int, float)) and e["ts"] >= 0
        if e["ph"] == "X":
            assert e["dur"] >= 0 and "tid" in e
        if e["ph"] == "C":
            assert all(isinstance(v, (int, float)) for v in e["args"].values())
    its = [e for e in evs if e["ph"] == "X" and e.get("cat") == "iteration"]
    assert len(its) == out["iterations"]
    # draft and verify slices nest inside their iteration
    children = [e for e in evs if e["ph"] == "X" and e.get("cat") in ("draft", "verify")]
    for c in children:
        parent = next(p for p in its if p["ts"] <= c["ts"] + 1e-3 and c["ts"] < p["ts"] + p["dur"] + 1e-3)
        assert c["ts"] + c["dur"] <= parent["ts"] + parent["dur"] + 1e-2
    counters = {e["name"] for e in evs if e["ph"] == "C"}
    assert {"K", "utility", "accepted", "unique experts / layer"} <= counters
    phases = [e for e in evs if e["ph"] == "X" and e.get("cat") == "phase"]
    assert phases and {e["tid"] for e in phases} == {2}
    assert sum(1 for e in evs if e["ph"] == "X" and e.get("cat") == "turn") == 1


def test_csv_has_one_row_per_iteration_and_markdown_reports(demo_runs, tmp_path):
    rec, out = demo_runs["cascade"]
    p = cli("sessions", "export", rec, "--to", "csv", "-o", "-", check=0)
    rows = list(csv.DictReader(io.StringIO(p.stdout)))
    assert len(rows) == out["iterations"]
    assert sum(int(r["emitted"]) for r in rows) == out["generated_tokens"]
    assert "".join(r["text"] for r in rows) == out["text"]
    cli("sessions", "export", rec, "--to", "markdown", check=0)  # next to the recording by default
    md = rec.with_name(rec.name.removesuffix(".cascade.jsonl") + ".md").read_text()
    for part in ("# cascade-tui session", "## Statistics", "## Phases", "## Transitions",
                 f"{out['tokens_per_s']:.1f}"):
        assert part in md
    from cascade_tui.policy import shown_phase

    phases = {shown_phase(e.phase, e.k) for e in read_session(rec).events if e.type == "iteration"}
    assert phases and all(f"| {ph} |" in md for ph in phases), phases
    _expect_user_error(cli("sessions", "export", rec, "--to", "pdf"), "choose chrome-trace, csv, markdown")


def test_whatif_predicts_static_3_from_static_1_and_back_within_15_percent(tmp_path):
    """The validation the issue asks for, on the demo pair (real llama.cpp): record static:1 and
    static:3 runs of the same prompt in alternating rounds; what-if from one run must predict the
    tokens/s measured in the other run of the same round within 15% (the median over rounds:
    single runs on this shared VM drift by up to 20% over seconds, which pairing cancels). 16 rounds:
    one run is ~0.2 s and single rounds err by -40%..+50% here (2026-12-02), so a median over 7
    rounds moved by up to 17% between full-suite runs; over 15 it is steadier (each round ~0.5 s)."""
    import cascade_tui.runtime  # noqa: F401
    from cascade_tui.engine import GenerationConfig
    from cascade_tui.demo import demo_draft_path, demo_target_path
    from cascade_tui.runtime import ModelOptions
    from cascade_tui.session.core import RecordOptions, Session

    rounds = []
    for i in range(16):
        rec = {}
        for pol in ("static:1", "static:3") if i % 2 else ("static:3", "static:1"):
            path = tmp_path / f"{pol.replace(':', '_')}-{i}.cascade.jsonl"
            # the shipped (compute-bound) demo pair: the validation docs/BENCHMARKS.md reports
            s = Session.open(ModelOptions(model=str(demo_target_path()), draft=str(demo_draft_path()), threads=1),
                             policy=pol, generation=GenerationConfig(max_tokens=256),
                             record=RecordOptions(path=path))
            list(s.turn(PROMPT))
            s.close()
            rec[pol] = read_session(path)
        rounds.append(rec)
    for src, dst in (("static:1", "static:3"), ("static:3", "static:1")):
        errors = [WhatIf.from_events(r[src].header, r[src].events).predict(dst).tokens_per_s / _tps(r[dst]) - 1
                  for r in rounds[1:]]  # round 0 warms the machine up
        assert abs(statistics.median(errors)) < 0.15, (src, dst, [f"{e:+.1%}" for e in errors])


def _tps(f) -> float:
    from cascade_tui.stats import total_stats

    return total_stats(f.events).tokens_per_s


def test_whatif_on_a_deterministic_cost_model_recovers_it():
    """With the scripted clock (cost = 1 + 0.02 n + 0.3 (u - 2)), the fit explains the recorded
    times and the simulated policies land where the engine really lands."""
    header, events = fake_events(policy="cascade", max_tokens=300, prompts=("abc",), noise=0.6)
    w = WhatIf.from_events(header, events)
    assert w.cost.r2 > 0.99 and len(w.cost.verify_sizes) > 1 and w.cost.c > 0  # cost follows the experts
    for pol in ("off", "static:2"):
        _, real = fake_events(policy=pol, max_tokens=300, prompts=("abc",), noise=0.6)
        from cascade_tui.stats import total_stats

        measured = total_stats(real).tokens_per_s
        assert w.predict(pol).tokens_per_s == pytest.approx(measured, rel=0.10), pol


def test_whatif_command_says_it_is_an_estimate_and_how_good_the_fit_is(demo_runs):
    rec, _ = demo_runs["cascade"]
    text = cli("sessions", "whatif", rec, "--policy", "static:3", check=0).stdout
    assert "ESTIMATE" in text and "R^2 =" in text and "predicted static:3" in text and "recorded cascade" in text
    d = json.loads(cli("sessions", "whatif", rec, "--policy", "static:1", "--json", check=0).stdout)
    assert d["estimate"] is True and d["predicted"]["policy"] == "static:1" and d["predicted"]["tokens_per_s"] > 0
    assert 0 <= d["cost_model"]["typical_error"] < 1 and d["recorded"]["policy"] == "cascade"
    _expect_user_error(cli("sessions", "whatif", rec, "--policy", "turbo"), "unknown policy")
    _expect_user_error(cli("sessions", "whatif", rec, "--policy", "cascade", "--set", "k_max=0"), "k_max")


# -- bad input: every command that reads a recording ----------------------------------------------
def _bad_files(tmp_path: Path, good: Path) -> dict[str, tuple[Path, str]]:
    lines = good.read_text().splitlines(keepends=True)
    out = {}
    head = json.loads(lines[0])
    head["version"] = 2
    v2 = tmp_path / "v2.cascade.jsonl"
    v2.write_text(json.dumps(head) + "\n" + "".join(lines[1:]))
    out["version"] = (v2, "format version 2")
    out["missing"] = (tmp_path / "missing.cascade.jsonl", "no such file")
    out["directory"] = (tmp_path, "is a directory")
    empty = tmp_path / "empty.cascade.jsonl"
    empty.write_text("")
    out["empty"] = (empty, "is empty")
    other = tmp_path / "prompts.jsonl"
    other.write_text('{"prompt": "def f():"}\n')
    out["jsonl"] = (other, "not a cascade-tui session")
    binary = tmp_path / "model.bin"
    binary.write_bytes(bytes(range(256)) * 8)
    out["binary"] = (binary, "binary file")
    return out


@pytest.mark.damaged_recordings
@pytest.mark.parametrize("command", [["sessions", "show"], ["sessions", "export", "--to", "csv", "-o", "-"],
                                     ["sessions", "whatif", "--policy", "off"], ["replay"]])
def test_bad_recordings_get_one_clear_line(demo_runs, tmp_path, command):
    good, _ = demo_runs["static:2"]
    for kind, (path, needle) in _bad_files(tmp_path, good).items():
        args = command[:2] + [path] + command[2:] if command[0] == "sessions" else command + [path]
        _expect_user_error(cli(*args), needle)


@pytest.mark.damaged_recordings
def test_a_torn_last_line_and_a_malformed_middle_line_are_reported_and_the_rest_is_read(demo_runs, tmp_path):
    good, out = demo_runs["static:2"]
    lines = good.read_text().splitlines(keepends=True)
    damaged = tmp_path / "damaged.cascade.jsonl"
    damaged.write_text(lines[0] + lines[1] + "{garbage\n" + "".join(lines[2:]) + '{"type":"iteration","se')
    p = cli("sessions", "show", damaged, "--json", check=0)
    assert "skipped 1 torn last line" in p.stderr and "line 3: not valid JSON" in p.stderr
    assert json.loads(p.stdout)["total"] == {**out, "session": str(damaged)}  # nothing whole is lost


# -- durability ----------------------------------------------------------------------------------
@pytest.mark.damaged_recordings
def test_sigkill_mid_generation_loses_no_complete_event(tmp_path):
    from cascade_tui.factory import write_model

    model = write_model(tmp_path / "slow.gguf", arch="llama", n_layer=4, n_embd=256, n_head=4, n_ff=256,
                        n_expert=8, n_expert_used=2, seed=3)
    rec = tmp_path / "killed.cascade.jsonl"
    proc = subprocess.Popen([sys.executable, "-m", "cascade_tui", "run", "--model", model, "--draft", "ngram",
                             "--prompt", PROMPT, "--threads", "1", "--max-tokens", "5000", "--ctx", "6000",
                             "--record", rec], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and not (rec.exists() and rec.read_text().count('"type":"iteration"') >= 30):
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)
    raw = rec.read_bytes()
    complete = raw.count(b"\n")  # lines written whole (the header included)
    read = read_session(rec)
    assert not read.problems
    assert len(read.events) == complete - 1  # every complete event came back
    assert read.skipped_torn == (0 if raw.endswith(b"\n") else 1)
    assert sum(1 for e in read.events if e.type == "iteration") >= 30
    assert not any(e.type == "end" for e in read.events)  # it really died mid-turn


def test_a_10000_iteration_recording_records_flat_and_replays_lists_shows_exports_in_bounded_time(tmp_path):
    """Through the real engine with the in-memory model: memory stays flat while recording, and
    every reader of the file finishes in bounded time."""
    rec = tmp_path / "long.cascade.jsonl"
    s = fake_session(policy="off", max_tokens=10_000, n_ctx=12_000, record_path=rec)
    tracemalloc.start()
    gen = s.turn(list(range(1, 8)))
    mem = []
    for i, ev in enumerate(gen):
        if ev.type == "iteration" and ev.index in (1000, 9000):
            mem.append(tracemalloc.get_traced_memory()[0])
    tracemalloc.stop()
    s.close()
    per_iteration = (mem[1] - mem[0]) / 8000
    assert per_iteration < 200, f"recording grew {per_iteration:.0f} bytes per iteration"  # the events are not kept
    assert rec.stat().st_size > 10_000 * 150  # ... but they are all in the file
    timings = {}
    for name, args in {"show": ("sessions", "show", rec, "--json"), "list": ("sessions", "list", tmp_path, "--json"),
                       "export": ("sessions", "export", rec, "--to", "chrome-trace", "-o", tmp_path / "t.json"),
                       "csv": ("sessions", "export", rec, "--to", "csv", "-o", tmp_path / "t.csv")}.items():
        t0 = time.monotonic()
        cli(*args, check=0)
        timings[name] = time.monotonic() - t0
    assert max(timings.values()) < 60, timings
    assert json.loads(cli("sessions", "show", rec, "--json", check=0).stdout)["total"]["iterations"] == 10_000
    # replay through the app, as fast as possible, to the end
    import asyncio

    from cascade_tui.tui.app import CascadeApp
    from cascade_tui.tui.sources import ReplaySource

    f = read_session(rec)

    async def go():
        src = ReplaySource(f.header, f.events, speed=None)
        app = CascadeApp(src)
        async with app.run_test(size=(120, 36)) as pilot:
            t0 = time.monotonic()
            while src.cursor < len(f.events) and time.monotonic() - t0 < 60:
                await pilot.pause(0.05)
            await pilot.pause(0.2)
            return time.monotonic() - t0, app.main.state.n_iterations

    elapsed, n = asyncio.run(go())
    assert n == 10_000 and elapsed < 60


def test_replay_imports_no_llama_cpp_and_loads_no_model(tmp_path):
    header, events = fake_events(max_tokens=40)
    rec = record_events(tmp_path / "r.cascade.jsonl", header, events)
    code = (
        "import asyncio, sys\n"
        "from cascade_tui.cli.replay import read_recording\n"
        "from cascade_tui.tui.app import CascadeApp\n"
        "from cascade_tui.tui.sources import ReplaySource\n"
        f"f = read_recording(__import__('pathlib').Path({str(rec)!r}))\n"
        "async def go():\n"
        "    src = ReplaySource(f.header, f.events, speed=None)\n"
        "    app = CascadeApp(src)\n"
        "    async with app.run_test() as pilot:\n"
        "        while src.cursor < len(f.events): await pilot.pause(0.05)\n"
        "        await pilot.pause(0.2)\n"
        "        assert app.main.state.total.generated_tokens == 80\n"
        "asyncio.run(go())\n"
        "assert 'llama_cpp' not in sys.modules, 'llama_cpp was imported'\n"
        "print('ok')\n")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                       env={**os.environ, "PYTHONPATH": str(Path(__file__).parent)})
    assert p.returncode == 0 and p.stdout.strip() == "ok", p.stderr[-2000:]


def test_whatif_reads_shadow_drafts_as_plain_steps_and_their_comparison_as_agreement():
    from cascade_tui.engine.events import IterationEvent, StartEvent
    from cascade_tui.session.whatif import rows_of

    events = [
        StartEvent(prompt_tokens=3, temperature=0.0),
        IterationEvent(index=0, k=0, emitted=[5], shadow=[5, 6, 7], draft_s=0.002, verify_s=0.010, iter_s=0.0125),
        IterationEvent(index=1, k=0, emitted=[6], draft_s=0.0, verify_s=0.010, iter_s=0.0105),
        IterationEvent(index=2, k=0, emitted=[9], shadow_checked=3, shadow_matched=2, verify_s=0.010, iter_s=0.0104),
        IterationEvent(index=3, k=2, drafted=[1, 2], accepted=1, emitted=[1, 4], draft_s=0.001, verify_s=0.02,
                       iter_s=0.0215),
    ]
    rows, turns, _ = rows_of(events)
    assert [r.draft_s for r in rows[:3]] == [0.0, 0.0, 0.0]
    assert rows[0].iter_s == pytest.approx(0.0105)  # the shadow draft's 2 ms are not a plain step's
    assert rows[3].draft_s == 0.001 and rows[3].iter_s == 0.0215
    # positions 0, 1 matched the shadow draft, 2 did not; the verified draft: 3 agreed, 4 did not
    assert turns[0].agree == {0: True, 1: True, 2: False, 3: True, 4: False}
