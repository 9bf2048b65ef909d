"""Which resource a regression between two runs points at, from the probes' deltas.

Used by `tracker.analysis.compare`. One table says which probe metric is evidence of
which cause (contention, memory management, I/O), how much it weighs and the smallest
absolute rise that counts, so the rules read in one place (docs/regressions.md explains
them). A probe metric is evidence when it rose significantly (its comparison says
`regressed`) and by more than its floor; a cause's score grows with the size of the rises
(log2 of the ratio, weighted) and saturates towards 1.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from probes import family_of
from tracker.units import format_value


@dataclass(frozen=True)
class Evidence:
    """A probe family that speaks for a cause when it rises."""

    cause: str
    weight: float  # 1 = direct evidence; 0.5 = supporting evidence
    floor: float  # the smallest absolute rise, in the metric's unit, that counts
    label: str


#: Probe family -> evidence. Families with `<N>`, `<PID>`, `<DEV>` cover every core,
#: process and disk (see `probes.family_of`).
EVIDENCE: dict[str, Evidence] = {
    "cpu.ctx_switches_involuntary_per_s": Evidence(
        "contention", 1.0, 50.0, "involuntary context switches"
    ),
    "cpu.run_delay_ms_per_s": Evidence("contention", 1.0, 5.0, "scheduler run delay"),
    "cpu.psi_some_pct": Evidence("contention", 1.0, 2.0, "CPU pressure (PSI some)"),
    "cpu.run_queue": Evidence("contention", 0.5, 1.0, "run queue"),
    "cpu.host_pct": Evidence("contention", 0.5, 10.0, "host CPU"),
    "cpu.process_pct": Evidence("contention", 0.5, 10.0, "target CPU"),
    "cpu.process_max_pct": Evidence("contention", 0.5, 10.0, "busiest target process CPU"),
    "cpu.core<N>_pct": Evidence("contention", 0.25, 10.0, "a core's CPU"),
    "py.gil_held_pct": Evidence("contention", 0.5, 10.0, "GIL held"),
    "gpu.util_pct": Evidence("contention", 0.5, 10.0, "GPU utilization"),
    "gc.pause_ms_per_s": Evidence("memory", 1.0, 5.0, "GC pause time"),
    "gc.pause_ms_per_s_estimate": Evidence("memory", 1.0, 5.0, "GC pause time (estimated)"),
    "gc.pause_max_ms": Evidence("memory", 0.5, 5.0, "longest GC pause"),
    "gc.collections_per_s": Evidence("memory", 0.5, 1.0, "GC collections"),
    "gc.gen2_collections_per_s": Evidence("memory", 0.5, 0.2, "full (gen2) collections"),
    "mem.major_faults_per_s": Evidence("memory", 1.0, 5.0, "major page faults"),
    "mem.swap_mb": Evidence("memory", 1.0, 10.0, "swap used by the target"),
    "mem.psi_some_pct": Evidence("memory", 1.0, 2.0, "memory pressure (PSI some)"),
    "mem.rss_mb": Evidence("memory", 0.5, 50.0, "target RSS"),
    "disk.await_ms": Evidence("io", 1.0, 1.0, "disk await"),
    "disk.psi_some_pct": Evidence("io", 1.0, 2.0, "I/O pressure (PSI some)"),
    "disk.util_pct": Evidence("io", 0.5, 10.0, "disk utilization"),
    "disk.write_iops": Evidence("io", 0.5, 20.0, "disk write IOPS"),
    "disk.read_iops": Evidence("io", 0.5, 20.0, "disk read IOPS"),
    "disk.write_mb_per_s": Evidence("io", 0.5, 1.0, "disk writes"),
    "disk.<DEV>_await_ms": Evidence("io", 0.5, 1.0, "a disk's await"),
    "proc.io_write_mb_per_s": Evidence("io", 0.5, 1.0, "target writes"),
    "proc.io_write_syscalls_per_s": Evidence("io", 0.5, 50.0, "target write syscalls"),
}

CAUSES = ("contention", "memory", "io")


def evidence_for(metric: str) -> Evidence | None:
    """The evidence rule of a probe metric name (without the `probes.` prefix)."""
    return EVIDENCE.get(family_of(metric) or metric)


def rank_causes(probe_deltas: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Ranked causes from probe comparisons: `[{cause, score, evidence}]`, best first.

    Each delta is a metric comparison (`name` "probes.<metric>", `baseline`, `candidate`,
    `verdict`). Only rises that the comparison called `regressed` count.
    """
    weights: dict[str, float] = {}
    lines: dict[str, list[tuple[float, str]]] = {}
    for delta in probe_deltas:
        metric = str(delta["name"]).removeprefix("probes.")
        rule = evidence_for(metric)
        base, cand = delta.get("baseline"), delta.get("candidate")
        if rule is None or delta.get("verdict") != "regressed" or base is None or cand is None:
            continue
        if cand - base < rule.floor:
            continue
        ratio = cand / base if base > 0 else math.inf
        strength = rule.weight * min(math.log2(ratio) if base > 0 else 4.0, 4.0)
        weights[rule.cause] = weights.get(rule.cause, 0.0) + strength
        times = f"{ratio:.1f}x" if math.isfinite(ratio) else "from 0"
        unit = str(delta.get("unit") or "")
        now, before = format_value(cand, unit), format_value(base, unit)
        lines.setdefault(rule.cause, []).append(
            (strength, f"{rule.label} {now} vs {before} ({times}) [{metric}]")
        )
    ranked = sorted(weights.items(), key=lambda kv: -kv[1])
    return [
        {
            "cause": cause,
            # Two doublings of direct evidence reach ~0.86; one weak hint stays near 0.2.
            "score": round(1.0 - math.exp(-weight), 2),
            "evidence": [text for _, text in sorted(lines[cause], key=lambda x: -x[0])],
        }
        for cause, weight in ranked
    ]
