"""Whether a run's requests were answered well enough for its numbers to mean anything.

A run in which the target stopped answering, or in which most requests failed, measured
a broken service: its latency percentiles describe the few requests that got through (or
how fast a refused connection is), and a CI job must not pass it. Such a run is stored as
`failed` with the reason, and exits 4.

Two rules, both on the measured (non-warm-up) windows:

- **The target stopped answering**: from some second to the end of the run, every
  request that completed failed to connect, for at least `GONE_MIN_S` seconds with at
  least `GONE_MIN_REQUESTS` requests. A server that comes back is not gone (the error
  rate rule may still apply); a few refused connections during a restart are not either.
- **Too many errors**: more than `max_error_rate` of the completed requests failed
  (`--max-error-rate`, 0.5 by default: a run where most requests fail has no latency
  worth comparing; 0 turns the rule off).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the command line reads the default without loading hdrh
    from tracker.records.window import Window

#: Seconds of nothing but refused connections, up to the end, that mean the target is
#: gone: more than a restart's brief refusal, less than any run worth judging.
GONE_MIN_S = 3.0
GONE_MIN_REQUESTS = 3
CONNECT = "connect"
DEFAULT_MAX_ERROR_RATE = 0.5


@dataclass(frozen=True)
class _Second:
    start_s: float
    completed: int
    errors: int
    connect_errors: int


class RunHealth:
    """Counts each measured window's outcomes (a few ints per second) and judges the run."""

    def __init__(self) -> None:
        self._seconds: list[_Second] = []
        self._errors_by_class: dict[str, int] = {}

    def add(self, window: Window) -> None:
        if window.warmup:
            return
        self._seconds.append(
            _Second(
                window.start_s,
                window.completed,
                window.errors,
                window.errors_by_class.get(CONNECT, 0),
            )
        )
        for name, n in window.errors_by_class.items():
            self._errors_by_class[name] = self._errors_by_class.get(name, 0) + n

    def gone_at_s(self) -> float | None:
        """When the target stopped answering for good, or None."""
        seconds = sorted(self._seconds, key=lambda s: s.start_s)
        gone_at: float | None = None
        requests = 0
        for second in reversed(seconds):
            if second.completed == 0:
                continue  # nothing came back in that second: no evidence either way
            if second.connect_errors < second.completed:
                break
            gone_at, requests = second.start_s, requests + second.completed
        if gone_at is None or requests < GONE_MIN_REQUESTS:
            return None
        end_s = max(s.start_s for s in seconds) + 1.0
        return gone_at if end_s - gone_at >= GONE_MIN_S else None

    def failure(self, max_error_rate: float) -> str | None:
        """Why the run failed, or None when its requests were answered well enough."""
        gone = self.gone_at_s()
        if gone is not None:
            return (
                f"the target stopped answering at {gone:.0f}s: every request from then on "
                "failed to connect (is the server still running?)"
            )
        completed = sum(s.completed for s in self._seconds)
        errors = sum(s.errors for s in self._seconds)
        if max_error_rate <= 0 or completed == 0 or errors / completed <= max_error_rate:
            return None
        common, count = max(self._errors_by_class.items(), key=lambda kv: kv[1])
        return (
            f"{errors / completed:.0%} of {completed} requests failed (mostly {common}: "
            f"{count}), above --max-error-rate {max_error_rate:g}; "
            "pass --max-error-rate 0 to keep such a run"
        )
