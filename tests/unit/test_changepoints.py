"""Change-point detector (tracker.analysis.changepoints) on seeded synthetic nightly series.

Fixtures are generated here (random.Random with fixed seeds); nothing is read from disk.
"""

import math
import random
import time

import pytest

from tracker.analysis.changepoints import MIN_SIZE, ChangePoint, detect
from tracker.analysis.changepoints_stats import PrefixSums, clip_outliers, t_two_sided_p


def nightly(seed, levels, cv=0.03, base=120.0):
    """Latency-like nights: base * level * lognormal noise with the given CV."""
    rng = random.Random(seed)
    sigma = math.sqrt(math.log(1.0 + cv * cv))
    return [base * lv * math.exp(rng.gauss(0.0, sigma) - sigma * sigma / 2) for lv in levels]


def step_levels(n, at, size):
    return [1.0 if i < at else 1.0 + size for i in range(n)]


def ramp_levels(n, start, rate, length):
    return [(1.0 + rate) ** min(max(0, i - start + 1), length) for i in range(n)]


@pytest.mark.parametrize(("seed", "at", "size"), [(1, 25, 0.20), (2, 18, -0.15), (3, 33, 0.10)])
def test_clean_step_is_found_at_its_night(seed, at, size):
    found = detect(nightly(seed, step_levels(45, at, size)))
    assert len(found) == 1
    cp = found[0]
    assert abs(cp.index - at) <= 1
    assert cp.kind == "step"
    assert cp.end == cp.index
    assert cp.p_value < 1e-4
    assert (cp.after > cp.before) == (size > 0)
    assert cp.change_pct == pytest.approx(size * 100, abs=5)


def test_recent_regression_with_min_size_nights_after_it_is_found():
    values = nightly(4, step_levels(40, 40 - MIN_SIZE, 0.25))
    found = detect(values)
    assert [cp.index for cp in found] == [40 - MIN_SIZE]


def test_two_steps_are_both_found():
    levels = [1.0] * 20 + [1.3] * 20 + [1.1] * 20
    found = detect(nightly(5, levels))
    # In this draw nights 38-39 already sit between the levels (read as a short creep).
    assert [cp.index for cp in found] == pytest.approx([20, 40], abs=2)


@pytest.mark.parametrize("seed", [6, 7, 8])
def test_slow_ramp_over_eight_nights_is_reported_as_creep_from_its_start(seed):
    # +3% a night for 8 nights (27% in all) in 3% noise: no single night is a big step.
    start, length = 30, 8
    found = detect(nightly(seed, ramp_levels(60, start, 0.03, length)))
    assert len(found) == 1
    cp = found[0]
    assert start - 2 <= cp.index <= start + length
    assert cp.kind == "creep"
    assert cp.index < cp.end <= start + length + 2
    assert cp.change_pct == pytest.approx(100 * (1.03**length - 1), abs=8)


def test_ramp_still_going_on_the_last_night_is_reported():
    found = detect(nightly(9, ramp_levels(50, 40, 0.04, 10)))
    assert len(found) == 1
    assert 38 <= found[0].index <= 45
    assert found[0].after > found[0].before * 1.2


@pytest.mark.parametrize("seed", range(10, 22))
def test_pure_latency_noise_gives_no_change(seed):
    rng = random.Random(seed)
    n = rng.randint(30, 60)
    values = nightly(seed, [1.0] * n, cv=rng.uniform(0.02, 0.06))
    # A heavy-tail night or two, as a shared CI host produces.
    for i in rng.sample(range(n), 2):
        values[i] *= rng.uniform(1.3, 2.5)
    assert detect(values) == []


@pytest.mark.parametrize("factor", [3.0, 0.3])
def test_isolated_outlier_night_is_not_a_change(factor):
    values = nightly(23, [1.0] * 40)
    values[22] *= factor
    assert detect(values) == []


def test_burst_shorter_than_min_size_is_not_a_change():
    values = nightly(24, [1.0] * 50)
    for i in range(30, 30 + MIN_SIZE - 2):
        values[i] *= 1.8
    assert detect(values) == []


@pytest.mark.parametrize("n", [0, 1, 2, 2 * MIN_SIZE - 1])
def test_short_series_gives_nothing(n):
    assert detect([100.0 + i for i in range(n)]) == []


def test_constant_series_gives_nothing():
    assert detect([42.0] * 60) == []


def test_all_zero_series_gives_nothing():
    assert detect([0.0] * 30) == []


def test_zeros_then_errors_is_a_change_with_zero_pct():
    values = [0.0] * 20 + [5.0, 6.0, 5.0, 4.0, 5.0, 6.0, 5.0, 5.0, 4.0, 6.0]
    found = detect(values)
    assert [cp.index for cp in found] == [20]
    assert found[0].before == 0.0
    assert found[0].change_pct == 0.0


