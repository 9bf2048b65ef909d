"""Arrival and user-count schedules (tracker.driver.schedule): pure and deterministic."""

from __future__ import annotations

import itertools
import math
import random
import statistics

import pytest

from tracker.driver.schedule import (
    RateProfile,
    ThinkTime,
    UserProfile,
    pacing_delay,
    poisson_arrivals,
    uniform_arrivals,
)

# --- rate profiles and Λ --------------------------------------------------------------


def test_constant_rate_uniform_arrivals_are_exact():
    times = list(uniform_arrivals(RateProfile.constant(10, 2)))
    assert len(times) == 20
    assert times == pytest.approx([i * 0.1 for i in range(20)], abs=1e-9)


def test_constant_profile_basics():
    p = RateProfile.constant(10, 2)
    assert p.duration_s == 2
    assert p.expected_total() == 20
    assert p.rate_at(1.3) == 10
    assert p.rate_at(-0.1) == 0 and p.rate_at(2.1) == 0
    assert p.cumulative(0.5) == pytest.approx(5)
    assert p.cumulative(-1) == 0 and p.cumulative(99) == 20


def test_linear_ramp_rate_cumulative_and_count():
    p = RateProfile.stages(0, [(10, 100)])
    assert p.rate_at(5) == pytest.approx(50)
    assert p.rate_at(2.5) == pytest.approx(25)
    assert p.cumulative(5) == pytest.approx(125)  # 100/10/2 · t²
    assert p.cumulative(10) == pytest.approx(500)
    assert p.inverse_cumulative(125) == pytest.approx(5)
    times = list(uniform_arrivals(p))
    assert len(times) == 500
    assert times[0] == 0.0
    assert times[1] == pytest.approx(math.sqrt(1 / 5))


def test_stages_ramp_hold_ramp_down():
    p = RateProfile.stages(0, [(10, 100), (20, 100), (10, 0)])
    assert p.duration_s == 40
    assert p.rate_at(5) == pytest.approx(50)
    assert p.rate_at(20) == 100
    assert p.rate_at(35) == pytest.approx(50)
    assert p.rate_at(40) == 0
    assert p.expected_total() == pytest.approx(500 + 2000 + 500)
    assert p.cumulative(30) == pytest.approx(2500)
    assert len(list(uniform_arrivals(p))) == 3000


def test_stages_start_rate_and_zero_length_stage_jumps():
    p = RateProfile.stages(20, [(10, 20), (0, 50), (10, 50)])
    assert p.rate_at(9.999) == 20
    assert p.rate_at(10) == 50  # right-continuous at the jump
    assert p.expected_total() == pytest.approx(700)


def test_throttle_reach_hold_jump_shape():
    p = RateProfile.throttle(
        [("reach", 10, 10), ("hold", 20, None), ("jump", 50, None), ("hold", 10, None)]
    )
    assert p.duration_s == 40
    assert p.rate_at(0) == 0
    assert p.rate_at(5) == pytest.approx(5)
    assert p.rate_at(15) == 10
    assert p.rate_at(29.999) == 10
    assert p.rate_at(30) == 50
    assert p.rate_at(35) == 50
    assert p.expected_total() == pytest.approx(50 + 200 + 500)


def test_throttle_reach_from_current_rate():
    p = RateProfile.throttle([("jump", 10, None), ("hold", 5, None), ("reach", 30, 10)])
    assert p.rate_at(2) == 10
    assert p.rate_at(10) == pytest.approx(20)
    assert p.expected_total() == pytest.approx(50 + 200)


def test_zero_rate_stretches_get_no_arrivals():
    steps = [("hold", 5, None), ("jump", 10, None), ("hold", 5, None), ("jump", 0, None)]
    p = RateProfile.throttle([*steps, ("hold", 5, None)])
    assert p.inverse_cumulative(0) == 5.0  # end of the leading zero stretch
    times = list(uniform_arrivals(p))
    assert len(times) == 50
    assert times[0] == 5.0
    assert times[-1] == pytest.approx(9.9)
    assert p.inverse_cumulative(50) == 15.0  # trailing zero stretch runs to the end
    assert p.inverse_cumulative(50.001) is None


