"""Arrival and user-count schedules for the load driver: pure, deterministic, no I/O.

Used by `tracker.driver.engine`. An open-model run asks a `RateProfile` for its arrival
offsets (`uniform_arrivals` or `poisson_arrivals`); a closed-model run asks a
`UserProfile` how many users should be active at each moment, and `ThinkTime` /
`pacing_delay` for how long each user waits between iterations.

Both profiles are piecewise linear. Arrivals come from the expected-arrivals curve
Λ(t) = ∫₀ᵗ r(s) ds: arrival i is due when Λ reaches a level x_i (x_i = i for uniform
arrivals, a running sum of Exp(1) draws for Poisson), so shaping the rate reshapes the
arrivals without a separate code path per shape.
"""

from __future__ import annotations

import bisect
import itertools
import math
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import ClassVar

# An arrival that rounding places within a nanosecond of the end is the one *at* the
# end (excluded); no clock the engine schedules by can tell the two apart.
_END_EPS_S = 1e-9
# Floor of a linear user count: 3 users computed as 2.9999999999999996 must stay 3.
_USERS_EPS = 1e-9


@dataclass(frozen=True, slots=True)
class _Segment:
    """A linear piece: the value goes from v0 to v1 over [start_s, start_s + duration_s]."""

    start_s: float
    duration_s: float
    v0: float
    v1: float

    def value_at(self, tau: float) -> float:
        return self.v0 + (self.v1 - self.v0) * tau / self.duration_s

    def area_to(self, tau: float) -> float:
        return tau * (self.v0 + 0.5 * (self.v1 - self.v0) * tau / self.duration_s)


def _check(value: float, where: str, what: str, fix: str) -> None:
    if not math.isfinite(value):
        raise ValueError(f"{where}: {what} {value!r} is not finite; {fix}")
    if value < 0:
        raise ValueError(f"{where}: {what} {value!r} is negative; {fix}")


def _build(
    start: float, stages: Sequence[tuple[float, float]], name: str, unit: str
) -> tuple[_Segment, ...]:
    """Segments for k6-style stages: each ramps from the previous target to its own."""
    _check(start, f"start {name}", "value", f"use a {name} >= 0 {unit}")
    if not stages:
        raise ValueError(f"stages is empty; give at least one (duration_s, target {name})")
    segments: list[_Segment] = []
    t, current = 0.0, float(start)
    for i, (duration_s, target) in enumerate(stages):
        _check(duration_s, f"stages[{i}]", "duration", "use a duration >= 0 s")
        _check(target, f"stages[{i}]", f"target {name}", f"use a {name} >= 0 {unit}")
        # A zero-length stage is an instant change; it needs no segment of its own.
        if duration_s > 0:
            segments.append(_Segment(t, float(duration_s), current, float(target)))
            t += duration_s
        current = float(target)
    return tuple(segments)


