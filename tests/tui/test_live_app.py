"""The live screen with Textual's pilot: windows arriving, a degradation flagged, keys,
and the layout at 80x24 and 120x40. The app is fed exactly as the run's thread feeds it
(`LiveFeed`, i.e. `post_message`), here from a real second thread."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable

from textual.pilot import Pilot
from textual.widgets import Sparkline, Static

from tracker.analysis.detect import Degradation
from tracker.metrics import LATENCY, SCHEDULE_LAG, TTFT, Histogram, Window
from tracker.tui.live import Chart, LiveApp, LiveFeed
from tracker.tui.state import LiveState


def _window(i: int, latency_ms: float, lag_ms: float = 2.0) -> Window:
    w = Window(index=i, start_s=float(i), sent=10, ok=10, output_tokens=320)
    for name, value in ((LATENCY, latency_ms), (TTFT, 60.0), (SCHEDULE_LAG, lag_ms)):
        h = Histogram()
        h.record_ms(value)
        w.histograms[name] = h
    return w


PROBES = {"cpu.ctx_switches_involuntary_per_s": 120.0, "mem.rss_mb": 180.0}


def _app(quits: list[int] | None = None) -> LiveApp:
    state = LiveState("demo: streaming", "http://127.0.0.1:8000", 20.0, "open 4 req/s")
    return LiveApp(state, on_quit=None if quits is None else (lambda: quits.append(1)))


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
            feed.window(_window(i, 1600.0 if i >= slow_from else 800.0), PROBES)

    t = threading.Thread(target=run)
    t.start()
    t.join()


def _text(app: LiveApp, selector: str) -> str:
    return str(app.query_one(selector, Static).render())


def test_windows_from_the_run_thread_fill_the_charts_and_header() -> None:
    app = _app()

    async def body(pilot: Pilot[None]) -> None:
        _feed_from_a_thread(app, 6)
        await pilot.pause()
        header = _text(app, "#header")
        assert "demo: streaming" in header and "6s / 20s" in header
        assert "driver lag p99 2" in header
        latency = app.query_one("#chart-latency_p50", Chart)
        assert len(latency.query_one(Sparkline).data or []) == 6
        assert "800" in str(latency.query_one(Static).render())
        assert app.query_one("#chart-ttft_p50").display  # a streamed run shows TTFT
        gpu = app.query_one("#probe-7", Chart)  # GPU util: no GPU here
        assert "no GPU" in str(gpu.query_one(Static).render())

    _drive(app, (120, 40), body)


def test_a_flagged_degradation_appears_with_a_notification() -> None:
    app = _app()

    async def body(pilot: Pilot[None]) -> None:
        _feed_from_a_thread(app, 10, slow_from=5)
        LiveFeed(app).degradation(Degradation("latency_p50", 5.0, 10.0, 800.0, 1600.0, 100.0, 8.0))
        await pilot.pause()
        assert "latency p50 +100% since 5s" in _text(app, "#findings")
        assert any("latency p50 +100%" in n.message for n in app._notifications)

    _drive(app, (120, 40), body)


def test_a_saturated_driver_is_called_out() -> None:
    app = _app()

    async def body(pilot: Pilot[None]) -> None:
        LiveFeed(app).window(_window(0, 800.0, lag_ms=40.0), {})
        await pilot.pause()
        assert "DRIVER SATURATED" in _text(app, "#header")

    _drive(app, (120, 40), body)


def test_keys_pause_toggle_panels_and_quit_asks_the_run_to_stop_first() -> None:
    quits: list[int] = []
    app = _app(quits)

    async def body(pilot: Pilot[None]) -> None:
        _feed_from_a_thread(app, 3)
        await pilot.pause()
        await pilot.press("p")
        LiveFeed(app).window(_window(3, 900.0), PROBES)
        await pilot.pause()
        assert "paused" in _text(app, "#header") and "3s / 20s" in _text(app, "#header")
        await pilot.press("p")
        await pilot.pause()
        assert "4s / 20s" in _text(app, "#header")  # caught up on resume
        await pilot.press("f")
        assert not app.query_one("#findings").display
        await pilot.press("q")
        await pilot.pause()
        assert quits == [1] and app.is_running  # the run stores itself, then ends the app
        assert "stopping" in _text(app, "#header")
        await pilot.press("q")  # a second q leaves at once
        await pilot.pause()
        assert not app.is_running

    _drive(app, (120, 40), body)


def test_at_80x24_the_probe_column_collapses_and_s_brings_it_back() -> None:
    app = _app()

    async def body(pilot: Pilot[None]) -> None:
        _feed_from_a_thread(app, 3)
        await pilot.pause()
        assert not app.query_one("#probes").display
        assert app.query_one("#chart-latency_p50").display
        await pilot.press("s")
        assert app.query_one("#probes").display

    _drive(app, (80, 24), body)
