"""The demo's report: the run split at the fault's start, before and after side by side,
and whether perfsleuth's finding names the fault that was injected.

Used by `perfsleuth demo` (`tracker.cli.demo`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from tracker.documents.run_document import probe_section
from tracker.records import SampleRecord
from tracker.records.window import ITL, LATENCY, TTFT, Window, merge_windows


@dataclass(frozen=True)
class Phase:
    """One half of the demo, summarised."""

    label: str
    window: Window
    probes: dict[str, float]


def phases(
    windows: Iterable[Window],
    samples: Iterable[SampleRecord],
    split_s: float,
    labels: tuple[str, str] = ("before fault", "fault on"),
) -> list[Phase]:
    """Split a run at `split_s` (the fault's start) into before and after, warm-up excluded.

    The second after the switch is left out of both: requests in flight then straddle it.
    """
    measured = [w for w in windows if not w.warmup]
    before = [w for w in measured if w.start_s + w.duration_s <= split_s]
    after = [w for w in measured if w.start_s >= split_s + 1]
    sample_list = list(samples)
    return [
        Phase(labels[0], merge_windows(before), _means(s for s in sample_list if s.t_s < split_s)),
        Phase(
            labels[1], merge_windows(after), _means(s for s in sample_list if s.t_s >= split_s + 1)
        ),
    ]


def _means(samples: Iterable[SampleRecord]) -> dict[str, float]:
    return {name: stats["mean"] for name, stats in probe_section(samples).items()}


_PROBE_ROWS = (
    ("server CPU %", "cpu.process_pct"),
    ("involuntary ctx switches/s", "cpu.ctx_switches_involuntary_per_s"),
    ("voluntary ctx switches/s", "cpu.ctx_switches_voluntary_per_s"),
    ("server run delay ms/s", "cpu.run_delay_ms_per_s"),
    ("host run queue", "cpu.run_queue"),
    ("host CPU pressure %", "cpu.psi_some_pct"),
    ("server GC pauses ms/s", "gc.pause_ms_per_s"),
    ("server RSS MB", "mem.rss_mb"),
    # The disk's figure, not the server's /proc/<pid>/io: on kernels with large page-cache
    # folios the latter charges up to 2 MiB per small overwrite (docs/probes.md).
    ("disk write MB/s", "disk.write_mb_per_s"),
    ("disk write IOPS", "disk.write_iops"),
)


def render_phases(parts: list[Phase]) -> str:
    """A before/after table: the slowdown and what the probes saw change."""
    rows: list[tuple[str, list[float | None]]] = []

    def pct(name: str, p: float) -> list[float | None]:
        out: list[float | None] = []
        for part in parts:
            h = part.window.histograms.get(name)
            out.append(h.percentile_ms(p) if h is not None and h.count else None)
        return out

    rows.append(("latency p50 ms", pct(LATENCY, 50)))
    rows.append(("latency p99 ms", pct(LATENCY, 99)))
    rows.append(("TTFT p50 ms", pct(TTFT, 50)))
    rows.append(("ITL p50 ms", pct(ITL, 50)))
    rows.append(
        (
            "throughput req/s",
            [p.window.ok / p.window.duration_s if p.window.duration_s else None for p in parts],
        )
    )
    for label, metric in _PROBE_ROWS:
        values = [p.probes.get(metric) for p in parts]
        if any(v is not None for v in values):
            rows.append((label, values))
    header = f"  {'':<28}" + "".join(f"{p.label:>14}" for p in parts) + f"{'change':>10}"
    lines = [header]
    for label, values in rows:
        cells = "".join(f"{v:>14.1f}" if v is not None else f"{'-':>14}" for v in values)
        change = ""
        first, last = values[0], values[-1]
        if first and last is not None and abs(first) > 1e-9:
            change = f"{(last - first) / first * 100:+.0f}%"
        lines.append(f"  {label:<28}{cells}{change:>10}")
    return "\n".join(lines)


def slowdown_pct(parts: list[Phase]) -> float | None:
    """How much slower the median request got once the fault was on."""
    before = parts[0].window.histograms.get(LATENCY)
    after = parts[-1].window.histograms.get(LATENCY)
    if before is None or after is None or not before.count or not after.count:
        return None
    return (after.percentile_ms(50) / before.percentile_ms(50) - 1.0) * 100.0


#: The cause each of the example server's faults should be attributed to.
EXPECTED_CAUSE = {"cpu": "contention", "gc": "memory", "io": "io"}


def verdict_line(fault: str, findings: list[dict[str, Any]]) -> str:
    """The demo's last word: the fault it injected and the cause perfsleuth found."""
    if not findings:
        found = "perfsleuth found no degradation"
        if fault == "none":
            return f"{found}, as expected: no fault was injected."
        return f"{found}; the injected fault was '{fault}' ({EXPECTED_CAUSE[fault]})."
    top = max(findings, key=lambda f: f["confidence"])
    found = (
        f"perfsleuth found: {top['cause'].upper()} (confidence {top['confidence']:.2f}), "
        f"degraded from {top['start_s']:.0f}s"
    )
    if fault == "none":
        return f"{found}; no fault was injected."
    expected = EXPECTED_CAUSE[fault]
    agrees = "it matches" if top["cause"] == expected else f"expected {expected}"
    return f"{found}; the injected fault was '{fault}' ({expected}): {agrees}."