@dataclass(frozen=True)
class _Piecewise:
    """Contiguous segments from 0 to duration_s; shared by rate and user profiles."""

    _KIND: ClassVar[str] = "profile"
    segments: tuple[_Segment, ...]
    _starts: tuple[float, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.segments:
            raise ValueError(f"{self._KIND} has zero total duration; give a stage a duration > 0")
        object.__setattr__(self, "_starts", tuple(s.start_s for s in self.segments))

    @property
    def duration_s(self) -> float:
        """Length of the profile in seconds."""
        last = self.segments[-1]
        return last.start_s + last.duration_s

    def _locate(self, t: float) -> int:
        # Right-continuous: at a jump the new value applies from the jump instant on.
        return min(max(bisect.bisect_right(self._starts, t) - 1, 0), len(self.segments) - 1)


@dataclass(frozen=True)
class RateProfile(_Piecewise):
    """A piecewise-linear target arrival rate r(t) in requests/s over [0, duration_s].

    Build one with `constant`, `stages` (k6 ramping-arrival-rate) or `throttle`
    (Gatling throttle); the constructor takes internal segments. All of them raise
    ValueError for a negative or non-finite rate or duration, no stages, or a profile
    that is zero everywhere.
    """

    _KIND: ClassVar[str] = "rate profile"
    _ends: tuple[float, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        super().__post_init__()
        ends: list[float] = []
        total = 0.0
        for seg in self.segments:
            total += seg.area_to(seg.duration_s)
            ends.append(total)
        if total <= 0:
            raise ValueError("rate profile is zero everywhere; give some stage a rate > 0")
        object.__setattr__(self, "_ends", tuple(ends))

    @classmethod
    def constant(cls, rate: float, duration_s: float) -> RateProfile:
        """A steady `rate` requests/s for `duration_s` seconds."""
        return cls(_build(rate, [(duration_s, rate)], "rate", "requests/s"))

    @classmethod
    def stages(cls, start_rate: float, stages: Sequence[tuple[float, float]]) -> RateProfile:
        """k6 ramping-arrival-rate: each (duration_s, target_rate) ramps linearly to target.

        The first stage ramps from `start_rate`; a stage whose target equals the rate it
        starts from holds that rate.
        """
        return cls(_build(start_rate, stages, "rate", "requests/s"))

    @classmethod
    def throttle(cls, steps: Sequence[tuple[str, float, float | None]]) -> RateProfile:
        """Gatling throttle, starting from 0 requests/s.

        Steps: ("reach", target_rps, ramp_s) ramps linearly to the target over ramp_s;
        ("hold", duration_s, None) keeps the current rate; ("jump", target_rps, None)
        changes the rate instantly.
        """
        stages: list[tuple[float, float]] = []
        current = 0.0
        for i, (kind, value, ramp_s) in enumerate(steps):
            where = f"steps[{i}] ({kind!r})"
            if kind == "reach":
                if ramp_s is None:
                    raise ValueError(f"{where}: missing ramp duration; use ('reach', rps, ramp_s)")
                _check(value, where, "target rate", "use a rate >= 0 requests/s")
                _check(ramp_s, where, "ramp duration", "use a duration >= 0 s")
                stages.append((ramp_s, value))
                current = value
            elif kind in ("hold", "jump"):
                if ramp_s is not None:
                    raise ValueError(f"{where}: third field must be None; use ({kind!r}, x, None)")
                if kind == "hold":
                    _check(value, where, "duration", "use a duration >= 0 s")
                    stages.append((value, current))
                else:
                    _check(value, where, "target rate", "use a rate >= 0 requests/s")
                    stages.append((0.0, value))
                    current = value
            else:
                raise ValueError(f"{where}: unknown step kind; use 'reach', 'hold' or 'jump'")
        if not stages:
            raise ValueError("steps is empty; give at least one ('reach'|'hold'|'jump', ...) step")
        return cls(_build(0.0, stages, "rate", "requests/s"))

    def rate_at(self, t: float) -> float:
        """Target rate at offset `t` (requests/s); 0 outside [0, duration_s]."""
        if t < 0 or t > self.duration_s:
            return 0.0
        seg = self.segments[self._locate(t)]
        return seg.value_at(t - seg.start_s)

    def cumulative(self, t: float) -> float:
        """Λ(t) = ∫₀ᵗ r(s) ds, the expected number of arrivals by offset `t`."""
        if t <= 0:
            return 0.0
        if t >= self.duration_s:
            return self._ends[-1]
        k = self._locate(t)
        seg = self.segments[k]
        before = self._ends[k - 1] if k else 0.0
        return before + seg.area_to(t - seg.start_s)

    def inverse_cumulative(self, x: float) -> float | None:
        """The smallest offset t with Λ(t) = x, or None if x exceeds `expected_total()`.

        Where Λ is flat at x (a zero-rate stretch) the answer is the end of that stretch,
        so no arrival is ever placed where the rate is zero; a zero stretch running to
        the end gives `duration_s`, which the arrival generators exclude.

        Raises:
            ValueError: if x is negative.
        """
        if x < 0:
            raise ValueError(f"x must be >= 0, got {x!r}")
        if x > self._ends[-1]:
            return None
        # bisect_right skips zero-area segments whose end equals x: the first segment
        # whose Λ rises past x is where x is actually crossed.
        k = bisect.bisect_right(self._ends, x)
        if k == len(self.segments):
            return self.duration_s
        seg = self.segments[k]
        y = x - (self._ends[k - 1] if k else 0.0)
        if y <= 0:
            return seg.start_s
        r0, slope = seg.v0, (seg.v1 - seg.v0) / seg.duration_s
        if slope == 0:
            tau = y / r0
        else:
            # Root of ½·slope·τ² + r0·τ − y = 0 in the rationalised form 2y / (r0 + √…):
            # no cancellation when slope is tiny (it tends to the linear y / r0) and no
            # division by slope. The clamp absorbs rounding at the end of a ramp-down.
            disc = max(r0 * r0 + 2.0 * slope * y, 0.0)
            tau = 2.0 * y / (r0 + math.sqrt(disc))
        return seg.start_s + min(max(tau, 0.0), seg.duration_s)

    def expected_total(self) -> float:
        """Λ(duration_s): the expected number of arrivals over the whole profile."""
        return self._ends[-1]


def _arrivals(profile: RateProfile, levels: Iterator[float]) -> Iterator[float]:
    end = profile.duration_s - _END_EPS_S
    last = 0.0
    for x in levels:
        t = profile.inverse_cumulative(x)
        if t is None or t >= end:
            return
        # Λ⁻¹ is monotone, but the quadratic root can wobble by an ulp; never go back.
        last = max(last, t)
        yield last


def uniform_arrivals(profile: RateProfile) -> Iterator[float]:
    """Deterministic arrivals: arrival i at Λ⁻¹(i) for i = 0, 1, 2, ...

    Yields offsets in seconds from the load start, non-decreasing and < duration_s;
    a constant 10 requests/s over 2 s gives 0.0, 0.1, ..., 1.9.
    """
    return _arrivals(profile, (float(i) for i in itertools.count()))


def poisson_arrivals(profile: RateProfile, seed: int) -> Iterator[float]:
    """Non-homogeneous Poisson arrivals by time rescaling: Λ⁻¹(E1), Λ⁻¹(E1 + E2), ...

    E1, E2, ... are Exp(1) draws from `random.Random(seed)`, so the same seed always
    gives the same offsets. Offsets are non-decreasing and < duration_s.
    """
    rng = random.Random(seed)

    def levels() -> Iterator[float]:
        x = 0.0
        while True:
            x += rng.expovariate(1.0)
            yield x

    return _arrivals(profile, levels())


@dataclass(frozen=True)
class UserProfile(_Piecewise):
    """A piecewise-linear number of concurrent users over [0, duration_s] (closed model).

    Build one with `constant` or `stages` (k6 ramping-vus); the constructor takes
    internal segments. Both raise ValueError as `RateProfile`'s do.
    """

    _KIND: ClassVar[str] = "user profile"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.max_users() == 0:
            raise ValueError("user profile is zero everywhere; give some stage users > 0")

    @classmethod
    def constant(cls, users: int, duration_s: float) -> UserProfile:
        """A steady `users` users for `duration_s` seconds."""
        return cls(_build(users, [(duration_s, users)], "users", "users"))

    @classmethod
    def stages(cls, start_users: int, stages: Sequence[tuple[float, int]]) -> UserProfile:
        """k6 ramping-vus: each (duration_s, target_users) ramps linearly to target."""
        return cls(_build(start_users, stages, "users", "users"))

    def users_at(self, t: float) -> int:
        """Users that should be active at offset `t`: floor of the linear value, 0 outside."""
        if t < 0 or t > self.duration_s:
            return 0
        seg = self.segments[self._locate(t)]
        return max(0, math.floor(seg.value_at(t - seg.start_s) + _USERS_EPS))

    def max_users(self) -> int:
        """The most users active at any moment."""
        return math.floor(max(max(s.v0, s.v1) for s in self.segments) + _USERS_EPS)


@dataclass(frozen=True)
class ThinkTime:
    """A user's pause between iterations: uniform in [min_s, max_s], constant if equal."""

    min_s: float
    max_s: float

    def __post_init__(self) -> None:
        _check(self.min_s, "think time", "min_s", "use a pause >= 0 s")
        _check(self.max_s, "think time", "max_s", "use a pause >= 0 s")
        if self.min_s > self.max_s:
            raise ValueError(f"think time: min_s {self.min_s} > max_s {self.max_s}; swap them")

    def draw(self, rng: random.Random) -> float:
        """One pause in seconds; a constant think time consumes no randomness."""
        if self.min_s == self.max_s:
            return self.min_s
        return rng.uniform(self.min_s, self.max_s)


def pacing_delay(iteration_started: float, now: float, pace_s: float) -> float:
    """Gatling pace: seconds to wait so iterations start every `pace_s` seconds.

    Zero when the iteration overran its pace (the next one starts at once, no catch-up).

    Raises:
        ValueError: if pace_s is negative.
    """
    _check(pace_s, "pacing", "pace_s", "use a pace >= 0 s")
    return max(0.0, iteration_started + pace_s - now)