def test_inverse_beyond_end_and_negative():
    p = RateProfile.constant(10, 2)
    assert p.inverse_cumulative(20) == pytest.approx(2)
    assert p.inverse_cumulative(20.5) is None
    with pytest.raises(ValueError, match="x must be >= 0"):
        p.inverse_cumulative(-1)


_PROFILES = {
    "constant": RateProfile.constant(7.5, 12),
    "ramp_up": RateProfile.stages(0, [(10, 100)]),
    "ramp_down": RateProfile.stages(100, [(10, 0)]),
    "tiny_slope": RateProfile.stages(100, [(10, 100 + 1e-9)]),
    "tiny_negative_slope": RateProfile.stages(100, [(10, 100 - 1e-12)]),
    "mixed": RateProfile.stages(3, [(4, 40), (6, 40), (0, 5), (5, 80), (3, 1)]),
    "throttle": RateProfile.throttle(
        [("reach", 50, 5), ("hold", 3, None), ("jump", 5, None), ("reach", 0.5, 4)]
    ),
}


@pytest.mark.parametrize("name", sorted(_PROFILES))
@pytest.mark.parametrize("fraction", [0.0, 1e-6, 0.013, 0.25, 0.5, 0.618, 0.9, 0.999, 1.0])
def test_inverse_of_cumulative_round_trips(name, fraction):
    p = _PROFILES[name]
    t = fraction * p.duration_s
    back = p.inverse_cumulative(p.cumulative(t))
    assert back == pytest.approx(t, abs=1e-7)


@pytest.mark.parametrize("name", sorted(_PROFILES))
def test_cumulative_of_inverse_round_trips(name):
    p = _PROFILES[name]
    for i in range(101):
        x = p.expected_total() * i / 100
        t = p.inverse_cumulative(x)
        assert t is not None
        assert p.cumulative(t) == pytest.approx(x, rel=1e-9, abs=1e-9)


@pytest.mark.parametrize("name", sorted(_PROFILES))
def test_uniform_arrivals_are_ordered_in_range_and_count_floor_of_total(name):
    p = _PROFILES[name]
    times = list(uniform_arrivals(p))
    assert all(a <= b for a, b in itertools.pairwise(times))
    assert all(0 <= t < p.duration_s for t in times)
    # Arrival i exists iff Λ⁻¹(i) < T; one within 1 ns of T counts as at T (tiny_slope).
    assert len(times) == math.ceil(p.expected_total() - 1e-6)


# --- Poisson ----------------------------------------------------------------------------


def test_poisson_is_reproducible_per_seed():
    p = RateProfile.stages(10, [(5, 50)])
    a = list(poisson_arrivals(p, seed=42))
    b = list(poisson_arrivals(p, seed=42))
    c = list(poisson_arrivals(p, seed=43))
    assert a == b
    assert a != c
    assert all(x <= y for x, y in itertools.pairwise(a))
    assert all(0 <= t < p.duration_s for t in a)


def test_poisson_mean_count_matches_expected_total():
    p = RateProfile.constant(200, 50)
    lam = p.expected_total()  # 10 000, σ = 100
    counts = [sum(1 for _ in poisson_arrivals(p, seed=s)) for s in range(5)]
    for n in counts:
        assert abs(n - lam) < 3 * math.sqrt(lam)
    assert abs(statistics.fmean(counts) - lam) < 3 * math.sqrt(lam / len(counts))


def test_poisson_interarrivals_are_exponential():
    rate = 200.0
    times = list(poisson_arrivals(RateProfile.constant(rate, 50), seed=7))
    gaps = sorted(b - a for a, b in itertools.pairwise(times))
    n = len(gaps)
    # Kolmogorov-Smirnov statistic against Exp(rate).
    d = 0.0
    for i, g in enumerate(gaps):
        cdf = 1.0 - math.exp(-rate * g)
        d = max(d, (i + 1) / n - cdf, cdf - i / n)
    assert d < 1.36 / math.sqrt(n)
    cv = statistics.pstdev(gaps) / statistics.fmean(gaps)
    assert cv == pytest.approx(1.0, abs=0.05)
    assert statistics.fmean(gaps) == pytest.approx(1 / rate, rel=0.05)


