"""Which resource a regression between two runs points at, from the probes' deltas.

Used by `tracker.analysis.compare`. One table says which probe metric is evidence of
which cause (contention, memory management, I/O), how much it weighs and the smallest
absolute rise that counts, so the rules read in one place (docs/regressions.md explains
them). A probe metric is evidence when it rose significantly (its comparison says
`regressed`) and by more than its floor; a cause's score grows with the size of the rises
(log2 of the ratio, weighted) and saturates towards 1. Causes are ordered by
`order_causes`, which also serves attribution within a run.
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
    #: The time ledger the metric belongs to, when it measures time lost to its cause:
    #: "target" (ms/s lost by the target's threads) or "host" (PSI: % of wall time some
    #: task stalled). Rises in one ledger share a unit, so two causes can be weighed
    #: against each other in it: see `tracker.analysis.attribute`.
    stall: str | None = None


#: Probe family -> evidence. Families with `<N>`, `<PID>`, `<DEV>` cover every core,
#: process and disk (see `probes.family_of`).
EVIDENCE: dict[str, Evidence] = {
    "cpu.ctx_switches_involuntary_per_s": Evidence(
        "contention", 1.0, 50.0, "involuntary context switches"
    ),
    "cpu.run_delay_ms_per_s": Evidence(
        "contention", 1.0, 5.0, "scheduler run delay", stall="target"
    ),
    "cpu.psi_some_pct": Evidence("contention", 1.0, 2.0, "CPU pressure (PSI some)", stall="host"),
    "cpu.run_queue": Evidence("contention", 0.5, 1.0, "run queue"),
    "cpu.host_pct": Evidence("contention", 0.5, 10.0, "host CPU"),
    "cpu.process_pct": Evidence("contention", 0.5, 10.0, "target CPU"),
    "cpu.process_max_pct": Evidence("contention", 0.5, 10.0, "busiest target process CPU"),
    "cpu.core<N>_pct": Evidence("contention", 0.25, 10.0, "a core's CPU"),
    "py.gil_held_pct": Evidence("contention", 0.5, 10.0, "GIL held"),
    "gpu.util_pct": Evidence("contention", 0.5, 10.0, "GPU utilization"),
    "gc.pause_ms_per_s": Evidence("memory", 1.0, 5.0, "GC pause time", stall="target"),
    "gc.pause_ms_per_s_estimate": Evidence(
        "memory", 1.0, 5.0, "GC pause time (estimated)", stall="target"
    ),
    "gc.pause_max_ms": Evidence("memory", 0.5, 5.0, "longest GC pause"),
    "gc.collections_per_s": Evidence("memory", 0.5, 1.0, "GC collections"),
    "gc.gen2_collections_per_s": Evidence("memory", 0.5, 0.2, "full (gen2) collections"),
    "mem.major_faults_per_s": Evidence("memory", 1.0, 5.0, "major page faults"),
    "mem.swap_mb": Evidence("memory", 1.0, 10.0, "swap used by the target"),
    "mem.psi_some_pct": Evidence("memory", 1.0, 2.0, "memory pressure (PSI some)", stall="host"),
    "mem.rss_mb": Evidence("memory", 0.5, 50.0, "target RSS"),
    "disk.await_ms": Evidence("io", 1.0, 1.0, "disk await"),
    "disk.psi_some_pct": Evidence("io", 1.0, 2.0, "I/O pressure (PSI some)", stall="host"),
    "disk.util_pct": Evidence("io", 0.5, 10.0, "disk utilization"),
    "disk.write_iops": Evidence("io", 0.5, 20.0, "disk write IOPS"),
    "disk.read_iops": Evidence("io", 0.5, 20.0, "disk read IOPS"),
    "disk.write_mb_per_s": Evidence("io", 0.5, 1.0, "disk writes"),
    "disk.<DEV>_await_ms": Evidence("io", 0.5, 1.0, "a disk's await"),
    "proc.io_write_mb_per_s": Evidence("io", 0.5, 1.0, "target writes"),
    "proc.io_write_syscalls_per_s": Evidence("io", 0.5, 50.0, "target write syscalls"),
}

CAUSES = ("contention", "memory", "io")
#: Score a cause needs to be named rather than `unexplained`.
MIN_SCORE = 0.3


def evidence_for(metric: str) -> Evidence | None:
    """The evidence rule of a probe metric name (without the `probes.` prefix)."""
    return EVIDENCE.get(family_of(metric) or metric)


def rank_causes(probe_deltas: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Ranked causes from probe comparisons: `[{cause, score, evidence}]`, best first.

    Each delta is a metric comparison (`name` "probes.<metric>", `baseline`, `candidate`,
    `verdict`). Only rises that the comparison called `regressed` count.
    """
    weights: dict[str, float] = {}
    stalls: dict[tuple[str, str], float] = {}
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
        if rule.stall is not None:
            key = (rule.stall, rule.cause)
            stalls[key] = max(stalls.get(key, 0.0), cand - base)
        times = f"{ratio:.1f}x" if math.isfinite(ratio) else "from 0"
        unit = str(delta.get("unit") or "")
        now, before = format_value(cand, unit), format_value(base, unit)
        lines.setdefault(rule.cause, []).append(
            (strength, f"{rule.label} {now} vs {before} ({times}) [{metric}]")
        )
    order, note, _ = order_causes(weights, stalls)
    ranked: list[dict[str, Any]] = [
        {
            "cause": cause,
            # Two doublings of direct evidence reach ~0.86; one weak hint stays near 0.2.
            "score": round(1.0 - math.exp(-weights[cause]), 2),
            "evidence": [text for _, text in sorted(lines[cause], key=lambda x: -x[0])],
        }
        for cause in order
    ]
    if note:
        ranked[0]["evidence"].append(note)
    return ranked


def order_causes(
    strengths: dict[str, float], stalls: dict[tuple[str, str], float]
) -> tuple[list[str], str, float | None]:
    """Causes best first; when time accounting changed the order, a note saying so and the
    named cause's share of the lost time.

    By total strength: scores saturate near 1, so two strong causes would tie. But one
    cause's work can raise another's evidence: a collector is CPU work, so heavy GC also
    raises the target's run delay; writers that flood the disk also keep the CPU busy
    copying and flushing. So when the leader and another strong cause both have evidence
    of time lost in the same ledger, the one that lost more time comes first. The target's
    own ledger (GC pauses vs run delay) is asked first, then the host's (pressure stall
    information: CPU vs I/O vs memory).
    """
    order = sorted(strengths, key=lambda c: -strengths[c])
    for ledger in ("target", "host"):
        strong = [
            c for c in order if (ledger, c) in stalls and 1 - math.exp(-strengths[c]) >= MIN_SCORE
        ]
        if len(strong) < 2 or order[0] not in strong:
            continue
        first = max(strong, key=lambda c: stalls[ledger, c])
        second = order[0] if first != order[0] else order[1]
        lost, other = stalls[ledger, first], stalls.get((ledger, second), 0.0)
        share = lost / (lost + other) if lost + other > 0 else None
        if first == order[0]:
            return order, "", None
        order.remove(first)
        order.insert(0, first)
        unit = "ms/s" if ledger == "target" else "points of PSI"
        return (
            order,
            (
                f"{first} lost more time than {second} ({lost:.0f} vs {other:.0f} {unit} more "
                f"than before, {'the target' if ledger == 'target' else 'host-wide'}): "
                f"{second} taken as its consequence"
            ),
            share,
        )
    return order, "", None
