"""What the main screen looks like, fed from a deterministic two-turn session (the in-memory model
under a scripted clock), compared with the SVGs in tests/__snapshots__ (pytest-textual-snapshot;
regenerate with `pytest tests/test_tui_snapshots.py --snapshot-update` and look at them)."""

from __future__ import annotations

import pytest

from cascade_tui.tui.app import LIGHT, CascadeApp
from cascade_tui.tui.sources import RecordedSource
from tui_fakes import fake_events


@pytest.fixture(scope="module")
def recorded():
    return fake_events(policy="cascade", max_tokens=120, noise=0.6)


def app_of(recorded, **kw):
    header, events = recorded
    return CascadeApp(RecordedSource(header, events), **kw)


async def settle(pilot):
    await pilot.pause(0.3)
    await pilot.wait_for_scheduled_animations()


def test_main_screen(snap_compare, recorded):
    assert snap_compare(app_of(recorded), terminal_size=(140, 40), run_before=settle)


def test_main_screen_light_theme(snap_compare, recorded):
    assert snap_compare(app_of(recorded, theme=LIGHT), terminal_size=(140, 40), run_before=settle)


def test_80x24_chat(snap_compare, recorded):
    assert snap_compare(app_of(recorded), terminal_size=(80, 24), run_before=settle)


def test_80x24_panels(snap_compare, recorded):
    async def panels(pilot):
        await settle(pilot)
        await pilot.press("f2")
        await settle(pilot)

    assert snap_compare(app_of(recorded), terminal_size=(80, 24), run_before=panels)


def test_log_and_rolling_heatmap(snap_compare, recorded):
    async def log(pilot):
        await settle(pilot)
        await pilot.press("f3")
        pilot.app.main.query_one("#tabs").active = "tab-log"
        await settle(pilot)

    assert snap_compare(app_of(recorded), terminal_size=(140, 40), run_before=log)