def test_ramped_poisson_count_and_shape_follow_lambda():
    p = RateProfile.stages(0, [(50, 400)])
    lam = p.expected_total()  # 10 000
    times = list(poisson_arrivals(p, seed=3))
    assert abs(len(times) - lam) < 3 * math.sqrt(lam)
    first_half = sum(1 for t in times if t < 25)
    assert abs(first_half - p.cumulative(25)) < 3 * math.sqrt(p.cumulative(25))


# --- user profiles ----------------------------------------------------------------------


def test_user_profile_stages_values():
    u = UserProfile.stages(0, [(10, 10), (10, 10), (5, 0)])
    assert u.duration_s == 25
    assert u.max_users() == 10
    assert u.users_at(0) == 0
    assert u.users_at(3) == 3
    assert u.users_at(9.99) == 9
    assert u.users_at(15) == 10
    assert u.users_at(22.5) == 5
    assert u.users_at(25) == 0
    assert u.users_at(-1) == 0 and u.users_at(26) == 0


def test_user_profile_floor_survives_rounding():
    u = UserProfile.stages(0, [(3, 30)])
    assert [u.users_at(k * 0.1) for k in range(31)] == list(range(31))


def test_user_profile_constant():
    u = UserProfile.constant(8, 60)
    assert u.users_at(0) == 8 and u.users_at(59.9) == 8 and u.users_at(60) == 8
    assert u.max_users() == 8 and u.duration_s == 60


# --- think time and pacing ----------------------------------------------------------------


def test_think_time_bounds_and_constant():
    rng = random.Random(1)
    tt = ThinkTime(0.5, 2.0)
    draws = [tt.draw(rng) for _ in range(1000)]
    assert all(0.5 <= d <= 2.0 for d in draws)
    assert statistics.fmean(draws) == pytest.approx(1.25, abs=0.05)
    assert ThinkTime(1.0, 1.0).draw(rng) == 1.0


def test_think_time_validation():
    with pytest.raises(ValueError, match="min_s 3 > max_s 1"):
        ThinkTime(3, 1)
    with pytest.raises(ValueError, match="min_s -1 is negative"):
        ThinkTime(-1, 1)


def test_pacing_delay():
    assert pacing_delay(10.0, 10.25, 1.0) == pytest.approx(0.75)
    assert pacing_delay(10.0, 11.5, 1.0) == 0.0
    assert pacing_delay(10.0, 10.0, 0.0) == 0.0
    with pytest.raises(ValueError, match="pace_s"):
        pacing_delay(0, 0, -1)


# --- validation ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: RateProfile.stages(0, [(10, 5), (5, -1)]), r"stages\[1\]: target rate -1"),
        (lambda: RateProfile.stages(0, [(10, 5), (-5, 1)]), r"stages\[1\]: duration -5"),
        (lambda: RateProfile.stages(-2, [(10, 5)]), "start rate: value -2 is negative"),
        (lambda: RateProfile.stages(0, [(1, math.nan)]), r"stages\[0\].*not finite"),
        (lambda: RateProfile.stages(0, []), "stages is empty"),
        (lambda: RateProfile.stages(0, [(10, 0), (5, 0)]), "zero everywhere"),
        (lambda: RateProfile.stages(5, [(0, 5)]), "zero total duration"),
        (lambda: RateProfile.constant(0, 10), "zero everywhere"),
        (lambda: RateProfile.constant(-1, 10), "negative"),
        (lambda: RateProfile.throttle([]), "steps is empty"),
        (lambda: RateProfile.throttle([("hold", 5, None)]), "zero everywhere"),
        (lambda: RateProfile.throttle([("reach", 5, 1), ("wait", 5, None)]), r"steps\[1\]"),
        (lambda: RateProfile.throttle([("reach", 5, None)]), "missing ramp duration"),
        (lambda: RateProfile.throttle([("jump", 5, None), ("hold", 5, 2)]), "must be None"),
        (lambda: RateProfile.throttle([("reach", -5, 1)]), r"steps\[0\].*target rate -5"),
        (lambda: UserProfile.stages(0, [(10, 5), (5, -1)]), r"stages\[1\]: target users -1"),
        (lambda: UserProfile.constant(0, 10), "zero everywhere"),
    ],
)
def test_validation_errors_are_one_line_and_name_the_culprit(build, message):
    with pytest.raises(ValueError, match=message) as info:
        build()
    assert "\n" not in str(info.value)
