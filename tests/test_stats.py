"""Statistics of an event stream: the one-line speculation summary ``run`` prints."""

from cascade_tui.engine.events import EndEvent, IterationEvent, StartEvent
from cascade_tui.stats import RunStats


def stats_of(ks, t_plain=1.0, t_spec=1.5, accepted=1):
    st = RunStats()
    st.add(StartEvent(turn=0, policy="learned"))
    n = 0
    for k in ks:
        acc = min(k, accepted)
        st.add(IterationEvent(k=k, drafted=list(range(k)), accepted=acc, emitted=[0] * (acc + 1),
                              iter_s=t_plain if k == 0 else t_spec))
        n += acc + 1
    st.add(EndEvent(turn=0, generated_tokens=n, reason="max_tokens"))
    return st


def test_speculation_line_says_share_switches_and_estimated_speedup():
    st = stats_of([0, 0, 0, 2, 2, 2, 0, 0, 2, 2])
    # 5 of 10 iterations speculated; K flipped 0->2, 2->0, 0->2; 15 tokens in 12.5 s vs 1 s/token
    assert st.switches == 3
    assert st.speculation_line() == (
        "speculation: on for 50% of iterations (switched on/off 3 times), 1.20x vs no speculation "
        "(estimated from 5 plain steps)")
    assert st.to_dict()["speculation_switches"] == 3


def test_speculation_line_without_plain_steps_or_without_speculation():
    assert "no speedup estimate" in stats_of([2] * 6).speculation_line()
    assert stats_of([0] * 4).speculation_line() == "speculation: off for all 4 iterations (policy learned)"
    assert RunStats().speculation_line() == "speculation: nothing was generated"


def test_a_new_turn_is_not_a_switch():
    st = stats_of([2, 2])
    st.add(StartEvent(turn=1, policy="learned"))
    st.add(IterationEvent(k=0, emitted=[0], iter_s=1.0))
    assert st.switches == 0


def test_one_switch_is_said_in_the_singular():
    st = stats_of([0, 0, 0, 0, 2, 2])
    assert st.switches == 1
    assert "(switched on/off 1 time)," in st.speculation_line()


def test_a_speedup_is_quoted_from_two_plain_steps_not_from_one():
    assert "no speedup estimate" in stats_of([0, 2, 2, 2]).speculation_line()
    line = stats_of([0, 2, 2, 0, 2]).speculation_line()
    assert line.endswith("(estimated from 2 plain steps)"), line


def test_the_plain_step_baseline_leaves_out_shadow_drafts():
    st = RunStats()
    st.add(StartEvent(turn=0, policy="learned"))
    # two plain steps of 1 s, one of them with a 0.5 s shadow draft: the baseline is 1 s a step
    st.add(IterationEvent(k=0, emitted=[0], iter_s=1.0))
    st.add(IterationEvent(k=0, emitted=[0], shadow=[0, 1], draft_s=0.5, iter_s=1.5))
    st.add(IterationEvent(k=2, drafted=[0, 1], accepted=2, emitted=[0] * 3, iter_s=1.5))
    st.add(EndEvent(turn=0, generated_tokens=5, reason="max_tokens"))
    assert st.t_base == 1.0
    # 5 tokens in 4 s (the shadow draft's time is paid) against 1 s a token
    assert st.estimated_speedup == 1.25
