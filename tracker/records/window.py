"""HDR-histogram windows and percentile summaries.

The driver fills one `Window` per second of the run; the store keeps each window's
histograms encoded, so any time range of any run can be re-summarised exactly by
merging windows (`merge_windows`). Values are recorded in microseconds and reported
in milliseconds.
"""

from __future__ import annotations

import weakref
from bisect import bisect_left
from collections.abc import Iterable
from dataclasses import dataclass, field
from itertools import accumulate
from typing import Any

from hdrh.histogram import HdrHistogram

# 1 µs .. 1 h at 3 significant digits: 0.1% value precision over any latency we can meet.
_LOWEST_US = 1
_HIGHEST_US = 3_600_000_000
_SIG_FIGS = 3

#: Histogram names a window may hold; all in milliseconds when summarised.
LATENCY = "latency"  # from the intended send time (CO-corrected)
LATENCY_UNCORRECTED = "latency_uncorrected"  # from the actual send time
TTFT = "ttft"
ITL = "itl"
TPOT = "tpot"
SCHEDULE_LAG = "schedule_lag"
LOOP_LAG = "loop_lag"  # the driver's event loop: how late a 50 ms timer fires
INFLIGHT_WAIT = "inflight_wait"  # open model with --max-inflight queue: waiting for a slot
SESSION = "session"  # a whole session, from its intended start to its last response
# Asynchronous tasks (a session step that polls): from the intended submission to the
# response that said done (also recorded as `latency`: what the user waited for) ...
TASK = "task"
TASK_SUBMIT = "task_submit"  # ... the submission request (from its actual send)
TASK_QUEUE = "task_queue"  # ... the queue wait the API reported (submitted -> running)
TASK_POLL = "task_poll"  # ... each status request (from its actual send)
# Window counters of tasks.
TASKS_OK, TASKS_FAILED, TASK_POLLS = "tasks_ok", "tasks_failed", "task_polls"


def per_request(name: str, request: str) -> str:
    """The key of a histogram kept per named request, e.g. `latency|chat`."""
    return f"{name}|{request}"


PERCENTILES: tuple[tuple[str, float], ...] = (
    ("p50", 50.0),
    ("p90", 90.0),
    ("p95", 95.0),
    ("p99", 99.0),
    ("p999", 99.9),
)


# Window counters: responses whose output tokens came from `usage`, or were counted.
TOKENS_FROM_USAGE = "tokens_from_usage"
TOKENS_COUNTED = "tokens_counted"


class Histogram:
    """A latency histogram recorded in microseconds, summarised in milliseconds."""

    __slots__ = ("_h",)

    def __init__(self, hdr: HdrHistogram | None = None) -> None:
        h = hdr if hdr is not None else HdrHistogram(_LOWEST_US, _HIGHEST_US, _SIG_FIGS)
        # hdrh's encoder keeps a strong reference back to its histogram: a cycle that only
        # a full GC frees, so ~190 KB per histogram piled up between collections (+18% RSS
        # over 3 min at 300 req/s in benchmarks/driver_memory.py). A weak back-reference
        # lets a dropped window free its histograms at once.
        encoder = getattr(h, "encoder", None)
        if encoder is not None and getattr(encoder, "histogram", None) is h:
            encoder.histogram = weakref.proxy(h)
        self._h = h

    def record_ms(self, value_ms: float) -> None:
        """Record one value; values out of range are clamped rather than lost."""
        us = round(value_ms * 1000.0)
        self._h.record_value(min(max(us, _LOWEST_US), _HIGHEST_US))

    @property
    def count(self) -> int:
        return int(self._h.get_total_count())

    def merge(self, other: Histogram) -> None:
        """Add every value of `other` to this histogram (exact)."""
        if other.count:
            self._h.add(other._h)

    def summary_ms(self) -> dict[str, float] | None:
        """Percentiles, max and mean in ms, or None when nothing was recorded."""
        if self.count == 0:
            return None
        out = {name: self.percentile_ms(p) for name, p in PERCENTILES}
        out["max"] = self._h.get_max_value() / 1000.0
        out["mean"] = round(self._h.get_mean_value() / 1000.0, 3)
        out["count"] = float(self.count)
        return out

    def percentile_ms(self, percentile: float) -> float:
        """HdrHistogram's value at `percentile`, in ms (0 when nothing was recorded).

        The same value as hdrh's `get_value_at_percentile`, found by a cumulative sum over
        the occupied span of the counts array (in C) instead of hdrh's Python loop from
        bucket 0: ~0.65 ms a call for latencies of ~300 ms, paid five times a second by
        the live screen and the progress line, on threads that share the GIL with the driver.
        """
        h = self._h
        if not self.count:
            return 0.0
        lo = h._counts_index_for(h.get_min_value())
        hi = h._counts_index_for(h.get_max_value())
        cumulative = list(accumulate(h.counts[lo : hi + 1]))
        index = lo + min(bisect_left(cumulative, h.get_target_count_at_percentile(percentile)),
                         hi - lo)  # fmt: skip
        value = h.get_value_from_index(index)
        if percentile:
            return float(h.get_highest_equivalent_value(value)) / 1000.0
        return float(h.get_lowest_equivalent_value(value)) / 1000.0

    def buckets(self) -> list[tuple[float, int]]:
        """The non-empty buckets as (value in ms, count), ascending.

        A bucket's value is its highest equivalent value, the one HdrHistogram reports for
        a percentile landing in it, so percentiles computed from these pairs equal
        `percentile_ms`. Only the occupied span of the counts array is read: latencies
        cover a few thousand of its ~23,500 buckets.
        """
        h = self._h
        if not self.count:
            return []
        lo = h._counts_index_for(h.get_min_value())
        hi = h._counts_index_for(h.get_max_value())
        span = h.counts[lo : hi + 1]
        return [
            (h.get_highest_equivalent_value(h.get_value_from_index(lo + i)) / 1000.0, n)
            for i, n in enumerate(span)
            if n
        ]

    def encode(self) -> str:
        """The HdrHistogram compressed encoding, base64 text (readable by HdrHistogram tools)."""
        raw = self._h.encode()
        return raw.decode("ascii") if isinstance(raw, bytes) else str(raw)

    @classmethod
    def decode(cls, text: str) -> Histogram:
        return cls(HdrHistogram.decode(text.encode("ascii")))


