"""Deterministic windows, probe readings, findings and stack windows for the live screen's
tests (pilot and snapshots): what a run's threads would hand it."""

from __future__ import annotations

import math

from probes.stacks.profile import FunctionTime
from tracker.records import FindingRecord
from tracker.records.window import LATENCY, SCHEDULE_LAG, TTFT, Histogram, Window
from tracker.tui.live import LiveFeed

PROBES = {"cpu.ctx_switches_involuntary_per_s": 120.0, "mem.rss_mb": 180.0}


def window(i: int, latency_ms: float, lag_ms: float = 2.0, ttft_ms: float = 60.0) -> Window:
    w = Window(index=i, start_s=float(i), sent=10, ok=10, output_tokens=320)
    for name, value in ((LATENCY, latency_ms), (TTFT, ttft_ms), (SCHEDULE_LAG, lag_ms)):
        h = Histogram()
        h.record_ms(value)
        w.histograms[name] = h
    return w


def finding(cause: str, confidence: float, *, start_s: float = 5.0) -> FindingRecord:
    return FindingRecord(
        start_s=start_s, end_s=start_s + 5.0, metric="latency_p50", change_pct=100.0,
        cause=cause, causes=[{"cause": cause, "score": confidence}], confidence=confidence,
        evidence=[
            f"latency p50 +100% from {start_s:.0f} s (800 -> 1600)",
            "involuntary switches 900/s vs 40/s before (22x); r=+0.91 with latency "
            "[cpu.ctx_switches_involuntary_per_s]",
        ],
        advice="CPU contention: threads wait for a CPU.", flagged_at_s=start_s + 3.0,
    )  # fmt: skip


def demo_run(feed: LiveFeed, seconds: int = 30, fault_at: int = 20) -> None:
    """A demo-like run: steady, then a CPU fault; its finding and the target's top functions."""
    for i in range(seconds):
        on = i >= fault_at
        latency = 800.0 + 40.0 * math.sin(i) + (900.0 if on else 0.0)
        probes = {
            "cpu.ctx_switches_involuntary_per_s": 40.0 + (900.0 if on else 5.0 * (i % 3)),
            "cpu.run_delay_ms_per_s": 5.0 + (400.0 if on else 0.0),
            "cpu.psi_some_pct": 3.0 + (40.0 if on else 0.0),
            "gc.pause_ms_per_s": 1.2,
            "mem.rss_mb": 180.0 + i,
            "disk.write_iops": 10.0,
            "disk.await_ms": 0.4,
        }
        feed.window(window(i, latency, ttft_ms=60.0 + (80.0 if on else 0.0)), probes)
    feed.finding(finding("contention", 0.84, start_s=float(fault_at)))
    feed.stacks(
        float(seconds),
        1.0,
        [
            FunctionTime("burn (llm_server.py)", 60, 60, 60.0, 60.0),
            FunctionTime("_decode (llm_sim/model.py)", 20, 30, 20.0, 30.0),
        ],
    )
    feed.note("fault 'cpu' switched on at 20s")
