"""Plain progress lines, one per second of load, for terminals without the TUI and for CI logs.

Used by `tracker.runner` through the `ProgressView` interface, which the Textual live
view (`tracker.tui.live.LiveFeed`) implements too.
"""

from __future__ import annotations

import sys
from typing import Protocol, TextIO

from probes.stacks_profile import FunctionTime
from tracker.analysis.attribute import headline
from tracker.metrics import LATENCY, TTFT, Window
from tracker.store.records import FindingRecord
from tracker.units import format_ms


class StacksView(Protocol):
    """Takes the target's top functions, per stack window (the live screen's stack panel)."""

    def stacks(self, end_s: float, duration_s: float, top: list[FunctionTime]) -> None: ...


class ProgressView(StacksView, Protocol):
    """What the runner tells the live view, from the run's threads: each closed window with
    the latest probe readings, notes, each degradation's finding as it is flagged (and
    again as its attribution firms up), and the target's top functions per stack window."""

    def window(self, window: Window, probes: dict[str, float]) -> None: ...

    def note(self, message: str) -> None: ...

    def finding(self, finding: FindingRecord) -> None: ...


class ProgressPrinter:
    """Writes `[ 12s/40s] 4 req/s ok 4 err 0 p50 812ms p99 1.2s ...` lines."""

    def __init__(self, total_s: float, stream: TextIO | None = None) -> None:
        self._total = total_s
        self._stream = stream if stream is not None else sys.stderr
        self._causes: dict[float | None, str] = {}

    def window(self, window: Window, probes: dict[str, float]) -> None:
        end = window.start_s + window.duration_s
        parts = [f"[{end:4.0f}s/{self._total:.0f}s]"]
        parts.append(f"sent {window.sent:>4}")
        parts.append(f"ok {window.ok:>4}")
        parts.append(f"err {window.errors:>3}")
        latency = window.histograms.get(LATENCY)
        if latency is not None and latency.count:
            parts.append(f"p50 {format_ms(latency.percentile_ms(50)):>6}")
            parts.append(f"p99 {format_ms(latency.percentile_ms(99)):>6}")
        ttft = window.histograms.get(TTFT)
        if ttft is not None and ttft.count:
            parts.append(f"ttft {format_ms(ttft.percentile_ms(50)):>6}")
        if "cpu.process_pct" in probes:
            parts.append(f"| cpu {probes['cpu.process_pct']:5.0f}%")
        if "cpu.ctx_switches_involuntary_per_s" in probes:
            parts.append(f"invcs {probes['cpu.ctx_switches_involuntary_per_s']:6.0f}/s")
        if "mem.rss_mb" in probes:
            parts.append(f"rss {probes['mem.rss_mb']:5.0f}MB")
        if "disk.write_iops" in probes:
            parts.append(f"wr {probes['disk.write_iops']:5.0f}iops")
        if window.warmup:
            parts.append("(warm-up)")
        elif end > self._total + 0.5:
            parts.append("(draining in-flight requests)")
        self._print(" ".join(parts))

    def note(self, message: str) -> None:
        self._print(f"  » {message}")

    def finding(self, finding: FindingRecord) -> None:
        # Re-attributed every few seconds while it lasts: a line only when the cause changes.
        key = finding.flagged_at_s
        if self._causes.get(key) == finding.cause:
            return
        self._causes[key] = finding.cause
        self.note(f"degradation: {headline(finding)}")

    def stacks(self, end_s: float, duration_s: float, top: list[FunctionTime]) -> None:
        """Not printed: a line per second is all a log takes (`show` lists them)."""

    def _print(self, line: str) -> None:
        print(line, file=self._stream, flush=True)
