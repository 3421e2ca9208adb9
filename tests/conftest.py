import json
import os
import pathlib
import tempfile
import sys

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).parent))

# Learned cost curves (the ``learned`` policy) go to a directory of this test run, never to the
# user's cache: a curve measured by one test must not steer another (subprocesses inherit it).
if not os.environ.get("CASCADE_TUI_COST_CACHE"):
    os.environ["CASCADE_TUI_COST_CACHE"] = tempfile.mkdtemp(prefix="cascade-tui-test-costs-")


def check_recording_round_trips(path: pathlib.Path) -> int:
    """Every line of a recording reads back (``Event.from_dict``) into an event that writes the
    very same JSON object again; a torn last line is the only line allowed to fail. Returns the
    number of events checked."""
    from cascade_tui.engine.events import Event
    from cascade_tui.session import read_session

    raw = path.read_bytes().split(b"\n")
    lines = [ln for ln in raw[1:] if ln.strip()]
    torn = bool(raw[-1].strip())  # no newline after the last line
    read = read_session(path)
    assert not read.problems, (path, read.problems)
    assert read.skipped_torn <= int(torn)
    whole = lines[:-1] if torn and read.skipped_torn else lines
    assert len(read.events) == len(whole), path
    for line, ev in zip(whole, read.events):
        d = json.loads(line)
        assert Event.from_dict(d).to_dict() == d
        assert ev.to_dict() == d
    return len(read.events)


@pytest.fixture(autouse=True)
def _recordings_round_trip(request):
    """After each test that used ``tmp_path``: every session recording it wrote there reads back
    into equal events (the reader round-trips every recording the suite makes)."""
    if "tmp_path" not in request.fixturenames or request.node.get_closest_marker("damaged_recordings"):
        yield
        return
    tmp = request.getfixturevalue("tmp_path")
    yield
    for path in sorted(tmp.rglob("*.cascade.jsonl")):
        check_recording_round_trips(path)
