"""The TUI's view state on its own: what each panel will show, computed from a session's events."""

from __future__ import annotations

import numpy as np
import pytest

from cascade_tui.engine import EndEvent, IterationEvent, MarkerEvent, ParamEvent, PhaseEvent, StartEvent
from cascade_tui.stats import total_stats
from cascade_tui.tui.state import HEAT_WINDOW, ViewState
from tui_fakes import fake_events


@pytest.fixture(scope="module")
def session():
    return fake_events(policy="cascade", max_tokens=120, noise=0.6)


def test_totals_chat_and_series_follow_the_events(session):
    header, events = session
    st = ViewState(header)
    st.apply_all(events)
    assert st.total.to_dict() == total_stats(events).to_dict()  # the numbers a recording gives
    ends = [e for e in events if isinstance(e, EndEvent)]
    assert [t.text for t in st.chat] == [e.text for e in ends]  # the streamed chat = the answers
    assert [t.message for t in st.chat] == ["abc", "hello"] and [t.end_reason for t in st.chat] == ["max_tokens"] * 2
    its = [e for e in events if isinstance(e, IterationEvent)]
    drafted_text = "".join(e.text[: e.from_draft] for e in its)
    assert "".join(t for turn in st.chat for t, d in turn.segments if d) == drafted_text
    assert st.n_iterations == len(its) and [p.k for p in st.points] == [e.k for e in its]
    assert not st.running and st.policy == "cascade"


def test_measured_t_base_speedup_and_weights_read(session):
    header, events = session
    st = ViewState(header)
    st.apply_all(events)
    k0 = [e.iter_s for e in events if isinstance(e, IterationEvent) and e.k == 0]
    assert st.t_base == pytest.approx(sum(k0) / len(k0))
    assert st.speedup == pytest.approx(st.total.tokens_per_s * st.t_base)
    last = [e for e in events if isinstance(e, IterationEvent)][-1]
    uniq = [len(np.unique(layer)) for layer in last.routing]
    assert list(st.unique_now) == uniq
    assert st.bytes_ratio == pytest.approx(np.mean(uniq) / 2)
    assert 0 < st.total.speculation_share < 1


def test_heatmap_counts_and_rolling_window(session):
    header, events = session
    st = ViewState(header)
    its = [e for e in events if isinstance(e, IterationEvent)]
    st.apply_all(events)
    last = its[-1]
    for layer in range(2):
        assert st.heat_now[layer].sum() == last.routing.shape[1] * 2  # tokens x top-2
    window = its[-HEAT_WINDOW:]
    assert st.heat_tokens == sum(e.routing.shape[1] for e in window)
    expect = np.zeros((2, 8), int)
    for e in window:
        for layer in range(2):
            np.add.at(expect[layer], e.routing[layer].reshape(-1), 1)
    assert (st.heat_sum == expect).all()


def test_log_says_why_and_follows_params_switches_and_clears():
    st = ViewState({"model": {"moe_layers": [0], "n_expert": 4, "n_expert_used": 1}, "policy": {"name": "cascade"}})
    st.apply(StartEvent(turn=0, message="hi", prompt_tokens=3, policy="cascade", params={"k_max": 8}))
    st.apply(PhaseEvent(phase="set", previous="test", k=0, reason="U(K=1)=0.82 < 1: speculation off for 32 iterations",
                        state={"utilities": {"1": 0.82}, "t_base": 0.01, "backoff": 32}))
    st.apply(ParamEvent(key="k_max", value=3, policy="cascade", params={"k_max": 3}))
    st.apply(ParamEvent(key="k_max", value=99, ok=False, error="k_max: 99 is out of range", policy="cascade"))
    st.apply(ParamEvent(key="policy", value="static:2", policy="static:2", params={"k": 2}))
    st.apply(EndEvent(turn=0, reason="cancelled", text="", tail="\ufffd"))
    st.apply(MarkerEvent(label="context cleared"))
    lines = [ln.text for ln in st.log]
    assert "test -> set (K=0): U(K=1)=0.82 < 1: speculation off for 32 iterations" in lines
    assert "k_max = 3 (policy cascade)" in lines
    assert "refused k_max = 99: k_max: 99 is out of range" in lines
    assert "policy switched to static:2" in lines and st.policy == "static:2" and st.params == {"k": 2}
    assert any("turn 1 ended (cancelled)" in t for t in lines) and lines[-1] == "context cleared"
    assert st.utilities == {} and st.chat == [] and st.log_total == len(lines)


def test_the_bar_of_the_k_in_use_follows_each_iteration_between_phase_events():
    st = ViewState({"model": {"moe_layers": [0], "n_expert": 4, "n_expert_used": 1}, "policy": {"name": "learned"}})
    st.apply(StartEvent(turn=0, message="hi", prompt_tokens=3, policy="learned", params={}))
    st.apply(PhaseEvent(phase="set", previous="base", k=3, state={"utilities": {"2": 1.1, "3": 1.3}}))
    st.apply(IterationEvent(k=3, drafted=[1, 2, 3], accepted=3, emitted=[1, 2, 3, 4], utility=1.45, utility_k=3,
                            iter_s=0.01))
    assert st.utilities == {2: 1.1, 3: 1.45}
    # a clamped iteration (K = 1 run) reports the estimate of the K the policy uses (2)
    st.apply(IterationEvent(k=1, drafted=[1], accepted=1, emitted=[5, 6], utility=1.2, utility_k=2, iter_s=0.01))
    assert st.utilities == {2: 1.2, 3: 1.45} and (st.k, st.policy_k) == (1, 2)
    st.apply(IterationEvent(k=0, emitted=[5], utility=1.0, utility_k=0, iter_s=0.01))  # K = 0 has no bar
    st.apply(IterationEvent(k=2, drafted=[1, 2], accepted=0, emitted=[6], iter_s=0.01))  # no estimate
    assert st.utilities == {2: 1.2, 3: 1.45}


