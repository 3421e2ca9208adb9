"""The live TUI driven as a user drives it (Textual's Pilot): type, wait for the answer, look at
every panel, edit the policy mid-answer, switch policy, stop with Esc, resize.

Most tests serve a session over the in-memory model from a host thread (fast, deterministic);
the demo-pair test runs the real thing: llama.cpp in a child process, as ``cascade-tui chat``.
"""

from __future__ import annotations

import asyncio
import json
import time
from functools import partial

import pytest

from cascade_tui.session import read_session
from cascade_tui.tui.app import LIGHT, CascadeApp
from cascade_tui.tui.sources import LiveSource
from cascade_tui.tui.widgets import (
    ChatView,
    ExpertHeatmap,
    KChart,
    PhaseStrip,
    PolicyPanel,
    StatusLine,
    TransitionLog,
    UtilityChart,
)
from cascade_tui.tui.widgets.chat import TurnView
from cascade_tui.tui.widgets.utility import UtilityPlot
from tui_fakes import fake_session


def run(coro):
    return asyncio.run(coro)


async def until(pilot, cond, timeout=30.0, what="condition"):
    t0 = time.monotonic()
    while not cond():
        if time.monotonic() - t0 > timeout:
            raise AssertionError(f"timed out waiting for {what}")
        await pilot.pause(0.02)


def live(tmp_path=None, mode="thread", **kw):
    if tmp_path is not None:
        kw["record_path"] = tmp_path / "chat.cascade.jsonl"
    return LiveSource(partial(fake_session, **kw), mode=mode)


async def param_field(pilot, app, name: str):
    """The policy panel's input for parameter ``name`` (F4 opens the panel)."""
    await pilot.press("f4")
    await until(pilot, lambda: app.main.query(f"#param-{name}"), 5, f"the {name} field")
    return app.main.query_one(f"#param-{name}")


async def ask(pilot, app, text: str, wait=True):
    """Type ``text`` into the prompt and press Enter, as a user would."""
    state = app.main.state
    before = state.total.turns
    app.main.query_one("#prompt").focus()
    await pilot.press(*text, "enter")
    if wait:
        await until(pilot, lambda: state.total.turns > before and not app.source.running and not state.running,
                    60, "the answer")
        await pilot.pause(0.15)  # a redraw


def test_typed_prompt_is_answered_and_every_panel_receives_data(tmp_path):
    async def go():
        src = live(tmp_path, max_tokens=80, noise=0.4)
        app = CascadeApp(src)
        async with app.run_test(size=(140, 40)) as pilot:
            await until(pilot, lambda: src.ready, what="the session")
            await ask(pilot, app, "abc")
            scr = app.main
            st = scr.state
            # chat: the answer streamed into the chat pane, draft-accepted text marked
            turn = st.chat[-1]
            assert turn.message == "abc" and turn.end_reason == "max_tokens" and turn.tokens == 80
            views = list(scr.query(TurnView))
            assert len(views) == 1 and turn.text in str(views[0].render())
            assert any(from_draft for _, from_draft in turn.segments)
            assert any(not from_draft for _, from_draft in turn.segments)
            # utility chart, K chart, phase strip, heatmap, stats, log
            assert len(scr.query_one(UtilityPlot).values) > 10
            assert st.utilities  # U per K measured by the policy
            ks = scr.query_one(KChart).points
            assert ks and max(p.k for p in ks) >= 1 and sum(p.accepted for p in ks) > 0
            assert {"base", "test"} <= set(scr.query_one(PhaseStrip).phases)
            hm = scr.query_one(ExpertHeatmap)
            assert hm.heat is not None and hm.heat.shape == (2, 8) and hm.unique is not None
            assert st.total.generated_tokens == 80 and st.total.tokens_per_s > 0
            assert st.speedup is not None and st.bytes_ratio is not None
            log = [ln.text for ln in st.log]
            assert any("measuring t_base" in t for t in log) and any("testing K=" in t for t in log)
            scr.query_one("#tabs").active = "tab-log"
            await pilot.pause(0.2)
            assert len(scr.query_one(TransitionLog).lines) >= len(log) - 1
            assert "tok/s" in str(scr.query_one(StatusLine).render())
            assert "chat.cascade.jsonl" in scr.sub_title
        src.close()
        rec = read_session(tmp_path / "chat.cascade.jsonl")
        ends = [e for e in rec.events if e.type == "end"]
        assert len(ends) == 1 and ends[0].text == turn.text  # the screen showed the recorded answer

    run(go())


