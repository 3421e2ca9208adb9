"""`cascade-tui replay`: a recording on the live screen, through the same messages, with playback
controls; it must show what the live session showed."""

from __future__ import annotations

import asyncio
from functools import partial

import pytest

from cascade_tui.session import Recorder, read_session
from cascade_tui.tui.app import CascadeApp
from cascade_tui.tui.sources import LiveSource, ReplaySource
from cascade_tui.tui.widgets.replay_bar import ReplayBar, parse_seek
from cascade_tui.tui.widgets.session_info import SessionInfo
from test_cli import _expect_user_error, cli
from test_tui import ask, until
from tui_fakes import fake_events, fake_session, record_events


def snapshot(state) -> dict:
    """Everything a panel draws from."""
    return {
        "total": state.total.to_dict(),
        "chat": [(t.message, t.segments, t.end_reason, t.tokens) for t in state.chat],
        "points": [(p.n, p.k, p.accepted, p.utility, p.phase, p.iter_s, p.unique) for p in state.points],
        "log": [(ln.n, ln.kind, ln.text) for ln in state.log],
        "utilities": state.utilities, "policy": (state.policy, state.params),
        "heat": None if state.heat_now is None else state.heat_now.tolist(),
        "heat_sum": None if state.heat_sum is None else state.heat_sum.tolist(),
        "speedup": state.speedup, "bytes": state.bytes_ratio,
    }


async def replay_to_end(rec) -> dict:
    """Replay the recording at ``rec`` as fast as possible; what the panels then draw from."""
    f = read_session(rec)
    src = ReplaySource(f.header, f.events, speed=None)
    app = CascadeApp(src)
    async with app.run_test(size=(140, 40)) as pilot:
        await until(pilot, lambda: src.cursor == len(f.events), 20, "the end of the recording")
        await pilot.pause(0.2)
        return snapshot(app.main.state)


def test_a_recorded_chat_replays_with_the_same_panels_and_numbers(tmp_path):
    rec = tmp_path / "chat.cascade.jsonl"

    async def live():
        src = LiveSource(partial(fake_session, record_path=rec, max_tokens=60, noise=0.5), mode="thread")
        app = CascadeApp(src)
        async with app.run_test(size=(140, 40)) as pilot:
            await until(pilot, lambda: src.ready, what="the session")
            await ask(pilot, app, "abc")
            await pilot.press("f4")
            await until(pilot, lambda: app.main.query("#param-k_max"), 5, "the policy panel")
            field = app.main.query_one("#param-k_max")
            field.focus()
            field.value = ""
            await pilot.press("3", "enter")
            await ask(pilot, app, "de")
            shown = snapshot(app.main.state)
        src.close()
        return shown


    shown_live = asyncio.run(live())
    shown_replay = asyncio.run(replay_to_end(rec))
    assert shown_live["total"]["generated_tokens"] == 120 and any("k_max = 3" in t for _, _, t in shown_live["log"])
    assert shown_replay == shown_live


@pytest.fixture(scope="module")
def recorded():
    return fake_events(policy="cascade", max_tokens=100, noise=0.6)


def test_controls_step_seek_speed_and_pause(recorded):
    header, events = recorded
    n_iters = sum(1 for e in events if e.type == "iteration")

    async def go():
        src = ReplaySource(header, events, speed=1.0, playing=False)
        app = CascadeApp(src)
        async with app.run_test(size=(140, 40)) as pilot:
            scr = app.main
            st = lambda: scr.state  # noqa: E731  (a step back replaces the state)
            await pilot.pause(0.2)
            assert st().n_iterations == 0 and not src.playing
            await pilot.press("right")
            await pilot.pause(0.1)
            assert st().n_iterations == 1
            for _ in range(4):
                await pilot.press("right")
            await pilot.pause(0.1)
            assert st().n_iterations == 5
            await pilot.press("left")
            await pilot.pause(0.1)
            assert st().n_iterations == 4 and st().total.iterations == 4  # rebuilt, not just hidden
            await pilot.press("g")
            await pilot.press(*"25", "enter")
            await pilot.pause(0.1)
            assert st().n_iterations == 25
            await pilot.press("g")
            await pilot.press(*"#10", "enter")
            await pilot.pause(0.1)
            assert st().n_iterations == 10
            await pilot.press("end")
            await pilot.pause(0.1)
            assert st().n_iterations == n_iters and st().total.generated_tokens == 200
            await pilot.press("home")
            await pilot.pause(0.1)
            assert st().n_iterations == 0
            # speed and play
            for _ in range(3):
                await pilot.press("plus")
            assert src.speed == 8.0
            await pilot.press("minus")
            assert src.speed == 4.0
            for _ in range(9):
                await pilot.press("plus")
            assert src.speed is None  # as fast as possible
            await pilot.press("space")
            await until(pilot, lambda: src.cursor == len(events), 10, "the end")
            await pilot.pause(0.1)
            assert not src.playing and st().n_iterations == n_iters
            bar = scr.query_one(ReplayBar)
            assert f"iteration {n_iters}/{n_iters}" in str(bar.query_one("#replay-position").render())
            src.speed = 0.25
            await pilot.press("space")  # at the end: plays again from the start
            await pilot.pause(0.1)
            assert src.playing and src.cursor < len(events)
    asyncio.run(go())