def test_error_rate_jumping_on_the_last_nights_is_a_step_where_it_jumped():
    # Mostly-zero series (error rates): clipping must not smear the jump into a ramp.
    found = detect([0.0] * 30 + [0.02, 0.03, 0.01, 0.02, 0.025])
    assert [(cp.index, cp.kind) for cp in found] == [(30, "step")]


def test_sporadic_error_blips_are_not_changes():
    rng = random.Random(29)
    values = [0.0 if rng.random() < 0.8 else rng.uniform(0.0, 0.002) for _ in range(60)]
    assert detect(values) == []
    assert detect([0.0] * 25 + [0.02, 0.03] + [0.0] * 25) == []


def test_noiseless_step_is_found():
    found = detect([10.0] * 12 + [12.0] * 12)
    assert [(cp.index, cp.before, cp.after) for cp in found] == [(12, 10.0, 12.0)]


def test_missing_nights_are_skipped_and_indices_kept():
    values: list[float | None] = list(nightly(25, step_levels(40, 20, 0.3)))
    for i in (3, 10, 19, 20):
        values[i] = None
    values[30] = float("nan")
    values[31] = float("inf")
    found = detect(values)
    assert len(found) == 1
    # Nights 19 and 20 are missing: the first value after the change is night 21.
    assert found[0].index == 21


def test_min_size_below_two_is_refused():
    with pytest.raises(ValueError, match="min_size"):
        detect([1.0] * 10, min_size=1)


def test_same_answer_twice():
    values = nightly(26, ramp_levels(70, 20, 0.03, 10))
    assert detect(values) == detect(values)
    assert all(isinstance(cp, ChangePoint) for cp in detect(values))


def test_long_series_is_fast():
    rng = random.Random(27)
    values = [100.0 + 20.0 * ((i // 80) % 2) + rng.gauss(0, 3) for i in range(800)]
    t0 = time.perf_counter()
    found = detect(values)
    assert time.perf_counter() - t0 < 1.0
    assert [cp.index for cp in found] == pytest.approx(list(range(80, 800, 80)), abs=1)


# -- the statistics underneath ------------------------------------------------------------


@pytest.mark.parametrize(
    ("t", "df", "p"),
    [(2.0, 10, 0.073388), (3.5, 5, 0.017284), (1.96, 1e6, 0.049996), (0.0, 4, 1.0)],
)
def test_t_two_sided_p_matches_tables(t, df, p):
    assert t_two_sided_p(t, df) == pytest.approx(p, rel=1e-4)


def test_t_two_sided_p_edges():
    assert t_two_sided_p(float("inf"), 5) == 0.0
    assert t_two_sided_p(float("nan"), 5) == 1.0
    assert 0.0 < t_two_sided_p(40.0, 30) < 1e-25


def test_prefix_sums_match_direct_computation():
    rng = random.Random(28)
    x = [rng.gauss(5, 2) for _ in range(30)]
    ps = PrefixSums(x)
    a, b = 4, 21
    seg = x[a:b]
    m = sum(seg) / len(seg)
    assert ps.mean(a, b) == pytest.approx(m)
    assert ps.sse(a, b) == pytest.approx(sum((v - m) ** 2 for v in seg))
    lag1 = sum((seg[i] - m) * (seg[i - 1] - m) for i in range(1, len(seg)))
    assert ps.lag1(a, b) == pytest.approx(lag1)


def test_ramp_fit_is_exact_on_a_noiseless_ramp():
    x = [0.0] * 10 + [1.0, 2.0, 3.0, 4.0] + [5.0] * 10
    sse, before, after = PrefixSums(x).ramp_fit(0, 10, 14, len(x))
    assert sse == pytest.approx(0.0, abs=1e-9)
    assert (before, after) == (pytest.approx(0.0, abs=1e-9), pytest.approx(5.0))
    step_sse = PrefixSums(x).ramp_fit(0, 12, 12, len(x))[0]
    assert step_sse > 1.0


def test_clip_outliers_clips_a_spike_but_keeps_a_step():
    before = [0.0, 0.1, -0.1, 0.05, 9.0, 0.0, -0.05, 0.1, 0.0]  # a spike at 4
    x = [*before, 3.0, 3.1, 2.9, 3.05, 3.0, 2.95]
    out = clip_outliers(x, half_window=5, k=4.0)
    assert out[4] < 2.0
    assert out[9:] == x[9:]


def test_clip_outliers_sharp_edges_keeps_the_edge_of_a_late_step():
    x = [0.0] * 30 + [0.02, 0.03, 0.01, 0.02, 0.025]
    soft = clip_outliers(x, half_window=5, k=4.0)
    sharp = clip_outliers(x, half_window=5, k=4.0, sharp_edges=True)
    assert soft[30] < 0.02  # the centred median sits between the levels
    assert sharp[30] == x[30]
    assert min(sharp[30:]) > 0.005  # everything after the jump stays on the new level
    spiky = [*x[:10], 0.05, *x[11:]]
    assert clip_outliers(spiky, half_window=5, k=4.0, sharp_edges=True)[10] < 0.05