def test_a_parameter_edited_mid_answer_changes_the_next_iterations_and_is_recorded(tmp_path):
    async def go():
        src = live(tmp_path, policy="static:4", max_tokens=20000, n_ctx=30000, delay=0.004)
        app = CascadeApp(src)
        async with app.run_test(size=(140, 40)) as pilot:
            await until(pilot, lambda: src.ready, what="the session")
            await ask(pilot, app, "abc", wait=False)
            await until(pilot, lambda: app.main.state.n_iterations >= 10, what="10 iterations")
            k = await param_field(pilot, app, "k")
            k.focus()
            k.value = ""
            await pilot.press("1", "enter")
            assert src.running  # mid-answer
            await until(pilot, lambda: app.main.state.points[-1].k == 1, 20, "an iteration at K=1")
            await pilot.press("escape")
            await until(pilot, lambda: not src.running, 60, "the stop")
            await pilot.pause(0.15)
            log = [ln.text for ln in app.main.state.log]
            assert "k = 1 (policy static:1)" in log
        src.close()
        events = read_session(tmp_path / "chat.cascade.jsonl").events
        params = [e for e in events if e.type == "param"]
        assert [(p.key, p.value, p.ok) for p in params] == [("k", 1, True)]
        before = [e for e in events if e.type == "iteration" and e.seq < params[0].seq]
        after = [e for e in events if e.type == "iteration" and e.seq > params[0].seq]
        assert before and {e.k for e in before[:-1]} == {4}
        assert after and {e.k for e in after} == {1}  # from the very next iteration on

    run(go())


def test_a_bad_value_is_refused_in_place_with_the_reason(tmp_path):
    async def go():
        src = live(tmp_path, policy="cascade")
        app = CascadeApp(src)
        async with app.run_test(size=(140, 40)) as pilot:
            await until(pilot, lambda: src.ready, what="the session")
            await param_field(pilot, app, "k_max")
            panel = app.main.query_one(PolicyPanel)
            for name, value, reason in [("k_max", "lots", "is not a valid int"),
                                        ("k_max", "99", "out of range (allowed 1..32)"),
                                        ("k_start", "9", "must not exceed k_max")]:
                field = panel.query_one(f"#param-{name}")
                field.focus()
                field.value = ""
                await pilot.press(*value, "enter")
                await pilot.pause(0.1)
                err = panel.query_one(f"#row-{name} .error")
                assert reason in str(err.render()) and not err.has_class("-hidden"), name
                assert field.has_class("-invalid")
            # a good value clears the error and applies at once (the session is idle)
            field = panel.query_one("#param-k_max")
            field.focus()
            field.value = ""
            await pilot.press("6", "enter")
            await until(pilot, lambda: app.main.state.params.get("k_max") == 6, 5, "k_max = 6")
            assert panel.query_one("#row-k_max .error").has_class("-hidden")
        src.close()
        params = [e for e in read_session(tmp_path / "chat.cascade.jsonl").events if e.type == "param"]
        assert [(p.key, p.value) for p in params] == [("k_max", 6)]  # refused values never reached it

    run(go())


def test_switching_policy_in_the_panel(tmp_path):
    async def go():
        src = live(tmp_path, policy="cascade", max_tokens=30)
        app = CascadeApp(src)
        async with app.run_test(size=(140, 40)) as pilot:
            await until(pilot, lambda: src.ready, what="the session")
            await param_field(pilot, app, "k_max")
            app.main.query_one("#policy-select").value = "static"
            await until(pilot, lambda: app.main.state.policy == "static:3", 5, "the switch")
            await pilot.pause(0.2)
            assert app.main.query_one("#param-k").value == "3"  # the new policy's parameters
            await ask(pilot, app, "abc")
            ks = {p.k for p in app.main.state.points}
            assert ks <= {3, 2, 1} and 3 in ks  # (the last ones are clamped by the token budget)
            assert "policy switched to static:3" in [ln.text for ln in app.main.state.log]
        src.close()

    run(go())


def test_esc_stops_the_answer_and_the_prompt_stays_usable(tmp_path):
    async def go():
        src = live(tmp_path, policy="static:2", max_tokens=5000, n_ctx=12000, delay=0.003)
        app = CascadeApp(src)
        async with app.run_test(size=(140, 40)) as pilot:
            await until(pilot, lambda: src.ready, what="the session")
            await ask(pilot, app, "abc", wait=False)
            await until(pilot, lambda: app.main.state.n_iterations >= 5, what="iterations")
            await pilot.press("escape")
            await until(pilot, lambda: not src.running, 20, "the stop")
            await pilot.pause(0.15)
            turn = app.main.state.chat[-1]
            assert turn.end_reason == "cancelled" and 0 < turn.tokens < 5000
            prompt = app.main.query_one("#prompt")
            assert not prompt.disabled and prompt.has_focus
            n = app.main.state.n_iterations
            await ask(pilot, app, "xy", wait=False)  # the next turn runs, and is stopped again
            await until(pilot, lambda: app.main.state.n_iterations >= n + 5, what="the second turn")
            await pilot.press("escape")
            await until(pilot, lambda: not src.running and len(app.main.state.chat) == 2
                        and app.main.state.chat[-1].end_reason, 20, "the second stop")
        src.close()
        ends = [e for e in read_session(tmp_path / "chat.cascade.jsonl").events if e.type == "end"]
        assert [e.reason for e in ends] == ["cancelled", "cancelled"]

    run(go())