def test_seeking_to_a_time_and_playing_at_a_speed(recorded):
    header, events = recorded
    t_half = events[len(events) // 2].t

    async def go():
        src = ReplaySource(header, events, speed=16.0, playing=False)
        app = CascadeApp(src)
        async with app.run_test(size=(140, 40)) as pilot:
            await pilot.pause(0.1)
            src.seek_time(t_half)
            await pilot.pause(0.1)
            shown = [e for e in events[: src.cursor]]
            assert shown and all(src._play_t[i] <= t_half for i in range(src.cursor))
            assert app.main.state.n_iterations == sum(1 for e in shown if e.type == "iteration")
            before = app.main.state.n_iterations
            src.toggle()
            await pilot.pause(0.5)  # 16x: several seconds of the recording per half second
            assert app.main.state.n_iterations > before
    asyncio.run(go())


def test_the_header_is_on_screen(recorded):
    header, events = recorded

    async def go():
        src = ReplaySource(header, events, playing=False)
        app = CascadeApp(src, title="replay x.cascade.jsonl")
        async with app.run_test(size=(140, 40)) as pilot:
            await pilot.pause(0.2)
            bar = str(app.main.query_one("#replay-header").render())
            for part in ("fake-moe.gguf", "drafter fake-draft.gguf", "policy cascade", "test CPU, 1 threads"):
                assert part in bar, part
            app.main.query_one("#tabs").active = "tab-session"
            await pilot.pause(0.1)
            screen = app.export_screenshot()  # what is on the screen, as SVG text
            assert app.main.query_one(SessionInfo).display
            assert "k_max=8" in screen and "sha256" in screen and "max_tokens=100" in screen
            assert not app.main.query("#prompt")  # no prompt in a replay
    asyncio.run(go())


def test_replay_snapshot(snap_compare, recorded):
    header, events = recorded

    async def midway(pilot):
        src = pilot.app.source
        await pilot.pause(0.1)
        src.seek_iteration(60)
        await pilot.pause(0.4)

    app = CascadeApp(ReplaySource(header, events, playing=False), title="replay fake.cascade.jsonl")
    assert snap_compare(app, terminal_size=(140, 40), run_before=midway)


def test_parse_seek():
    assert parse_seek("120") == ("iteration", 120.0) and parse_seek("#7") == ("iteration", 7.0)
    assert parse_seek("3.5s") == ("time", 3.5) and parse_seek(" 2 S") == ("time", 2.0)
    with pytest.raises(ValueError):
        parse_seek("soon")


def test_replay_command_input_errors(tmp_path):
    header, events = fake_events(max_tokens=10)
    rec = record_events(tmp_path / "r.cascade.jsonl", header, events)
    _expect_user_error(cli("replay", rec, "--speed", "100"), "from 0.25 to 16")
    _expect_user_error(cli("replay", rec, "--speed", "fast"), "give a factor")
    _expect_user_error(cli("replay", rec), "replay needs a terminal")  # stdin is not a terminal here
    head_only = tmp_path / "h.cascade.jsonl"
    with Recorder(head_only, header):
        pass
    _expect_user_error(cli("replay", head_only), "holds no iterations")


def test_a_chat_recorded_on_the_demo_pair_replays_with_the_same_panels_and_numbers(tmp_path):
    """As a user does it: `cascade-tui chat` on the demo pair (llama.cpp in a child process), two
    turns, then `cascade-tui replay` of its recording."""
    from cascade_tui.engine import GenerationConfig
    from cascade_tui.runtime import ModelOptions
    from cascade_tui.session.core import RecordOptions
    from cascade_tui.session.host import open_session

    rec = tmp_path / "demo-chat.cascade.jsonl"
    opener = partial(open_session, ModelOptions(threads=1), "cascade", {}, GenerationConfig(max_tokens=96),
                     RecordOptions(path=rec), ["chat"])

    async def live():
        src = LiveSource(opener)
        src.launch()
        app = CascadeApp(src)
        async with app.run_test(size=(140, 40)) as pilot:
            await until(pilot, lambda: src.ready, 60, "the demo pair")
            await ask(pilot, app, "def fibonacci(n):")
            await ask(pilot, app, "class Stack:")
            shown = snapshot(app.main.state)
        src.close()
        return shown


    shown_live = asyncio.run(live())
    assert shown_live["total"]["generated_tokens"] == 192 and len(shown_live["chat"]) == 2
    assert shown_live["heat"] is not None and shown_live["points"]
    assert asyncio.run(replay_to_end(rec)) == shown_live
