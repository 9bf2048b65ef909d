"""Degradation inside a run: when latency, TTFT, ITL, errors or throughput left the run's
own steady state, for how long, and by how much.

Used live by the runner (one `OnlineDetector.add` per one-second window: a degradation is
flagged a few seconds after its onset) and, with the same detector replayed over the stored
windows, when the run ends (`detect`). Attribution of each interval is `attribute.py`.

Per metric the detector keeps a robust picture of the steady state: the median and MAD of
the values seen while the run was healthy (after warm-up). A window is *off* when its value
is past that median by more than `Z_ON` robust standard deviations and by at least the
metric's minimum effect; `CONFIRM` off windows in a row open a degradation (starting at the
first of them), `CONFIRM` quiet windows close it. Values are read over a short rolling span
of windows (merged HDR buckets) so a low-rate run still has a usable median per second.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field

from tracker.records.window import ITL, LATENCY, TTFT, Window

#: Robust z a window must pass to count as off, and below which it counts as quiet again.
Z_ON = 4.0
Z_OFF = 2.0
#: Off windows in a row that open a degradation (and quiet ones that close it).
CONFIRM = 3
#: Healthy values needed before anything can be flagged.
MIN_BASELINE = 5
#: Healthy values remembered (a moving steady state for long runs).
BASELINE_WINDOWS = 120
#: Requests a rolling span should hold for a median; spans are 2..6 windows.
SPAN_REQUESTS = 12


@dataclass(frozen=True)
class MetricRule:
    """One watched metric: where it comes from, which way is worse, its minimum effect."""

    name: str
    worse: str  # "up" or "down"
    min_effect: float  # relative (0.25 = 25%), or absolute for rates of errors
    relative: bool = True


RULES: tuple[MetricRule, ...] = (
    MetricRule("latency_p50", "up", 0.25),
    MetricRule("latency_p90", "up", 0.30),
    MetricRule("ttft_p50", "up", 0.30),
    MetricRule("itl_p50", "up", 0.30),
    MetricRule("error_rate", "up", 0.05, relative=False),
    MetricRule("throughput", "down", 0.20),
)
_HIST = {"latency_p50": (LATENCY, 50.0), "latency_p90": (LATENCY, 90.0),
         "ttft_p50": (TTFT, 50.0), "itl_p50": (ITL, 50.0)}  # fmt: skip


@dataclass(frozen=True)
class Degradation:
    """An interval where one metric was off its steady state."""

    metric: str
    start_s: float
    end_s: float
    baseline: float
    level: float  # median of the metric inside the interval
    change_pct: float
    flagged_at_s: float  # when the live detector raised it (end of the confirming window)
    ongoing: bool = False  # still off when the run ended


@dataclass(frozen=True)
class WindowStat:
    """What attribution needs of each window, kept small for long runs."""

    start_s: float
    p50_ms: float | None
    sent: int
    answered: int  # completed or dropped


@dataclass
class _Track:
    rule: MetricRule
    healthy: deque[float] = field(default_factory=lambda: deque(maxlen=BASELINE_WINDOWS))
    streak: list[tuple[float, float]] = field(default_factory=list)  # (start_s, value) off
    quiet: list[float] = field(default_factory=list)  # start_s of quiet windows while open
    inside: list[float] = field(default_factory=list)
    open_since: float | None = None
    open_base: float = 0.0
    flagged_at: float = 0.0

    def baseline(self) -> tuple[float, float] | None:
        if len(self.healthy) < MIN_BASELINE:
            return None
        values = sorted(self.healthy)
        med = _median(values)
        mad = _median(sorted(abs(v - med) for v in values))
        # A steady series has MAD ~0; a floor of 5% of the level (or 1 point of error rate)
        # keeps one odd window from being "infinitely" off.
        floor = 0.05 * abs(med) if self.rule.relative else 0.01
        return med, max(1.4826 * mad, floor, 1e-9)

    def interval(self, end_s: float, *, ongoing: bool) -> Degradation:
        """The open degradation as if it ended at `end_s`."""
        assert self.open_since is not None
        return Degradation(
            self.rule.name,
            self.open_since,
            end_s,
            self.open_base,
            _median(sorted(self.inside)),
            _change_pct(self, self.open_base, self.inside),
            self.flagged_at,
            ongoing,
        )

    def effect(self, value: float, med: float) -> float:
        delta = value - med if self.rule.worse == "up" else med - value
        if not self.rule.relative:
            return delta
        return delta / abs(med) if med else (math.inf if delta > 0 else 0.0)


class OnlineDetector:
    """Feed windows in order with `add`; `finish` closes what is still open."""

    def __init__(self) -> None:
        self._tracks = {rule.name: _Track(rule) for rule in RULES}
        self._recent: deque[_Seen] = deque(maxlen=6)
        self._done: list[Degradation] = []
        self._last_end = 0.0
        self.stats: list[WindowStat] = []

    def add(self, window: Window) -> list[Degradation]:
        """Take one window; returns the degradations confirmed by it (newly flagged)."""
        if window.warmup:
            return []
        seen = _Seen.of(window)
        self._recent.append(seen)
        latency = seen.buckets.get(LATENCY)
        self.stats.append(
            WindowStat(
                window.start_s,
                _percentile([latency], 50.0) if latency else None,
                window.sent,
                window.completed + window.dropped,
            )
        )
        self._last_end = window.start_s + window.duration_s
        flagged = []
        for name, value in self._values().items():
            opened = self._step(self._tracks[name], window.start_s, value)
            if opened is not None:
                flagged.append(opened)
        return flagged

    def finish(self) -> list[Degradation]:
        """Every degradation of the run, closed ones and those still open at its end."""
        out = list(self._done)
        for track in self._tracks.values():
            if track.open_since is not None:
                out.append(self._close(track, self._last_end, ongoing=True))
        return sorted(out, key=lambda d: (d.start_s, d.metric))

    @property
    def closed(self) -> list[Degradation]:
        """The degradations that have ended so far."""
        return list(self._done)

    def open_now(self) -> list[Degradation]:
        """The degradations open at the last window, each as if it ended there (the live
        view attributes them while they last); the detector's state is not touched."""
        out = []
        for track in self._tracks.values():
            if track.open_since is None:
                continue
            out.append(track.interval(self._last_end, ongoing=True))
        return sorted(out, key=lambda d: (d.start_s, d.metric))

    def _values(self) -> dict[str, float]:
        windows = list(self._recent)
        values: dict[str, float] = {}
        for name, (family, pct) in _HIST.items():
            value = _rolling_percentile(windows, family, pct)
            if value is not None:
                values[name] = value
        span = _span(windows)
        done = sum(w.completed for w in span)
        if done:
            values["error_rate"] = sum(w.errors for w in span) / done
        duration = sum(w.duration_s for w in span)
        if duration and sum(w.sent for w in span):
            values["throughput"] = sum(w.ok for w in span) / duration
        return values

    def _step(self, track: _Track, start_s: float, value: float) -> Degradation | None:
        base = track.baseline()
        if base is None:
            track.healthy.append(value)
            return None
        med, scale = base
        # While open, "quiet again" is judged against the level before the degradation.
        med_used = med if track.open_since is None else track.open_base
        z = track.effect(value, med_used) * (abs(med_used) if track.rule.relative else 1) / scale
        off = z > Z_ON and track.effect(value, med_used) >= track.rule.min_effect
        if track.open_since is None:
            if off:
                track.streak.append((start_s, value))
                if len(track.streak) >= CONFIRM:
                    track.open_since = track.streak[0][0]
                    track.open_base = med
                    track.inside = [v for _, v in track.streak]
                    track.flagged_at = start_s + 1.0
                    track.streak = []
                    return Degradation(
                        track.rule.name,
                        track.open_since,
                        track.flagged_at,
                        med,
                        _median(sorted(track.inside)),
                        _change_pct(track, med, track.inside),
                        track.flagged_at,
                        ongoing=True,
                    )
                return None
            # An isolated off window joins neither the steady state nor a degradation.
            if track.streak:
                for _, v in track.streak:
                    track.healthy.append(v)
                track.streak = []
            track.healthy.append(value)
            return None
        quiet = z < Z_OFF
        if quiet:
            track.quiet.append(start_s)
            if len(track.quiet) >= CONFIRM:
                self._done.append(self._close(track, track.quiet[0]))
                return None
        else:
            track.quiet = []
        track.inside.append(value)
        return None

    def _close(self, track: _Track, end_s: float, *, ongoing: bool = False) -> Degradation:
        done = track.interval(end_s, ongoing=ongoing)
        track.open_since = None
        track.inside = []
        track.quiet = []
        return done


