"""Plain progress lines, one per second of load, for terminals without the TUI and for CI logs.

Used by `tracker.recording.runner` through the `ProgressView` interface, which the live screen's
feed (`tracker.tui.screen_link.ScreenFeed`) implements too.
"""

from __future__ import annotations

import queue
import sys
import threading
from collections.abc import Callable
from typing import Protocol, TextIO

from probes.stacks.profile import FunctionTime
from tracker.analysis.attribute import headline
from tracker.records import FindingRecord
from tracker.records.window import LATENCY, TTFT, Window
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
    """Writes `[ 12s/40s] 4 req/s ok 4 err 0 p50 812ms p99 1.2s ...` lines.

    `window` is called on the driver's event loop: it only queues the window. A thread of
    its own computes the percentiles (~1 ms each with hdrh) and writes, so neither the
    arithmetic nor a slow reader of stderr (a full pipe to a CI log) delays a send. `close`
    writes what is queued and stops the thread.
    """

    def __init__(self, total_s: float, stream: TextIO | None = None) -> None:
        self._total = total_s
        self._stream = stream if stream is not None else sys.stderr
        self._causes: dict[float | None, str] = {}
        self._jobs: queue.SimpleQueue[Callable[[], str | None] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._write, name="perfsleuth-progress")
        self._thread.daemon = True  # never keeps a finished command alive
        self._thread.start()

    def window(self, window: Window, probes: dict[str, float]) -> None:
        self._jobs.put(lambda: self._window_line(window, probes))

    def note(self, message: str) -> None:
        self._jobs.put(lambda: f"  » {message}")

    def finding(self, finding: FindingRecord) -> None:
        self._jobs.put(lambda: self._finding_line(finding))

    def stacks(self, end_s: float, duration_s: float, top: list[FunctionTime]) -> None:
        """Not printed: a line per second is all a log takes (`show` lists them)."""

    def close(self, timeout_s: float = 5.0) -> None:
        """Write every queued line, then stop (before the command prints its summary)."""
        self._jobs.put(None)
        self._thread.join(timeout_s)

    def _write(self) -> None:
        silent = False
        while (job := self._jobs.get()) is not None:
            line = job()
            if line is None or silent:
                continue
            try:
                print(line, file=self._stream, flush=True)
            except OSError:
                # The terminal hung up (EIO) or the pipe's reader left (EPIPE): the run
                # goes on and is stored; its lines have nowhere to go.
                silent = True

    def _finding_line(self, finding: FindingRecord) -> str | None:
        # Re-attributed every few seconds while it lasts: a line only when the cause changes.
        key = finding.flagged_at_s
        if self._causes.get(key) == finding.cause:
            return None
        self._causes[key] = finding.cause
        return f"  » degradation: {headline(finding)}"

    def _window_line(self, window: Window, probes: dict[str, float]) -> str:
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
        return " ".join(parts)
