"""What the live screen shows, built from the run's windows, probe readings, findings and
stack windows.

Plain data, no Textual: the run's threads hand each closed window (and the latest probe
readings) to the live view, which folds it in here; the widgets only read this. That keeps
the folding testable without a terminal and the screen's work to drawing.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from probes.stacks.profile import FunctionTime
from tracker.analysis.attribute import evidence_metrics, headline
from tracker.records import FindingRecord
from tracker.records.window import ITL, LATENCY, SCHEDULE_LAG, TASK_QUEUE, TASK_SUBMIT, TTFT, Window

#: Seconds of history the charts keep (the widest chart is narrower than this).
HISTORY_S = 600

Point = tuple[float, float]  # (seconds into the run, value)


@dataclass(frozen=True)
class ProbePanel:
    """One probe chart: the first of `metrics` the run has is shown."""

    label: str
    metrics: tuple[str, ...]
    unit: str


#: The probe charts, in screen order (the issue's list: contention, memory, I/O, GPU).
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

#: The service chart a detector metric belongs to (what a finding highlights).
SERVICE_CHART_OF = {
    "latency_p50": "latency",
    "latency_p90": "latency",
    "ttft_p50": "ttft",
    "itl_p50": "itl",
    "throughput": "throughput",
    "error_rate": "throughput",
}


def _series() -> deque[Point]:
    return deque(maxlen=HISTORY_S)


@dataclass(frozen=True)
class StackView:
    """The target's top functions in the newest stack window."""

    end_s: float
    duration_s: float
    top: list[FunctionTime]


#: The percentile series the screen charts: (series, histogram, percentile).
_PERCENTILES = (
    ("latency_p50", LATENCY, 50.0),
    ("latency_p99", LATENCY, 99.0),
    ("ttft_p50", TTFT, 50.0),
    ("itl_p50", ITL, 50.0),
    ("task_queue_p50", TASK_QUEUE, 50.0),
    ("task_submit_p50", TASK_SUBMIT, 50.0),
)


@dataclass(frozen=True)
class WindowPoints:
    """What the screen keeps of a closed window: a few numbers instead of its histograms.

    Worked out on the run's side: sending these to the screen's process costs the run a
    few percentiles (~0.01 ms each), not encoding every histogram of the window (~0.5 ms
    of GIL a second in the run's process, right as the second's first send falls due),
    and spares the screen decoding them.
    """

    end_s: float
    warmup: bool
    values: dict[str, float]  # series name -> value at end_s
    lag_p99_ms: float | None

    @classmethod
    def of(cls, window: Window) -> WindowPoints:
        rate = 1.0 / window.duration_s if window.duration_s > 0 else 0.0
        values = {
            "throughput": window.ok * rate,
            "errors": window.errors * rate,
            "tokens_per_s": window.output_tokens * rate,
        }
        for name, hist, pct in _PERCENTILES:
            h = window.histograms.get(hist)
            if h is not None and h.count:
                values[name] = h.percentile_ms(pct)
        lag = window.histograms.get(SCHEDULE_LAG)
        return cls(
            end_s=window.start_s + window.duration_s,
            warmup=window.warmup,
            values=values,
            lag_p99_ms=lag.percentile_ms(99.0) if lag is not None and lag.count else None,
        )


@dataclass
class LiveState:
    """The live view's model: per-second series, the latest probe values and findings."""

    scenario: str
    target: str
    total_s: float  # 0: until stopped (attach without --duration)
    load: str  # e.g. "open 40 req/s", "closed 16 users", "attach (no load)"
    elapsed_s: float = 0.0
    warmup: bool = True
    draining: bool = False
    series: dict[str, deque[Point]] = field(default_factory=dict)
    probes: dict[str, deque[Point]] = field(default_factory=dict)
    #: One entry per event, keyed by when it was first flagged: re-attributions replace it.
    found: dict[float, FindingRecord] = field(default_factory=dict)
    notes: deque[str] = field(default_factory=lambda: deque(maxlen=50))
    schedule_lag_p99_ms: float | None = None
    stacks: StackView | None = None

    def add_window(self, window: Window, probes: dict[str, float]) -> None:
        """Fold in one closed window and the probe readings current at its close."""
        self.add_points(WindowPoints.of(window), probes)

    def add_points(self, points: WindowPoints, probes: dict[str, float]) -> None:
        """Fold in what the screen keeps of one closed window, and the probe readings."""
        end = points.end_s
        self.elapsed_s = end
        self.warmup = points.warmup
        self.draining = self.elapsed_s > self.total_s + 0.5
        for name, value in points.values.items():
            self._push(name, end, value)
        if points.lag_p99_ms is not None:
            self.schedule_lag_p99_ms = points.lag_p99_ms
        self.add_probes(end, probes)

    def add_probes(self, t_s: float, probes: dict[str, float]) -> None:
        """Probe readings at `t_s` (with a window, or once a second when attached)."""
        if not self.series:  # attached: no windows, the probes keep the clock
            self.elapsed_s = t_s
            self.warmup = False
        for metric, value in probes.items():
            self.probes.setdefault(metric, _series()).append((t_s, value))

    def add_finding(self, finding: FindingRecord) -> bool:
        """Keep a finding (or its newer attribution); True when the event is new."""
        key = finding.flagged_at_s if finding.flagged_at_s is not None else finding.start_s
        new = key not in self.found
        self.found[key] = finding
        return new

    @property
    def findings(self) -> list[FindingRecord]:
        return list(self.found.values())

    def add_note(self, text: str) -> None:
        self.notes.append(text)

    def add_stacks(self, end_s: float, duration_s: float, top: list[FunctionTime]) -> None:
        self.stacks = StackView(end_s, duration_s, top)

    def latest(self, name: str) -> float | None:
        s = self.series.get(name) or self.probes.get(name)
        return s[-1][1] if s else None

    def panel_metric(self, panel: ProbePanel) -> str | None:
        """The metric a probe panel shows in this run, if the run has one."""
        return next((m for m in panel.metrics if m in self.probes), None)

    def is_llm(self) -> bool:
        return "ttft_p50" in self.series

    def has_tasks(self) -> bool:
        """An asynchronous task API: latency is each task's whole wait."""
        return "task_submit_p50" in self.series

    def flagged_charts(self) -> set[str]:
        """Charts the findings touch: the service chart of each degraded metric, and the
        probe panels (by label) whose metrics are evidence."""
        out: set[str] = set()
        for f in self.found.values():
            out.add(SERVICE_CHART_OF.get(f.metric, f.metric))
            named = set(evidence_metrics(f))
            out.update(p.label for p in PROBE_PANELS if named.intersection(p.metrics))
        return out

    @staticmethod
    def finding_line(f: FindingRecord) -> str:
        return headline(f)

    def _push(self, name: str, t_s: float, value: float) -> None:
        self.series.setdefault(name, _series()).append((t_s, value))