@dataclass
class Window:
    """What happened in one second of a run, keyed by completion time."""

    index: int
    start_s: float
    duration_s: float = 1.0
    sent: int = 0
    completed: int = 0
    ok: int = 0
    errors: int = 0
    dropped: int = 0
    output_tokens: int = 0
    good: int = 0  # successful requests that met every goodput SLO
    errors_by_class: dict[str, int] = field(default_factory=dict)
    by_request: dict[str, dict[str, int]] = field(default_factory=dict)
    counters: dict[str, int] = field(default_factory=dict)  # e.g. sessions_ok, sessions_failed
    histograms: dict[str, Histogram] = field(default_factory=dict)
    warmup: bool = False

    def hist(self, name: str) -> Histogram:
        h = self.histograms.get(name)
        if h is None:
            h = self.histograms[name] = Histogram()
        return h

    def add_error(self, error_class: str) -> None:
        self.errors += 1
        self.errors_by_class[error_class] = self.errors_by_class.get(error_class, 0) + 1

    def bump(self, counter: str, n: int = 1) -> None:
        self.counters[counter] = self.counters.get(counter, 0) + n

    def count_request(self, request: str, *, ok: bool) -> None:
        """Per-name counts, kept when a scenario has several named requests."""
        counts = self.by_request.get(request)
        if counts is None:
            counts = self.by_request[request] = {"ok": 0, "errors": 0}
        counts["ok" if ok else "errors"] += 1

    def encoded_histograms(self) -> dict[str, str]:
        return {name: h.encode() for name, h in self.histograms.items() if h.count}

    def absorb(self, w: Window) -> None:
        """Add `w`'s counts and histograms to this window (exact); durations are left alone."""
        self.sent += w.sent
        self.completed += w.completed
        self.ok += w.ok
        self.errors += w.errors
        self.dropped += w.dropped
        self.output_tokens += w.output_tokens
        self.good += w.good
        for counter, n in w.counters.items():
            self.bump(counter, n)
        for request, counts in w.by_request.items():
            mine = self.by_request.setdefault(request, {"ok": 0, "errors": 0})
            for key, n in counts.items():
                mine[key] = mine.get(key, 0) + n
        for cls, n in w.errors_by_class.items():
            self.errors_by_class[cls] = self.errors_by_class.get(cls, 0) + n
        for name, h in w.histograms.items():
            self.hist(name).merge(h)

    def to_wire(self) -> dict[str, Any]:
        """A picklable, compact form (histograms encoded) for crossing processes."""
        return {
            "index": self.index,
            "start_s": self.start_s,
            "duration_s": self.duration_s,
            "sent": self.sent,
            "completed": self.completed,
            "ok": self.ok,
            "errors": self.errors,
            "dropped": self.dropped,
            "output_tokens": self.output_tokens,
            "good": self.good,
            "errors_by_class": self.errors_by_class,
            "by_request": self.by_request,
            "counters": self.counters,
            "histograms": self.encoded_histograms(),
            "warmup": self.warmup,
        }

    @classmethod
    def from_wire(cls, data: dict[str, Any]) -> Window:
        fields = dict(data)
        encoded: dict[str, str] = fields.pop("histograms")
        window = cls(**fields)
        window.histograms = {name: Histogram.decode(text) for name, text in encoded.items()}
        return window


def merge_windows(windows: Iterable[Window]) -> Window:
    """One window holding the sum of `windows` (histograms merged exactly)."""
    total = Window(index=-1, start_s=0.0, duration_s=0.0)
    first = True
    for w in windows:
        if first:
            total.start_s = w.start_s
            first = False
        total.duration_s = max(total.duration_s, w.start_s + w.duration_s - total.start_s)
        total.absorb(w)
    return total
