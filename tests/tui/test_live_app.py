"""The live screen with Textual's pilot: windows arriving, a degradation flagged, keys,
and the layout at 80x24 and 120x40. The app is fed exactly as the run's thread feeds it
(`LiveFeed`, i.e. `post_message`), here from a real second thread."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable

from support.live_data import PROBES, finding, window
from textual.pilot import Pilot
from textual.widgets import OptionList, Static

from probes.stacks.profile import FunctionTime
from tracker.records.window import TASK_QUEUE, TASK_SUBMIT
from tracker.tui.chart import LineChart
from tracker.tui.finding_screen import FindingScreen
from tracker.tui.live import LiveApp, LiveFeed
from tracker.tui.state import LiveState

#: The screens here redraw every 20 ms (1 s in use); a pause of TICK lets one redraw happen.
REFRESH_S, TICK = 0.02, 0.06


async def _redrawn(pilot: Pilot[None]) -> None:
    """The messages sent so far handled, then the redraw the clock makes, made here: after a
    fixed TICK, a loaded machine's stalled event loop can resume this test before the app
    has handled its timer's tick."""
    await pilot.pause()
    pilot.app._tick()  # type: ignore[attr-defined]
    await pilot.pause()


def _app(quits: list[int] | None = None, refresh_s: float = REFRESH_S) -> LiveApp:
    state = LiveState("demo: streaming", "http://127.0.0.1:8000", 20.0, "open 4 req/s")
    on_quit = None if quits is None else (lambda: quits.append(1))
    return LiveApp(state, on_quit=on_quit, refresh_s=refresh_s)


def _drive(
    app: LiveApp, size: tuple[int, int], body: Callable[[Pilot[None]], Awaitable[None]]
) -> None:
    async def main() -> None:
        async with app.run_test(size=size, notifications=True) as pilot:
            await body(pilot)

    asyncio.run(main())


def _feed_from_a_thread(app: LiveApp, windows: int, *, slow_from: int = 99) -> None:
    feed = LiveFeed(app)

    def run() -> None:
        for i in range(windows):
            feed.window(window(i, 1600.0 if i >= slow_from else 800.0), PROBES)

    t = threading.Thread(target=run)
    t.start()
    t.join()


def _text(app: LiveApp, selector: str) -> str:
    return str(app.query_one(selector, Static).render())


def test_windows_from_the_run_thread_fill_the_charts_and_header() -> None:
    app = _app()

    async def body(pilot: Pilot[None]) -> None:
        _feed_from_a_thread(app, 6)
        await _redrawn(pilot)
        header = _text(app, "#header")
        assert "demo: streaming" in header and "6s / 20s" in header
        assert "driver lag p99 2" in header
        latency = app.query_one("#chart-latency", LineChart)
        assert [s.label for s in latency.series] == ["p50", "p99"]
        assert len(latency.series[0].points) == 6
        assert "p50 800" in latency.title
        assert app.query_one("#chart-ttft").display  # a streamed run shows TTFT
        gpu = app.query_one("#probe-7", LineChart)  # GPU util: no GPU here
        assert "no GPU" in gpu.title
        switches = app.query_one("#probe-0", LineChart)
        assert "120 /s" in switches.title and len(switches.series[0].points) == 6

    _drive(app, (120, 40), body)


def test_a_finding_appears_with_its_cause_highlights_charts_and_opens() -> None:
    app = _app()

    async def body(pilot: Pilot[None]) -> None:
        _feed_from_a_thread(app, 10, slow_from=5)
        LiveFeed(app).finding(finding("unexplained", 0.0))
        await _redrawn(pilot)
        findings = app.query_one("#findings", OptionList)
        assert "latency p50 +100% since 5s: cause not clear yet" in str(
            findings.get_option_at_index(0).prompt
        )
        assert any("latency p50 +100%" in n.message for n in app._notifications)
        LiveFeed(app).finding(finding("contention", 0.84))  # firmer, the same event
        await _redrawn(pilot)
        assert findings.option_count == 1
        assert "contention (confidence 0.84)" in str(findings.get_option_at_index(0).prompt)
        assert len(app._notifications) == 1  # one toast per event, not per re-attribution
        latency = app.query_one("#chart-latency", LineChart)
        assert latency.highlighted and latency.marks and latency.marks[0].start == 5.0
        assert app.query_one("#probe-0", LineChart).highlighted  # the evidence's panel
        assert not app.query_one("#probe-4", LineChart).highlighted
        await pilot.press("o")
        await pilot.pause(TICK)
        assert isinstance(app.screen, FindingScreen)
        text = str(app.screen.query_one("#finding-text", Static).render())
        assert "involuntary switches 900/s" in text and "CPU contention" in text
        await pilot.press("escape")
        await pilot.pause(TICK)
        assert not isinstance(app.screen, FindingScreen)

    _drive(app, (120, 40), body)