def test_the_status_line_shows_the_k_the_policy_chose_and_what_ran_when_the_engine_clamped_it():
    from cascade_tui.tui.widgets.status import status_text

    st = ViewState({"model": {"moe_layers": [0], "n_expert": 4, "n_expert_used": 1}, "policy": {"name": "learned"}})
    st.apply(StartEvent(turn=0, message="hi", prompt_tokens=3, policy="learned", params={}))
    st.apply(PhaseEvent(phase="set", previous="base", k=16, state={}))
    st.apply(IterationEvent(k=16, drafted=list(range(16)), accepted=16, emitted=list(range(17)), utility=1.68,
                            utility_k=16, phase="set", iter_s=0.01))
    assert "set  K=16  U=1.68" in status_text(st).plain
    # the answer's last token: the engine runs K = 0, the policy still chose 16 (and U is 16's)
    st.apply(IterationEvent(k=0, emitted=[5], utility=1.68, utility_k=16, phase="set", iter_s=0.01))
    line = status_text(st).plain
    assert "set  K=16 (ran 0)  U=1.68" in line and " off " not in line
    st.apply(IterationEvent(k=0, emitted=[5], utility=1.0, utility_k=0, phase="set", iter_s=0.01))
    assert " off  K=0  U=1.00" in status_text(st).plain  # speculation really off


def test_the_latest_shadow_draft_is_kept_while_speculation_is_off():
    from cascade_tui.tui.widgets.kchart import KChart

    st = ViewState({"model": {"moe_layers": [0], "n_expert": 4, "n_expert_used": 1}, "policy": {"name": "learned"}})
    st.apply(StartEvent(turn=0, message="hi", prompt_tokens=3, policy="learned", params={}))
    st.apply(IterationEvent(k=0, emitted=[1], shadow=[1, 2, 3, 4], draft_s=0.001, iter_s=0.01))
    assert st.shadow is None  # drafted, not yet resolved
    st.apply(IterationEvent(k=0, emitted=[2], iter_s=0.01))
    st.apply(IterationEvent(k=0, emitted=[9], shadow_checked=3, shadow_matched=2, iter_s=0.01))
    assert st.shadow == (2, 4)
    chart = KChart()
    chart.show(st)
    assert chart.border_subtitle == "last: K=0; shadow draft: 2 of 4 matched"
    st.apply(IterationEvent(k=2, drafted=[1, 2], accepted=2, emitted=[1, 2, 3], iter_s=0.01))
    assert st.shadow is None
    chart.show(st)
    assert chart.border_subtitle == "last: K=2, accepted 2"
    assert total_stats([StartEvent(), IterationEvent(k=0, emitted=[1], shadow=[1, 2]),
                        IterationEvent(k=0, emitted=[3], shadow_checked=2, shadow_matched=1)]).shadow_match_rate == 0.5


def test_the_header_says_where_the_layers_ran():
    """A recording made on a GPU names the device and the offloaded layers, in the TUI's header
    line, its session panel and the markdown export; a CPU run names the CPU and its threads."""
    from cascade_tui.session.report import to_markdown
    from cascade_tui.tui.widgets.session_info import header_rows, summary_line

    cpu = {"cpu": "AMD EPYC", "threads": 1, "n_gpu_layers": 0, "device": "cpu"}
    gpu = {"cpu": "AMD EPYC", "threads": 1, "n_gpu_layers": -1, "device": "CUDA0: NVIDIA H100 80GB HBM3",
           "offloaded_layers": "33/33"}
    header = {"model": {"path": "m.gguf", "arch": "llama", "n_layer": 32}, "draft": {"name": "ngram"},
              "policy": {"name": "learned"}}
    line = summary_line({**header, "machine": cpu}).plain
    assert line.endswith("AMD EPYC, 1 threads") and "CUDA" not in line
    line = summary_line({**header, "machine": gpu}).plain
    assert "CUDA0: NVIDIA H100 80GB HBM3, 33/33 layers (CPU: AMD EPYC, 1 threads)" in line
    md = to_markdown({**header, "machine": gpu}, [], "s.cascade.jsonl")
    assert "- machine: CUDA0: NVIDIA H100 80GB HBM3, 33/33 layers" in md
    assert "- machine: AMD EPYC, 1 threads" in to_markdown({**header, "machine": cpu}, [], "s.cascade.jsonl")
    rows = dict(header_rows({**header, "machine": gpu, "created": "2026-12-07T05:00:00Z", "tool_version": "0.1.0"}))
    assert rows["offload"] == "CUDA0: NVIDIA H100 80GB HBM3\n33/33 layers"
    assert rows["recorded"] == "2026-12-07T05:00:00Z by cascade-tui 0.1.0"
    rows = dict(header_rows({**header, "machine": cpu}))  # a live session run with --no-record
    assert "offload" not in rows and rows["recorded"] == "no (--no-record)"
