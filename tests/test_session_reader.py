"""Reading recordings back: round trip (property-based), damaged files, files that are not
recordings at all."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cascade_tui.engine.events import (
    EVENT_TYPES,
    EndEvent,
    ErrorEvent,
    Event,
    IterationEvent,
    MarkerEvent,
    ParamEvent,
    PhaseEvent,
    StartEvent,
)
from cascade_tui.session import Recorder, SessionFormatError, read_header, read_session
from cascade_tui.session.reader import iter_session, major_version

HEADER = {"backend": "fake", "model": {"path": "m.gguf"}, "draft": {"name": "ngram"},
          "policy": {"name": "cascade", "params": {"k_max": 8}}}

text = st.text(max_size=20)
small = st.integers(0, 50)
real = st.floats(allow_nan=False, allow_infinity=False, width=64)
maybe_real = st.none() | real
scalar = st.none() | st.booleans() | st.integers(-10**6, 10**6) | real | text
jsonish = st.recursive(scalar, lambda c: st.lists(c, max_size=3) | st.dictionaries(text, c, max_size=3), max_leaves=8)


@st.composite
def routing(draw):
    if draw(st.booleans()):
        return None
    shape = (draw(st.integers(1, 4)), draw(st.integers(1, 5)), draw(st.integers(1, 3)))
    return np.asarray(draw(st.lists(st.integers(0, 63), min_size=int(np.prod(shape)),
                                    max_size=int(np.prod(shape)))), np.int32).reshape(shape)


events = st.one_of(
    st.builds(StartEvent, seq=small, t=real, turn=small, message=text, prompt_tokens=small, reused_tokens=small,
              prefill_s=real, policy=text, params=st.dictionaries(text, scalar, max_size=4), temperature=real,
              max_tokens=small),
    st.builds(IterationEvent, seq=small, t=real, index=small, k=small, drafted=st.lists(small, max_size=8),
              accepted=small, emitted=st.lists(small, max_size=8), text=text, from_draft=small, draft_s=real, verify_s=real,
              iter_s=real, utility=maybe_real, phase=text, unique_experts=maybe_real, routing=routing(),
              n_past=small),
    st.builds(PhaseEvent, seq=small, t=real, phase=text, previous=text, k=small, reason=text,
              state=st.dictionaries(text, jsonish, max_size=4)),
    st.builds(ParamEvent, seq=small, t=real, key=text, value=scalar, ok=st.booleans(), error=text, policy=text,
              params=st.dictionaries(text, scalar, max_size=4)),
    st.builds(EndEvent, seq=small, t=real, turn=small, reason=text, generated_tokens=small, iterations=small,
              wall_s=real, text=text, tail=text),
    st.builds(ErrorEvent, seq=small, t=real, kind=text, message=text, traceback=text),
    st.builds(MarkerEvent, seq=small, t=real, label=text, data=st.dictionaries(text, jsonish, max_size=4)),
)


def test_every_event_type_is_covered_by_the_property_test():
    assert set(EVENT_TYPES) == {"turn", "iteration", "phase", "param", "end", "error", "marker"}


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                 HealthCheck.too_slow])
@given(evs=st.lists(events, max_size=12))
def test_writing_then_reading_gives_back_equal_events(tmp_path_factory, evs):
    path = tmp_path_factory.mktemp("rt") / "s.cascade.jsonl"
    with Recorder(path, HEADER) as rec:
        for ev in evs:
            rec.record(ev)
    read = read_session(path)
    assert read.events == evs
    assert read.skipped_torn == 0 and not read.problems
    assert read.header["policy"] == HEADER["policy"] and read.header["format"] == "cascade-session"
    for a, b in zip(read.events, evs):
        assert type(a) is type(b)
        if isinstance(a, IterationEvent) and b.routing is not None:
            assert a.routing.dtype == np.int32 and np.array_equal(a.routing, b.routing)
    assert list(iter_session(path)) == evs


def test_event_equality_sees_routing_differences():
    a = IterationEvent(routing=np.array([[[1, 2]]], np.int32))
    b = IterationEvent(routing=np.array([[[1, 3]]], np.int32))
    assert a != b and a == IterationEvent(routing=np.array([[[1, 2]]], np.int32))
    assert IterationEvent() != EndEvent()


def test_from_dict_refuses_unknown_types_and_ignores_unknown_fields():
    with pytest.raises(ValueError, match="unknown event type 'teleport'"):
        Event.from_dict({"type": "teleport"})
    ev = Event.from_dict({"type": "marker", "label": "x", "colour": "blue"})  # a later minor version's field
    assert ev == MarkerEvent(label="x")


def write(tmp_path, n=5, name="s.cascade.jsonl"):
    path = tmp_path / name
    with Recorder(path, HEADER) as rec:
        for i in range(n):
            rec.record(IterationEvent(seq=i, index=i, k=1, drafted=[3], accepted=1, emitted=[3, 4]))
    return path


@pytest.mark.damaged_recordings
def test_a_torn_last_line_is_skipped_and_counted(tmp_path):
    path = write(tmp_path)
    with open(path, "a") as f:
        f.write('{"type":"iteration","seq":5,"ind')
    read = read_session(path)
    assert len(read.events) == 5 and read.skipped_torn == 1 and not read.problems
    assert read.warnings() == [f"{path.name}: skipped 1 torn last line (the recording was cut off mid-write)"]


@pytest.mark.damaged_recordings
def test_a_malformed_line_in_the_middle_is_named_and_the_rest_read(tmp_path):
    path = write(tmp_path)
    lines = path.read_text().splitlines(keepends=True)
    lines.insert(3, "{oops\n")
    lines.insert(5, '{"type": "teleport"}\n')
    path.write_text("".join(lines))
    read = read_session(path)
    assert len(read.events) == 5 and read.skipped_torn == 0
    assert [(p.line, p.message) for p in read.problems] == [(4, "not valid JSON"), (6, "unknown event type 'teleport'")]
    assert "line 4: not valid JSON" in read.warnings()[0]


@pytest.mark.damaged_recordings
def test_versions(tmp_path):
    assert [major_version(v) for v in (1, "1", "1.7", "2.0", "x", None, True)] == [1, 1, 1, 2, None, None, None]
    path = write(tmp_path, n=1)
    head, rest = path.read_text().split("\n", 1)
    for v in (2, "2.1"):
        d = json.loads(head)
        d["version"] = v
        bad = tmp_path / f"v{v}.cascade.jsonl"
        bad.write_text(json.dumps(d) + "\n" + rest)
        with pytest.raises(SessionFormatError, match=f"format version {v}, but this cascade-tui reads version 1"):
            read_session(bad)
    d = json.loads(head)
    d["version"] = "1.3"  # a later minor version: readable
    ok = tmp_path / "minor.cascade.jsonl"
    ok.write_text(json.dumps(d) + "\n" + rest)
    assert len(read_session(ok).events) == 1


@pytest.mark.parametrize("kind, needle", [
    ("missing", "no such file"),
    ("directory", "is a directory"),
    ("empty", "is empty"),
    ("jsonl", "is not a cascade-tui session"),
    ("binary", "is a binary file"),
    ("latin1", "not a text file"),
    ("text", "line 1 is not JSON"),
])
def test_files_that_are_not_recordings_get_one_clear_line(tmp_path, kind, needle):
    p = tmp_path / "f.jsonl"
    if kind == "directory":
        p.mkdir()
    elif kind == "empty":
        p.write_bytes(b"")
    elif kind == "jsonl":
        p.write_text('{"prompt": "def f():"}\n{"prompt": "x"}\n')
    elif kind == "binary":
        p.write_bytes(bytes(range(256)) * 4)
    elif kind == "latin1":
        p.write_bytes("caf\xe9 au lait\n".encode("latin-1"))
    elif kind == "text":
        p.write_text("hello\n")
    for reader in (read_session, read_header):
        with pytest.raises(SessionFormatError) as e:
            reader(p)
        msg = str(e.value)
        assert needle in msg and "\n" not in msg and str(p) in msg
