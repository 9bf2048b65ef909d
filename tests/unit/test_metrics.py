import random

import pytest

from tracker.records.window import LATENCY, Histogram, Window, merge_windows


def test_histogram_percentiles_in_ms():
    h = Histogram()
    for ms in range(1, 101):
        h.record_ms(float(ms))
    s = h.summary_ms()
    assert s is not None
    assert s["p50"] == pytest.approx(50, rel=0.01)
    assert s["p99"] == pytest.approx(99, rel=0.01)
    assert s["max"] == pytest.approx(100, rel=0.01)
    assert s["mean"] == pytest.approx(50.5, rel=0.01)


def test_empty_histogram_has_no_summary():
    assert Histogram().summary_ms() is None


def test_encode_decode_roundtrip_is_exact():
    h = Histogram()
    for v in (0.2, 1.5, 12.0, 900.0, 45_000.0):
        h.record_ms(v)
    back = Histogram.decode(h.encode())
    assert back.summary_ms() == h.summary_ms()


def test_merge_windows_is_exact_sum():
    a, b = Window(index=0, start_s=0.0), Window(index=1, start_s=1.0)
    for i in range(100):
        a.hist(LATENCY).record_ms(10.0)
        b.hist(LATENCY).record_ms(20.0 + i)
    a.ok, b.ok = 100, 100
    a.add_error("timeout")
    b.add_error("timeout")
    b.add_error("http_5xx")
    total = merge_windows([a, b])
    assert total.ok == 200
    assert total.errors == 3
    assert total.errors_by_class == {"timeout": 2, "http_5xx": 1}
    assert total.hist(LATENCY).count == 200
    assert total.duration_s == pytest.approx(2.0)


def test_out_of_range_values_are_clamped_not_lost():
    h = Histogram()
    h.record_ms(0.0)
    h.record_ms(10 * 3600 * 1000.0)
    assert h.count == 2


def test_dropped_histograms_are_freed_without_waiting_for_the_gc():
    import gc
    import tracemalloc

    gc.disable()
    tracemalloc.start()
    try:
        for _ in range(50):
            h = Histogram()
            h.record_ms(5.0)
            Histogram.decode(h.encode()).merge(h)
            del h
        held = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
        gc.enable()
    # 50 x 2 histograms of ~190 KB would hold ~19 MB if a reference cycle kept them.
    assert held < 2_000_000


def test_percentiles_equal_hdrhistogram_s_own_for_recorded_merged_and_decoded() -> None:
    # percentile_ms sums only the occupied span of the counts array; it must give exactly
    # the value hdrh's get_value_at_percentile finds from bucket 0.
    rng = random.Random(7)
    for trial in range(200):
        h = Histogram()
        scale = rng.choice([0.01, 1.0, 300.0, 50_000.0])
        for _ in range(rng.choice([1, 2, 3, 10, 100, 1000])):
            h.record_ms(rng.expovariate(1 / scale))
        if trial % 3 == 0:
            other = Histogram()
            for _ in range(rng.randint(1, 50)):
                other.record_ms(rng.uniform(0.0, scale * 3))
            h.merge(other)
        if trial % 4 == 0:
            h = Histogram.decode(h.encode())
        for p in (0.0, 0.1, 1.0, 25.0, 50.0, 90.0, 99.0, 99.9, 100.0, rng.uniform(0, 100)):
            assert h.percentile_ms(p) == h._h.get_value_at_percentile(p) / 1000.0, (trial, p)
    assert Histogram().percentile_ms(99.0) == 0.0