def test_the_stack_panel_shows_the_newest_window_s_top_functions() -> None:
    app = _app()

    async def body(pilot: Pilot[None]) -> None:
        assert "no stack samples" in _text(app, "#stacks")
        top = [
            FunctionTime("burn (llm_server.py)", 60, 60, 60.0, 60.0),
            FunctionTime("stream (llm_server.py)", 0, 90, 0.0, 90.0),
        ]
        LiveFeed(app).stacks(12.0, 1.0, top)
        await _redrawn(pilot)
        text = _text(app, "#stacks")
        assert "60.0%  burn (llm_server.py)" in text and "stream" not in text  # self time

    _drive(app, (120, 40), body)


def test_a_task_api_run_shows_the_task_s_wait_and_its_parts() -> None:
    app = _app()

    async def body(pilot: Pilot[None]) -> None:
        await _redrawn(pilot)
        assert not app.query_one("#chart-tasks").display  # no tasks: no chart
        w = window(0, 1500.0)
        for name, ms in ((TASK_SUBMIT, 4.0), (TASK_QUEUE, 600.0)):
            w.hist(name).record_ms(ms)
        LiveFeed(app).window(w, {})
        await _redrawn(pilot)
        tasks = app.query_one("#chart-tasks", LineChart)
        assert tasks.display and "queue p50 600" in tasks.title and "submit p50 4" in tasks.title
        latency = app.query_one("#chart-latency", LineChart)
        assert latency.title.startswith("task latency (submitted -> done)")

    _drive(app, (120, 40), body)


def test_what_arrives_between_two_refreshes_is_drawn_once_at_the_next() -> None:
    # A refresh clock that never ticks by itself during the test; the tick is called by
    # hand (wall-clock windows of a few tens of ms failed on a loaded CI machine).
    app = _app(refresh_s=60.0)

    async def body(pilot: Pilot[None]) -> None:
        await pilot.pause(0.1)
        drawn: list[int] = []
        original = app._redraw

        def counting() -> None:
            drawn.append(1)
            original()

        app._redraw = counting  # type: ignore[method-assign]
        _feed_from_a_thread(app, 3)
        await pilot.pause(0.2)  # the three messages are handled...
        assert "0s / 20s" in _text(app, "#header") and not drawn  # ...and not drawn yet
        app._tick()
        await pilot.pause()
        assert "3s / 20s" in _text(app, "#header") and drawn == [1]  # three windows, one draw
        app._tick()
        assert drawn == [1]  # nothing new: no draw

    _drive(app, (120, 40), body)


def test_a_saturated_driver_is_called_out() -> None:
    app = _app()

    async def body(pilot: Pilot[None]) -> None:
        LiveFeed(app).window(window(0, 800.0, lag_ms=40.0), {})
        await _redrawn(pilot)
        assert "DRIVER SATURATED" in _text(app, "#header")

    _drive(app, (120, 40), body)


def test_keys_pause_toggle_panels_and_quit_asks_the_run_to_stop_first() -> None:
    quits: list[int] = []
    app = _app(quits)

    async def body(pilot: Pilot[None]) -> None:
        _feed_from_a_thread(app, 3)
        await _redrawn(pilot)
        await pilot.press("p")
        LiveFeed(app).window(window(3, 900.0), PROBES)
        await _redrawn(pilot)  # the clock's tick draws nothing while paused
        assert "paused" in _text(app, "#header") and "3s / 20s" in _text(app, "#header")
        await pilot.press("p")
        await pilot.pause(TICK)
        assert "4s / 20s" in _text(app, "#header")  # caught up on resume
        await pilot.press("f")
        assert not app.query_one("#findings").display
        await pilot.press("q")
        await pilot.pause(TICK)
        assert quits == [1] and app.is_running  # the run stores itself, then ends the app
        assert "stopping" in _text(app, "#header")
        await pilot.press("q")  # a second q leaves at once
        await pilot.pause(TICK)
        assert not app.is_running

    _drive(app, (120, 40), body)


def test_at_80x24_the_probe_column_collapses_and_s_brings_it_back() -> None:
    app = _app()

    async def body(pilot: Pilot[None]) -> None:
        _feed_from_a_thread(app, 3)
        await _redrawn(pilot)
        assert not app.query_one("#probes").display
        assert app.query_one("#chart-latency").display
        await pilot.press("s")
        assert app.query_one("#probes").display

    _drive(app, (80, 24), body)
