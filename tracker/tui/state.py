"""What the live screen shows, built from the run's windows, probe readings and findings.

Plain data, no Textual: the run's thread hands each closed window (and the latest probe
readings) to the live view, which folds it in here; the widgets only read this. That keeps
the folding testable without a terminal and the screen's work to drawing.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from tracker.analysis.attribute import describe_change
from tracker.analysis.detect import Degradation
from tracker.metrics import ITL, LATENCY, SCHEDULE_LAG, TTFT, Window

#: Seconds of history the charts keep (the widest chart is narrower than this).
HISTORY_S = 600


@dataclass(frozen=True)
class ProbePanel:
    """One probe sparkline: the first of `metrics` the run has is shown."""

    label: str
    metrics: tuple[str, ...]
    unit: str


#: The probe sparklines, in screen order (the issue's list: contention, memory, I/O, GPU).
PROBE_PANELS = (
    ProbePanel("invol. switches", ("cpu.ctx_switches_involuntary_per_s",), "/s"),
    ProbePanel("run delay", ("cpu.run_delay_ms_per_s",), "ms/s"),
    ProbePanel("CPU pressure", ("cpu.psi_some_pct", "cpu.run_queue"), "%"),
    ProbePanel("GC pause", ("gc.pause_ms_per_s", "gc.pause_ms_per_s_estimate"), "ms/s"),
    ProbePanel("RSS", ("mem.rss_mb",), "MiB"),
    ProbePanel("disk IOPS", ("disk.write_iops", "disk.read_iops"), "/s"),
    ProbePanel("disk await", ("disk.await_ms",), "ms"),
    ProbePanel("GPU util", ("gpu.util_pct",), "%"),
    ProbePanel("GPU memory", ("gpu.mem_used_mb",), "MiB"),
)


def _series() -> deque[float]:
    return deque(maxlen=HISTORY_S)


@dataclass
class LiveState:
    """The live view's model: per-second series, the latest probe values and findings."""

    scenario: str
    target: str
    total_s: float
    load: str  # e.g. "open 40 req/s", "closed 16 users"
    elapsed_s: float = 0.0
    warmup: bool = True
    draining: bool = False
    series: dict[str, deque[float]] = field(default_factory=dict)
    probes: dict[str, deque[float]] = field(default_factory=dict)
    findings: list[Degradation] = field(default_factory=list)
    notes: deque[str] = field(default_factory=lambda: deque(maxlen=50))
    schedule_lag_p99_ms: float | None = None

    def add_window(self, window: Window, probes: dict[str, float]) -> None:
        """Fold in one closed window and the probe readings current at its close."""
        self.elapsed_s = window.start_s + window.duration_s
        self.warmup = window.warmup
        self.draining = self.elapsed_s > self.total_s + 0.5
        rate = 1.0 / window.duration_s if window.duration_s > 0 else 0.0
        self._push("throughput", window.ok * rate)
        self._push("errors", window.errors * rate)
        self._push("tokens_per_s", window.output_tokens * rate)
        for name, hist, pct in (
            ("latency_p50", LATENCY, 50.0),
            ("latency_p99", LATENCY, 99.0),
            ("ttft_p50", TTFT, 50.0),
            ("itl_p50", ITL, 50.0),
        ):
            h = window.histograms.get(hist)
            if h is not None and h.count:
                self._push(name, h.percentile_ms(pct))
        lag = window.histograms.get(SCHEDULE_LAG)
        if lag is not None and lag.count:
            self.schedule_lag_p99_ms = lag.percentile_ms(99.0)
        for metric, value in probes.items():
            self.probes.setdefault(metric, _series()).append(value)

    def add_degradation(self, d: Degradation) -> None:
        self.findings.append(d)

    def add_note(self, text: str) -> None:
        self.notes.append(text)

    def latest(self, name: str) -> float | None:
        s = self.series.get(name) or self.probes.get(name)
        return s[-1] if s else None

    def panel_metric(self, panel: ProbePanel) -> str | None:
        """The metric a probe panel shows in this run, if the run has one."""
        return next((m for m in panel.metrics if m in self.probes), None)

    def is_llm(self) -> bool:
        return "ttft_p50" in self.series

    def finding_line(self, d: Degradation) -> str:
        return (
            f"{d.metric.replace('_', ' ')} {describe_change(d)} since {d.start_s:.0f}s "
            f"(steady {d.baseline:.4g}, now {d.level:.4g})"
        )

    def _push(self, name: str, value: float) -> None:
        self.series.setdefault(name, _series()).append(value)
