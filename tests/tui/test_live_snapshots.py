"""The live screen as SVG snapshots at 80x24 (panels collapse) and 120x40, mid-demo: a CPU
fault's finding with its cause, highlighted charts, probe sparklines and top functions.

Regenerate after a deliberate change with `pytest tests/tui --snapshot-update` and look
at the SVGs (tests/tui/__snapshots__/) before committing them."""

from __future__ import annotations

from typing import Any

import pytest
from support.live_data import demo_run
from textual.pilot import Pilot

from tracker.tui.live import LiveApp, LiveFeed
from tracker.tui.state import LiveState


def _app() -> LiveApp:
    state = LiveState(
        "demo: streaming completions", "http://127.0.0.1:8000/v1/completions", 40.0,
        "open 4 req/s",
    )  # fmt: skip
    return LiveApp(state, refresh_s=0.02)


async def _mid_demo(pilot: Pilot[None]) -> None:
    demo_run(LiveFeed(pilot.app))  # type: ignore[arg-type]
    await pilot.pause(0.06)  # a redraw (every 20 ms here)
    pilot.app.clear_notifications()  # the toast's timer is not part of the layout
    await pilot.pause(0.06)
    # A fresh layout of what is drawn: on a busy machine the header's auto height was
    # sometimes not recomputed when the closing note made it a line taller (7 runs in 16
    # with three CPU hogs: the note clipped, the charts a row taller), whatever the wait.
    width, height = pilot.app.size
    await pilot.resize_terminal(width + 1, height)
    await pilot.resize_terminal(width, height)
    await pilot.pause()


@pytest.mark.parametrize("size", [(80, 24), (120, 40)])
def test_live_screen_mid_demo(snap_compare: Any, size: tuple[int, int]) -> None:
    assert snap_compare(_app(), terminal_size=size, run_before=_mid_demo)


def test_a_finding_opened_at_120x40(snap_compare: Any) -> None:
    async def open_it(pilot: Pilot[None]) -> None:
        await _mid_demo(pilot)
        await pilot.press("o")

    assert snap_compare(_app(), terminal_size=(120, 40), run_before=open_it)
