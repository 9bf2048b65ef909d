"""The live view's model: windows, probe readings and degradations folded into series."""

from __future__ import annotations

import pickle

from probes.stacks.profile import FunctionTime
from tracker.records import FindingRecord
from tracker.records.window import LATENCY, SCHEDULE_LAG, TTFT, Histogram, Window
from tracker.tui.state import HISTORY_S, PROBE_PANELS, LiveState, WindowPoints


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
    assert state.series["throughput"][-1] == (4.0, 10.0)
    assert state.series["errors"][-1] == (4.0, 1.0)
    assert state.latest("tokens_per_s") == 320.0
    p50 = list(state.series["latency_p50"])
    assert [t for t, _ in p50] == [1.0, 2.0, 3.0, 4.0]  # each window's end
    expected = [100, 200, 300, 400]
    assert all(abs(v - b) / b < 0.01 for (_, v), b in zip(p50, expected, strict=True))
    assert state.latest("cpu.psi_some_pct") == 8.0
    assert state.schedule_lag_p99_ms is not None and 2.9 < state.schedule_lag_p99_ms < 3.1
    assert not state.is_llm()


def test_the_screen_process_gets_the_same_series_from_a_window_s_few_numbers() -> None:
    # What crosses to the screen's process is WindowPoints, not the window's histograms.
    direct, remote = _state(), _state()
    for i in range(3):
        w = _window(i, 100.0 * (i + 1), ttft_ms=40.0 + i)
        direct.add_window(w, {"mem.rss_mb": 30.0})
        points = pickle.loads(pickle.dumps(WindowPoints.of(w)))
        remote.add_points(points, {"mem.rss_mb": 30.0})
    assert remote == direct
    assert len(pickle.dumps(WindowPoints.of(_window(5, 10.0, ttft_ms=5.0)))) < 600


def test_llm_series_appear_when_the_run_streams() -> None:
    state = _state()
    state.add_window(_window(0, 800.0, ttft_ms=60.0), {})
    ttft = state.latest("ttft_p50")
    assert state.is_llm() and ttft is not None and abs(ttft - 60.0) < 1


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


def _finding(cause: str, confidence: float, *, flagged_at: float = 24.0) -> FindingRecord:
    return FindingRecord(
        start_s=21.0, end_s=26.0, metric="latency_p50", change_pct=87.5, cause=cause,
        causes=[{"cause": cause, "score": confidence}], confidence=confidence,
        evidence=[
            "latency p50 +88% from 21 s (800 -> 1500)",
            "involuntary switches 900/s vs 40/s before (22x); r=+0.91 with latency "
            "[cpu.ctx_switches_involuntary_per_s]",
        ],
        flagged_at_s=flagged_at,
    )  # fmt: skip


def test_a_finding_is_replaced_by_its_newer_attribution_and_flags_its_charts() -> None:
    state = _state()
    assert state.add_finding(_finding("unexplained", 0.0))
    assert (
        state.finding_line(state.findings[0]) == "latency p50 +88% since 21s: cause not clear yet"
    )
    assert not state.add_finding(_finding("contention", 0.84))  # the same event, firmer
    assert [f.cause for f in state.findings] == ["contention"]
    assert state.finding_line(state.findings[0]) == (
        "latency p50 +88% since 21s: contention (confidence 0.84)"
    )
    assert state.flagged_charts() == {"latency", "invol. switches"}
    assert state.add_finding(_finding("io", 0.5, flagged_at=40.0))  # a second event
    assert len(state.findings) == 2


def test_notes_stacks_and_an_attach_s_probe_clock() -> None:
    state = LiveState("attach python[42]", "pid 42", total_s=0.0, load="probes only")
    state.add_note("fault 'cpu' switched on at 20s")
    assert list(state.notes) == ["fault 'cpu' switched on at 20s"]
    state.add_probes(3.0, {"mem.rss_mb": 120.0})
    assert state.elapsed_s == 3.0 and not state.warmup and state.latest("mem.rss_mb") == 120.0
    top = [FunctionTime("busy (server.py)", 30, 30, 60.0, 60.0)]
    state.add_stacks(3.0, 1.0, top)
    assert state.stacks is not None and state.stacks.top == top