def test_80x24_folds_the_panels_behind_f2():
    async def go():
        src = live(max_tokens=20)
        app = CascadeApp(src)
        async with app.run_test(size=(140, 40)) as pilot:
            await until(pilot, lambda: src.ready, what="the session")
            scr = app.main
            assert scr.query_one("#panels").display and not scr.has_class("-narrow")
            await pilot.resize_terminal(80, 24)
            await pilot.pause(0.2)
            assert scr.has_class("-narrow") and not scr.query_one("#panels").display
            assert scr.query_one("#chat-col").display
            await ask(pilot, app, "abc")
            assert "tok/s" in str(scr.query_one(StatusLine).render())  # the essentials stay in view
            await pilot.press("f2")
            await pilot.pause(0.2)
            assert scr.query_one("#panels").display and not scr.query_one("#chat-col").display
            assert scr.query_one(KChart).points  # the panels catch up when shown
            await pilot.press("f2")
            await pilot.pause(0.1)
            assert scr.query_one("#chat-col").display
        src.close()

    run(go())


def test_help_theme_heatmap_toggle_and_palette():
    async def go():
        src = live(max_tokens=10)
        app = CascadeApp(src)
        async with app.run_test(size=(120, 36)) as pilot:
            await until(pilot, lambda: src.ready, what="the session")
            await pilot.press("f1")
            await pilot.pause(0.1)
            assert type(app.screen).__name__ == "HelpScreen"
            await pilot.press("escape")
            await pilot.pause(0.1)
            assert app.screen is app.main
            await pilot.press("ctrl+t")
            assert app.theme == LIGHT
            hm = app.main.query_one(ExpertHeatmap)
            await pilot.press("f3")
            assert hm.window is True
            titles = [c.title for c in app.get_system_commands(app.main)]
            for t in ("Help", "Policy: off", "Policy: cascade", "Clear the conversation",
                      "Heatmap: last iteration / rolling window"):
                assert t in titles
        src.close()

    run(go())


def test_clear_starts_the_conversation_over(tmp_path):
    async def go():
        src = live(tmp_path, max_tokens=10)
        app = CascadeApp(src)
        async with app.run_test(size=(120, 36)) as pilot:
            await until(pilot, lambda: src.ready, what="the session")
            await ask(pilot, app, "abc")
            await ask(pilot, app, "de")
            assert len(app.main.state.chat) == 2
            await pilot.press("ctrl+l")
            await until(pilot, lambda: not app.main.state.chat, 5, "the clear")
            await pilot.pause(0.1)
            assert not list(app.main.query(TurnView))
            await ask(pilot, app, "abc")
        src.close()
        evs = read_session(tmp_path / "chat.cascade.jsonl").events
        turns = [e for e in evs if e.type == "turn"]
        assert turns[1].reused_tokens > 0  # the second turn continued the first
        assert turns[2].reused_tokens == 0  # after the clear nothing was kept
        assert any(e.type == "marker" and e.label == "context cleared" for e in evs)

    run(go())


def test_a_model_that_fails_to_load_is_shown_and_the_app_stays_up():
    async def go():
        src = live(fail="model file not found: /nope.gguf")
        app = CascadeApp(src)
        async with app.run_test(size=(120, 36)) as pilot:
            await until(pilot, lambda: src.failed is not None, what="the failure")
            await pilot.pause(0.2)
            text = str(app.main.query_one("#loading-text").render())
            assert "cannot start: model file not found: /nope.gguf" in text
            await ask(pilot, app, "abc", wait=False)  # typing still works; it is refused politely
            await pilot.pause(0.1)
            assert app.is_running and not src.running
        src.close()

    run(go())


def test_the_demo_pair_in_a_child_process_answers_as_run_does(tmp_path):
    """The real thing, as `cascade-tui chat` runs it: llama.cpp in a child process."""
    import subprocess
    import sys

    from cascade_tui.engine import GenerationConfig
    from cascade_tui.runtime import ModelOptions
    from cascade_tui.session.core import RecordOptions
    from cascade_tui.session.host import open_session

    rec = tmp_path / "demo.cascade.jsonl"
    opener = partial(open_session, ModelOptions(threads=1), "cascade", {}, GenerationConfig(max_tokens=64),
                     RecordOptions(path=rec), ["chat"])

    async def go():
        src = LiveSource(opener)
        src.launch()
        app = CascadeApp(src)
        async with app.run_test(size=(140, 40)) as pilot:
            await until(pilot, lambda: src.ready, 60, "the demo pair")
            await ask(pilot, app, "def fibonacci(n):")
            answer = app.main.state.chat[-1].text
        src.close()
        return answer

    answer = run(go())
    headless = subprocess.run([sys.executable, "-m", "cascade_tui", "run", "--prompt", "def fibonacci(n):",
                               "--max-tokens", "64", "--threads", "1", "--no-record", "--json"],
                              capture_output=True, text=True, timeout=120)
    assert json.loads(headless.stdout)["text"] == answer  # greedy: the TUI shows exactly run's text
    read = read_session(rec)
    assert read.header["model"]["path"].endswith("target.gguf")
    assert [e.type for e in read.events if e.type in ("turn", "end")] == ["turn", "end"]
