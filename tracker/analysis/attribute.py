"""Why a run degraded: each interval from `detect` gets ranked causes, evidence with
numbers, a confidence and a next step.

Used by the runner when a run ends (findings are stored with the run and appear in its
JSON, `show` and the demo). The rules are data: `tracker.analysis.causes.EVIDENCE` says
which probe metric speaks for which cause, with a weight and the smallest rise that counts;
docs/attribution.md explains them.

For one interval, each probe metric's mean inside is compared with the run's steady state
(samples after warm-up and outside every degraded interval). A metric is evidence when it
rose past its floor, by at least 30%, and by more than 3 standard deviations of its steady
samples. Its strength is its weight times log2 of the ratio (capped at 4), scaled by how
well its per-second series follows the degraded metric over the run (Pearson r: a probe
that moves with latency is likelier the cause than one that moved once). A cause's score is
1 - exp(-sum of strengths). With no resource evidence, a growing backlog (requests sent
but not answered) names `overload`; otherwise `unexplained`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from probes import unit_of
from tracker.analysis.causes import evidence_for
from tracker.analysis.detect import Degradation, WindowStat
from tracker.units import format_value

if TYPE_CHECKING:
    from tracker.store import SampleRecord

#: Seconds before an event left out of the steady state.
ONSET_MARGIN_S = 4
#: Score a cause needs to be named rather than `unexplained`.
MIN_SCORE = 0.3
#: Rise, as a ratio, a probe must show to count (besides its floor and 3 sigma).
MIN_RATIO = 1.3
#: Growth of the unanswered queue, as a share of the interval's sends, that means a backlog.
BACKLOG_SHARE = 0.1

ADVICE = {
    "contention": (
        "CPU contention: threads wait for a CPU (involuntary switches, run delay). Run fewer "
        "worker threads/processes than cores, move other CPU-heavy work off the host, or "
        "pin the server to its own cores (taskset, cgroups cpusets)."
    ),
    "memory": (
        "Memory management: collector pauses (or paging) stall requests. For CPython, call "
        "gc.freeze() after start-up and raise the gen0 threshold (gc.set_threshold); for the "
        "JVM size the heap and young generation (or try ZGC); for Go raise GOGC or set "
        "GOMEMLIMIT; keep swap and major faults at zero."
    ),
    "io": (
        "I/O: requests wait on the disk (await, I/O pressure). Move fsync and logging off the "
        "request path (batch or buffer writes, an async writer), or use faster storage."
    ),
    "overload": (
        "Overload: requests queue although no resource shows contention; the server is at "
        "capacity. Lower the offered rate, add replicas, or raise the server's concurrency "
        "(batch size, workers) if it has headroom."
    ),
    "unexplained": (
        "No probe moved with it. Check that the probes watch the right process (--attach), "
        "then the network and the server's own dependencies (databases, other services)."
    ),
}


@dataclass(frozen=True)
class Finding:
    """A degraded interval with its causes, as stored (see FindingRecord)."""

    start_s: float
    end_s: float
    metric: str
    change_pct: float
    cause: str
    causes: list[dict[str, Any]]
    confidence: float
    evidence: list[str]
    advice: str
    flagged_at_s: float


def group(degradations: Sequence[Degradation]) -> list[list[Degradation]]:
    """Overlapping degradations of several metrics are one event."""
    events: list[list[Degradation]] = []
    for d in sorted(degradations, key=lambda d: d.start_s):
        if events and d.start_s <= max(x.end_s for x in events[-1]):
            events[-1].append(d)
        else:
            events.append([d])
    return events


def probe_series(samples: Iterable[SampleRecord]) -> dict[str, dict[int, float]]:
    """Per-second means of the probe metrics that can be evidence, from t = 0 (one pass;
    an hour at 4 Hz keeps ~30 metrics x 3,600 seconds)."""
    sums: dict[str, dict[int, list[float]]] = {}
    for s in samples:
        if s.t_s < 0:
            continue
        second = int(s.t_s)
        for metric, value in s.metrics.items():
            if evidence_for(metric) is None:
                continue
            acc = sums.setdefault(metric, {}).setdefault(second, [0.0, 0.0])
            acc[0] += value
            acc[1] += 1
    return {m: {t: v / n for t, (v, n) in per.items()} for m, per in sums.items()}


def attribute_run(
    degradations: Sequence[Degradation],
    stats: Sequence[WindowStat],
    series: dict[str, dict[int, float]],
    *,
    driver_saturated: bool = False,
) -> list[Finding]:
    """Findings for a run: one per event of overlapping degradations."""
    events = group(degradations)
    spans = [(min(d.start_s for d in e), max(d.end_s for d in e)) for e in events]
    latency = {int(st.start_s): st.p50_ms for st in stats if st.p50_ms is not None}
    findings = []
    for event, (start, end) in zip(events, spans, strict=True):
        head = max(event, key=_severity)
        findings.append(_finding(event, head, start, end, spans, series, latency, stats,
                                 driver_saturated))  # fmt: skip
    return findings


def _severity(d: Degradation) -> float:
    # Latency first (what users feel), then by size.
    return (2.0 if d.metric.startswith("latency") else 1.0) * abs(d.change_pct)


def _finding(
    event: list[Degradation],
    head: Degradation,
    start: float,
    end: float,
    spans: list[tuple[float, float]],
    series: dict[str, dict[int, float]],
    latency: dict[int, float],
    stats: Sequence[WindowStat],
    driver_saturated: bool,
) -> Finding:
    strengths: dict[str, float] = {}
    lines: dict[str, list[tuple[float, str]]] = {}
    for metric in sorted(series):
        rule = evidence_for(metric)
        per_second = series[metric]
        if rule is None:
            continue
        # The steady state leaves out a margin before each event: a cause can start a few
        # seconds before the detector's rolling view shows it (and must not be its own
        # baseline).
        before = [
            v
            for t, v in per_second.items()
            if not any(a - ONSET_MARGIN_S <= t < b for a, b in spans)
        ]
        now = [v for t, v in per_second.items() if start <= t < end]
        if len(before) < 4 or not now:
            continue
        b, a = sum(before) / len(before), sum(now) / len(now)
        # A robust spread: one odd steady second must not hide a real rise.
        mid = sorted(before)[len(before) // 2]
        sd = 1.4826 * sorted(abs(x - mid) for x in before)[len(before) // 2]
        rise = a - b
        if rise < rule.floor or (b > 0 and a / b < MIN_RATIO) or rise <= 3 * sd:
            continue
        ratio = a / b if b > 0 else math.inf
        corr = _correlation(per_second, latency)
        strength = rule.weight * min(math.log2(ratio) if b > 0 else 4.0, 4.0)
        strength *= 0.5 + 0.5 * max(corr, 0.0)
        strengths[rule.cause] = strengths.get(rule.cause, 0.0) + strength
        unit = unit_of(metric)
        times = f"{ratio:.1f}x" if math.isfinite(ratio) else "from 0"
        now_text, before_text = format_value(a, unit), format_value(b, unit)
        lines.setdefault(rule.cause, []).append(
            (strength, f"{rule.label} {now_text} vs {before_text} before ({times}); "
                       f"r={corr:+.2f} with latency [{metric}]")
        )  # fmt: skip
    # Ranked by total strength: scores saturate near 1, so two strong causes would tie.
    ranked: list[dict[str, Any]] = [
        {"cause": c, "score": round(1 - math.exp(-w), 2)}
        for c, w in sorted(strengths.items(), key=lambda kv: -kv[1])
    ]
    backlog = _backlog(stats, start, end)
    evidence: list[str] = [
        f"{d.metric.replace('_', ' ')} {describe_change(d)} from {d.start_s:.0f} s "
        f"({d.baseline:.4g} -> {d.level:.4g})"
        for d in sorted(event, key=_severity, reverse=True)
    ]
    if ranked and float(ranked[0]["score"]) >= MIN_SCORE:
        cause = str(ranked[0]["cause"])
        total = sum(strengths.values())
        confidence = float(ranked[0]["score"]) * strengths[cause] / total
        evidence += [text for _, text in sorted(lines[cause], key=lambda x: -x[0])]
        for other in ranked[1:]:
            evidence += [
                f"also {other['cause']}: " + text for _, text in lines[str(other["cause"])][:1]
            ]
    elif backlog >= BACKLOG_SHARE:
        cause, confidence = "overload", min(0.9, 0.5 + backlog)
        ranked.insert(0, {"cause": "overload", "score": round(confidence, 2)})
        evidence.append(
            f"the queue of unanswered requests grew by {backlog * 100:.0f}% of those sent "
            "while degraded, and no resource probe moved: a server at capacity"
        )
    else:
        cause, confidence = "unexplained", 0.0
    if driver_saturated:
        evidence.append(
            "the load driver was saturated (schedule or loop lag p99 > 10 ms): part of the "
            "latency may be perfsleuth's own"
        )
    return Finding(
        start_s=round(start, 3),
        end_s=round(end, 3),
        metric=head.metric,
        change_pct=round(head.change_pct, 1),
        cause=cause,
        causes=ranked,
        confidence=round(min(max(confidence, 0.0), 1.0), 2),
        evidence=evidence,
        advice=ADVICE[cause],
        flagged_at_s=round(min(d.flagged_at_s for d in event), 3),
    )


def describe_change(d: Degradation) -> str:
    """`+85%`, or `+30.0 pt` for an error rate."""
    return f"{d.change_pct:+.1f} pt" if d.metric == "error_rate" else f"{d.change_pct:+.0f}%"


def _correlation(x: dict[int, float], y: dict[int, float]) -> float:
    keys = sorted(set(x) & set(y))
    if len(keys) < 5:
        return 0.0
    xs, ys = [x[k] for k in keys], [y[k] for k in keys]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    sxy = sum((a - mx) * (b - my) for a, b in zip(xs, ys, strict=True))
    sxx = sum((a - mx) ** 2 for a in xs)
    syy = sum((b - my) ** 2 for b in ys)
    return sxy / math.sqrt(sxx * syy) if sxx > 0 and syy > 0 else 0.0


def _backlog(stats: Sequence[WindowStat], start: float, end: float) -> float:
    """How much the queue of unanswered requests grew during the interval, as a share of
    the requests sent in it. Sends are counted when sent and answers when they come, so
    the backlog is the running sum of their difference; the drain after the load (answers,
    no sends) must not hide a queue that built up before it."""
    backlog = 0
    at_start = 0
    peak = 0
    sent = 0
    for st in stats:
        if st.start_s < start:
            backlog += st.sent - st.answered
            at_start = peak = backlog
            continue
        if st.start_s >= end:
            break
        backlog += st.sent - st.answered
        peak = max(peak, backlog)
        sent += st.sent
    return max(peak - at_start, 0) / sent if sent else 0.0
