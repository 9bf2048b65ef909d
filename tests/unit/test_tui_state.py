"""The live view's model: windows, probe readings and degradations folded into series."""

from __future__ import annotations

from tracker.analysis.detect import Degradation
from tracker.metrics import LATENCY, SCHEDULE_LAG, TTFT, Histogram, Window
from tracker.tui.state import HISTORY_S, PROBE_PANELS, LiveState


def _window(i: int, latency_ms: float, *, ttft_ms: float | None = None) -> Window:
    w = Window(index=i, start_s=float(i), ok=10, errors=1, output_tokens=320, sent=11)
    w.warmup = i < 2
    hist = Histogram()
    for _ in range(10):
        hist.record_ms(latency_ms)
    w.histograms[LATENCY] = hist
    lag = Histogram()
    lag.record_ms(3.0)
    w.histograms[SCHEDULE_LAG] = lag
    if ttft_ms is not None:
        t = Histogram()
        t.record_ms(ttft_ms)
        w.histograms[TTFT] = t
    return w


def _state() -> LiveState:
    return LiveState("demo", "http://127.0.0.1:8000", total_s=10.0, load="open 10 req/s")


def test_windows_become_per_second_series_and_the_clock() -> None:
    state = _state()
    for i in range(4):
        state.add_window(_window(i, 100.0 * (i + 1)), {"cpu.psi_some_pct": 5.0 + i})
    assert state.elapsed_s == 4.0 and not state.warmup and not state.draining
    assert state.series["throughput"][-1] == 10.0 and state.series["errors"][-1] == 1.0
    assert state.series["tokens_per_s"][-1] == 320.0
    p50 = list(state.series["latency_p50"])
    expected = [100, 200, 300, 400]
    assert all(abs(a - b) / b < 0.01 for a, b in zip(p50, expected, strict=True))
    assert state.latest("cpu.psi_some_pct") == 8.0
    assert state.schedule_lag_p99_ms is not None and 2.9 < state.schedule_lag_p99_ms < 3.1
    assert not state.is_llm()


def test_llm_series_appear_when_the_run_streams() -> None:
    state = _state()
    state.add_window(_window(0, 800.0, ttft_ms=60.0), {})
    assert state.is_llm() and abs(state.series["ttft_p50"][-1] - 60.0) < 1


def test_history_is_bounded_and_the_drain_is_recognised() -> None:
    state = _state()
    for i in range(HISTORY_S + 20):
        state.add_window(_window(i, 50.0), {})
    assert len(state.series["latency_p50"]) == HISTORY_S
    assert state.draining  # past the 10 s of load


def test_a_probe_panel_shows_the_first_metric_the_run_has() -> None:
    state = _state()
    state.add_window(_window(0, 50.0), {"gc.pause_ms_per_s_estimate": 4.0})
    gc = next(p for p in PROBE_PANELS if p.label == "GC pause")
    gpu = next(p for p in PROBE_PANELS if p.label == "GPU util")
    assert state.panel_metric(gc) == "gc.pause_ms_per_s_estimate"
    assert state.panel_metric(gpu) is None  # no GPU: the panel says so


def test_degradations_and_notes_are_kept_in_order() -> None:
    state = _state()
    d = Degradation("latency_p50", 21.0, 30.0, 800.0, 1500.0, 87.5, 25.0)
    state.add_degradation(d)
    state.add_note("fault 'cpu' switched on at 20s")
    assert state.findings == [d]
    assert state.finding_line(d) == "latency p50 +88% since 21s (steady 800, now 1500)"
    assert list(state.notes) == ["fault 'cpu' switched on at 20s"]
