"""The headless session core over the in-memory model of tests/fakes.py (the engine and llama.cpp
have their own tests; here: turns, control, failures, recording, statistics)."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from backends.model_drafter import ModelDrafter
from cascade_tui.engine import (
    EndEvent,
    ErrorEvent,
    GenerationConfig,
    IterationEvent,
    MarkerEvent,
    ParamEvent,
    PhaseEvent,
    StartEvent,
)
from cascade_tui.policy import PolicyError, make_policy
from cascade_tui.runtime import LoadedModels
from cascade_tui.session import Recorder, read_session
from cascade_tui.session.core import Session, SessionBusy
from cascade_tui.stats import run_summary, stats_by_turn, total_stats
from fakes import FakeModel, ScriptedClock, moe_cost, reference_greedy

HEADER = {"backend": "fake", "model": {"path": "fake://t"}, "draft": {"name": "fake-draft"},
          "policy": {"name": "cascade", "params": {}}}


def make_session(tmp_path=None, policy="cascade", seed=3, noise=1.0, n_ctx=512, clock=None,
                 target=None, max_tokens=40, **params):
    clock = clock or ScriptedClock()
    target = target or FakeModel(seed=seed, n_ctx=n_ctx, clock=clock, cost=moe_cost())
    drafter = ModelDrafter(FakeModel(seed=seed, noise=noise, n_ctx=n_ctx))
    models = LoadedModels(target, drafter, "fake://t", "fake-draft", "fake")
    rec = Recorder(tmp_path / "s.cascade.jsonl", HEADER) if tmp_path is not None else None
    return Session(models, make_policy(policy, params or None), recorder=rec,
                   generation=GenerationConfig(max_tokens=max_tokens), clock=clock)


def tokens_of(events):
    return [t for e in events if isinstance(e, IterationEvent) for t in e.emitted]


def test_multi_turn_reuses_the_cache_and_keeps_one_ordered_stream(tmp_path):
    s = make_session(tmp_path)
    p1 = [1, 2, 3, 4]
    ev1 = list(s.turn(p1, message="first"))
    out1 = tokens_of(ev1)
    assert out1 == reference_greedy(FakeModel(seed=3), p1, 40)
    p2 = p1 + out1 + [5, 6]
    ev2 = list(s.turn(p2, message="second"))
    start2 = ev2[0]
    assert isinstance(start2, StartEvent) and start2.turn == 1 and start2.message == "second"
    assert start2.reused_tokens == len(p1) + len(out1) - 1  # only the new tokens were evaluated
    assert tokens_of(ev2) == reference_greedy(FakeModel(seed=3), p2, 40)
    both = ev1 + ev2
    assert [e.seq for e in both] == list(range(len(both)))
    assert all(b.t >= a.t for a, b in zip(both, both[1:]))
    assert [e.turn for e in both if isinstance(e, (StartEvent, EndEvent))] == [0, 0, 1, 1]
    assert len(s.turns) == 2 and s.total.generated_tokens == 80
    s.close()


def test_cascade_memory_carries_over_between_turns():
    s = make_session(noise=0.3, max_tokens=60)
    policy = s.policy
    list(s.turn([1, 2, 3]))
    ev2 = list(s.turn([7, 8, 9]))
    assert s.policy is policy  # one policy object for the whole session
    first_phase = next(e for e in ev2 if isinstance(e, PhaseEvent))
    assert first_phase.phase != "base"  # t_base and the measured U per K were kept
    assert policy.t_base() is not None and policy.measured_utilities()


def test_control_while_idle_applies_at_once_and_is_recorded(tmp_path):
    s = make_session(tmp_path)
    with pytest.raises(PolicyError, match="out of range"):
        s.check_param("k_max", 999)
    assert s.policy.get("k_max") == 8  # check_param changes nothing
    [ok] = s.set_param("k_max", "3")
    assert isinstance(ok, ParamEvent) and ok.ok and ok.value == 3 and ok.params["k_max"] == 3
    [bad] = s.set_param("k_max", "lots")
    assert not bad.ok and "k_max" in bad.error and s.policy.get("k_max") == 3
    [sw] = s.switch_policy("static:2")
    assert sw.ok and s.policy.label == "static:2"
    events = list(s.turn([1, 2, 3]))
    assert {e.k for e in events if isinstance(e, IterationEvent)} == {2}
    s.close()
    read = read_session(tmp_path / "s.cascade.jsonl")
    assert [e.to_dict() for e in read.events[:3]] == [ok.to_dict(), bad.to_dict(), sw.to_dict()]


def test_control_from_another_thread_applies_at_the_next_iteration():
    s = make_session(max_tokens=200)
    seen = []
    for ev in s.turn([1, 2]):
        seen.append(ev)
        if isinstance(ev, IterationEvent) and ev.index == 5:
            t = threading.Thread(target=lambda: (s.switch_policy("static:4"), s.set_param("k", 2)))
            t.start()
            t.join()
            assert s.policy.label == "cascade"  # not yet: only at the boundary
    params = [e for e in seen if isinstance(e, ParamEvent)]
    assert [(p.key, p.ok) for p in params] == [("policy", True), ("k", True)]
    its = [e for e in seen if isinstance(e, IterationEvent)]
    after = [e for e in its if e.seq > params[-1].seq]
    assert {e.k for e in after[:-2]} == {2}  # (the last ones may be clamped by the token budget)
    assert params[0].seq > its[5].seq
    assert tokens_of(seen) == reference_greedy(FakeModel(seed=3), [1, 2], 200)


def test_cancel_stops_the_turn_and_is_ignored_when_idle():
    s = make_session(max_tokens=200)
    s.cancel()  # idle: nothing to stop, and the next turn must not see it
    events = []
    for ev in s.turn([1, 2, 3]):
        events.append(ev)
        if isinstance(ev, IterationEvent) and ev.index == 4:
            s.cancel()
    end = events[-1]
    assert isinstance(end, EndEvent) and end.reason == "cancelled" and end.iterations == 5
    full = list(s.turn([1, 2, 3]))
    assert full[-1].reason == "max_tokens" and full[-1].generated_tokens == 200


def test_a_refused_request_is_an_input_error_event(tmp_path):
    s = make_session(tmp_path, n_ctx=16)
    events = list(s.turn(list(range(1, 17))))
    assert len(events) == 1 and isinstance(events[0], ErrorEvent)
    assert events[0].kind == "input" and "context" in events[0].message
    assert s.turns == [] and not s.running
    # the session stays usable
    assert list(s.turn([1, 2], max_tokens=3))[-1].generated_tokens == 3
    s.close()


class FailingModel(FakeModel):
    def __init__(self, fail_after, **kw):
        super().__init__(**kw)
        self.fail_after = fail_after
        self.exc: BaseException = RuntimeError("device lost")

    def eval(self, tokens):
        if self.eval_calls >= self.fail_after:
            self.fail_after = 10**9  # fail once
            raise self.exc
        return super().eval(tokens)


def test_a_backend_failure_mid_turn_is_an_error_event_then_the_end(tmp_path):
    target = FailingModel(fail_after=6, seed=3)
    s = make_session(tmp_path, target=target)
    events = list(s.turn([1, 2, 3]))
    err, end = events[-2], events[-1]
    assert isinstance(err, ErrorEvent) and err.kind == "backend" and "device lost" in err.message
    assert "Traceback" in err.traceback and "RuntimeError" in err.traceback
    assert isinstance(end, EndEvent) and end.reason == "error"
    assert end.generated_tokens == len(tokens_of(events))
    # the next turn starts clean and is exact
    again = list(s.turn([1, 2, 3]))
    assert tokens_of(again) == reference_greedy(FakeModel(seed=3), [1, 2, 3], 40)
    s.close()


def test_ctrl_c_inside_a_turn_ends_it_as_interrupted(tmp_path):
    target = FailingModel(fail_after=8, seed=3)
    target.exc = KeyboardInterrupt()
    s = make_session(tmp_path, target=target)
    events = list(s.turn([1, 2, 3]))
    assert events[-1].reason == "interrupted" and events[-1].generated_tokens == len(tokens_of(events))
    s.close()


def test_closing_the_generator_mid_turn_records_the_end(tmp_path):
    s = make_session(tmp_path, max_tokens=100)
    gen = s.turn([1, 2, 3])
    got = []
    for ev in gen:
        got.append(ev)
        if isinstance(ev, IterationEvent) and ev.index == 6:
            break
    gen.close()
    assert not s.running
    s.close()
    read = read_session(tmp_path / "s.cascade.jsonl")
    end = read.events[-1]
    assert isinstance(end, EndEvent) and end.reason == "interrupted"
    assert end.generated_tokens == len(tokens_of(got)) and end.iterations == 7


def test_idle_only_operations_refuse_while_a_turn_runs():
    s = make_session(max_tokens=30)
    gen = s.turn([1, 2, 3])
    next(gen)
    assert s.running
    with pytest.raises(SessionBusy):
        s.mark("x")
    with pytest.raises(SessionBusy):
        next(s.turn([4]))
    list(gen)
    assert not s.running
    assert isinstance(s.mark("note", text="hello"), MarkerEvent)


def test_clear_context_starts_the_next_turn_from_nothing(tmp_path):
    s = make_session(tmp_path)
    list(s.turn([1, 2, 3, 4]))
    ev = s.clear_context()
    assert isinstance(ev, MarkerEvent) and ev.label == "context cleared"
    again = list(s.turn([1, 2, 3, 4]))
    assert again[0].reused_tokens == 0
    s.close()


def test_the_recording_holds_exactly_the_events_and_gives_back_the_statistics(tmp_path):
    s = make_session(tmp_path, noise=0.5, max_tokens=50)
    yielded = list(s.set_param("tolerance", "0.2"))
    yielded += list(s.turn([1, 2, 3], message="hi"))
    yielded.append(s.mark("note"))
    yielded += list(s.turn([1, 2, 3, 9], message="again"))
    summary = s.summary()
    s.close()
    read = read_session(tmp_path / "s.cascade.jsonl")
    assert read.events == yielded  # equal events, routing arrays included
    its = [e for e in read.events if isinstance(e, IterationEvent)]
    assert its and all(isinstance(e.routing, np.ndarray) and e.routing.dtype == np.int32 for e in its)
    assert run_summary(total_stats(read.events), read.header, str(tmp_path / "s.cascade.jsonl")) == summary
    per_turn = stats_by_turn(read.events)
    assert [t.to_dict() for t in per_turn] == [t.to_dict() for t in s.turns]
    assert summary["generated_tokens"] == 100 and summary["policy"] == "cascade"


def test_close_ends_an_open_turn(tmp_path):
    s = make_session(tmp_path, max_tokens=100)
    gen = s.turn([1, 2, 3])
    for ev in gen:
        if isinstance(ev, IterationEvent):
            break
    s.close()  # as a program exiting mid-generation would
    read = read_session(tmp_path / "s.cascade.jsonl")
    assert read.events[-1].type == "end" and read.events[-1].reason == "closed"


class SplitUtf8Model(FakeModel):
    """Always predicts token 5, whose bytes are the first half of a two-byte character."""

    def __init__(self, **kw):
        super().__init__(**kw)
        self._pieces[5], self._pieces[6] = b"\xc3", b"\xa9"

    def logits_after(self, prefix):
        z = np.zeros(self.vocab, np.float32)
        z[6 if prefix and prefix[-1] == 5 else 5] = 1.0
        return z


def test_a_trailing_partial_character_is_flushed_into_the_end_event():
    s = make_session(policy="off", target=SplitUtf8Model())
    events = list(s.turn([1], max_tokens=3))  # emits 5, 6, 5: "é" then half a character
    its = [e for e in events if isinstance(e, IterationEvent)]
    assert "".join(e.text for e in its) == "é"
    end = events[-1]
    assert end.tail == "\ufffd"  # not silently dropped
    assert "".join(e.text for e in its) + end.tail == end.text


def test_estimated_speedup_is_one_for_plain_decoding_and_unknown_without_a_plain_step():
    off = make_session(policy="off", max_tokens=30)
    list(off.turn([1, 2, 3]))
    assert off.total.estimated_speedup == pytest.approx(1.0)  # every iteration is the baseline
    assert off.summary()["speculation_share"] == 0.0
    static = make_session(policy="static:2", max_tokens=30)
    list(static.turn([1, 2, 3]))
    assert static.total.estimated_speedup is None and static.summary()["estimated_speedup"] is None
    cascade = make_session(policy="cascade", noise=0.2, max_tokens=200)
    list(cascade.turn([1, 2, 3]))
    st = cascade.total
    assert st.k_hist.get(0, 0) > 0 and st.t_base == pytest.approx(st.k0_s / st.k0_n)
    assert st.estimated_speedup == pytest.approx(st.tokens_per_s * st.t_base)