def detect(windows: Iterable[Window]) -> list[Degradation]:
    """Replay the live detector over a stored run's windows."""
    detector = OnlineDetector()
    for w in windows:
        detector.add(w)
    return detector.finish()


@dataclass(frozen=True)
class _Seen:
    """A window as the detector keeps it: counts and its histograms' sparse buckets."""

    start_s: float
    duration_s: float
    sent: int
    completed: int
    ok: int
    errors: int
    buckets: dict[str, list[tuple[float, int]]]

    @classmethod
    def of(cls, w: Window) -> _Seen:
        buckets = {
            family: h.buckets()
            for family in {family for family, _ in _HIST.values()}
            if (h := w.histograms.get(family)) is not None and h.count
        }
        return cls(w.start_s, w.duration_s, w.sent, w.completed, w.ok, w.errors, buckets)


def _span(windows: list[_Seen]) -> list[_Seen]:
    """The newest windows holding about SPAN_REQUESTS requests (2 to 6 of them)."""
    span: list[_Seen] = []
    count = 0
    for w in reversed(windows):
        span.append(w)
        count += w.completed
        if len(span) >= 2 and count >= SPAN_REQUESTS:
            break
    return span


def _rolling_percentile(windows: list[_Seen], family: str, pct: float) -> float | None:
    return _percentile([w.buckets[family] for w in _span(windows) if family in w.buckets], pct)


def _percentile(parts: list[list[tuple[float, int]]], pct: float) -> float | None:
    merged: dict[float, int] = {}
    for buckets in parts:
        for value, n in buckets:
            merged[value] = merged.get(value, 0) + n
    if not merged:
        return None
    total = sum(merged.values())
    rank = max(int(pct * total / 100 + 0.5), 1)
    running = 0
    for value in sorted(merged):
        running += merged[value]
        if running >= rank:
            return value
    return None


def _change_pct(track: _Track, base: float, inside: list[float]) -> float:
    """Relative change in percent; for an error rate, the change in percentage points."""
    level = _median(sorted(inside)) if inside else base
    if not track.rule.relative or base == 0:
        return (level - base) * 100.0 if not track.rule.relative else 0.0
    return (level - base) / abs(base) * 100.0


def _median(values: list[float]) -> float:
    if not values:
        return 0.0
    mid = len(values) // 2
    return values[mid] if len(values) % 2 else (values[mid - 1] + values[mid]) / 2
