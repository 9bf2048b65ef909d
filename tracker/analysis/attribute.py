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
1 - exp(-sum of strengths); causes are ranked by total strength, then by time lost where
two strong causes share a time ledger (see `causes.order_causes`). When the offered load
rose at the event and a backlog (requests sent but not answered) grew, the cause is
`overload`, resource readings that rose with the extra work listed after it; with no
resource evidence, a growing backlog also names `overload`; otherwise `unexplained`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from probes import unit_of
from tracker.analysis.causes import MIN_SCORE, evidence_for, order_causes
from tracker.analysis.detect import Degradation, WindowStat
from tracker.records import FindingRecord
from tracker.units import format_value

if TYPE_CHECKING:
    from tracker.records import SampleRecord

#: Seconds before an event left out of the steady state.
ONSET_MARGIN_S = 4
#: Rise, as a ratio, a probe must show to count (besides its floor and 3 sigma).
MIN_RATIO = 1.3
#: Growth of the unanswered queue, as a share of the interval's sends, that means a backlog.
BACKLOG_SHARE = 0.1
#: Rise of the offered load (sends per second) at an event that makes it overload first.
LOAD_RISE = 1.25
#: Seconds before an event left out of the offered load's steady state.
LOAD_MARGIN_S = 1

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


def group(degradations: Sequence[Degradation]) -> list[list[Degradation]]:
    """Overlapping degradations of several metrics are one event."""
    events: list[list[Degradation]] = []
    for d in sorted(degradations, key=lambda d: d.start_s):
        if events and d.start_s <= max(x.end_s for x in events[-1]):
            events[-1].append(d)
        else:
            events.append([d])
    return events


class ProbeSeries:
    """Per-second means of the probe metrics that can be evidence, from t = 0, built one
    sample at a time (the live view attributes while the run goes; an hour at 4 Hz keeps
    ~30 metrics x 3,600 seconds)."""

    def __init__(self) -> None:
        self._sums: dict[str, dict[int, list[float]]] = {}

    def add(self, sample: SampleRecord) -> None:
        if sample.t_s < 0:
            return
        second = int(sample.t_s)
        for metric, value in sample.metrics.items():
            if evidence_for(metric) is None:
                continue
            acc = self._sums.setdefault(metric, {}).setdefault(second, [0.0, 0.0])
            acc[0] += value
            acc[1] += 1

    def means(self) -> dict[str, dict[int, float]]:
        return {m: {t: v / n for t, (v, n) in per.items()} for m, per in self._sums.items()}


def probe_series(samples: Iterable[SampleRecord]) -> dict[str, dict[int, float]]:
    """`ProbeSeries` of a stored run's samples."""
    series = ProbeSeries()
    for s in samples:
        series.add(s)
    return series.means()


def attribute_run(
    degradations: Sequence[Degradation],
    stats: Sequence[WindowStat],
    series: dict[str, dict[int, float]],
    *,
    driver_saturated: bool = False,
) -> list[FindingRecord]:
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
) -> FindingRecord:
    strengths: dict[str, float] = {}
    stalls: dict[tuple[str, str], float] = {}  # (ledger, cause) -> largest rise of time lost
    lines: dict[str, list[tuple[float, str]]] = {}
    for metric in sorted(series):
        rule = evidence_for(metric)
        per_second = series[metric]
        if rule is None:
            continue
        # The steady state leaves out a margin before each event: a cause can start a few
        # seconds before the detector's rolling view shows it (and must not be its own
        # baseline).
        before = _steady(per_second, spans, ONSET_MARGIN_S)
        if len(before) < 4:
            # A short run (a fault 7 s in) leaves too few seconds outside the margin: judge
            # against the seconds up to the one before the event rather than not at all,
            # which would read as "no resource probe moved".
            before = _steady(per_second, spans, 1)
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
        if rule.stall is not None:
            key = (rule.stall, rule.cause)
            stalls[key] = max(stalls.get(key, 0.0), rise)
        unit = unit_of(metric)
        times = f"{ratio:.1f}x" if math.isfinite(ratio) else "from 0"
        now_text, before_text = format_value(a, unit), format_value(b, unit)
        lines.setdefault(rule.cause, []).append(
            (strength, f"{rule.label} {now_text} vs {before_text} before ({times}); "
                       f"r={corr:+.2f} with latency [{metric}]")
        )  # fmt: skip
    order, stall_note, stall_share = order_causes(strengths, stalls)
    ranked: list[dict[str, Any]] = [
        {"cause": c, "score": round(1 - math.exp(-strengths[c]), 2)} for c in order
    ]
    backlog = _backlog(stats, start, end)
    evidence: list[str] = [
        f"{d.metric.replace('_', ' ')} {describe_change(d)} from {d.start_s:.0f} s "
        f"({d.baseline:.4g} -> {d.level:.4g})"
        for d in sorted(event, key=_severity, reverse=True)
    ]
    offered = _offered_rise(stats, start, spans)
    if offered is not None and backlog >= BACKLOG_SHARE:
        # More load than the server can take: whatever resource readings rose with it are
        # the extra work's own, not an anomaly; they stay listed as `also ...`.
        cause, confidence = "overload", min(0.9, 0.5 + backlog)
        ranked.insert(0, {"cause": "overload", "score": round(confidence, 2)})
        evidence.append(
            f"the offered load rose from {offered[0]:.3g} to {offered[1]:.3g} req/s at "
            f"{start:.0f} s and the queue of unanswered requests grew by {backlog * 100:.0f}% "
            "of those sent: more load than the server's capacity"
        )
        evidence += _also(ranked[1:], lines)
    elif ranked and float(ranked[0]["score"]) >= MIN_SCORE:
        cause = str(ranked[0]["cause"])
        total = sum(strengths.values())
        share = strengths[cause] / total
        if stall_share is not None:  # the order came from time accounting: so does the share
            share = stall_share
        confidence = float(ranked[0]["score"]) * share
        evidence += [text for _, text in sorted(lines[cause], key=lambda x: -x[0])]
        if stall_note:
            evidence.append(stall_note)
        evidence += _also(ranked[1:], lines)
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
    return FindingRecord(
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


def _steady(
    per_second: dict[int, float], spans: list[tuple[float, float]], margin: float
) -> list[float]:
    """A probe's seconds outside every event and the `margin` seconds before each."""
    return [v for t, v in per_second.items() if not any(a - margin <= t < b for a, b in spans)]


def _also(others: list[dict[str, Any]], lines: dict[str, list[tuple[float, str]]]) -> list[str]:
    """The strongest evidence line of each cause not named."""
    return [
        f"also {c['cause']}: " + max(lines[str(c["cause"])])[1]
        for c in others
        if lines.get(str(c["cause"]))
    ]


def describe_change(d: Degradation | FindingRecord) -> str:
    """`+85%`, or `+30.0 pt` for an error rate."""
    return f"{d.change_pct:+.1f} pt" if d.metric == "error_rate" else f"{d.change_pct:+.0f}%"


def headline(f: FindingRecord) -> str:
    """One line for a finding as the live views show it: what moved, since when, and why."""
    what = f"{f.metric.replace('_', ' ')} {describe_change(f)} since {f.start_s:.0f}s"
    if f.cause == "unexplained":
        return f"{what}: cause not clear yet"
    return f"{what}: {f.cause} (confidence {f.confidence:.2f})"


_EVIDENCE_METRIC = re.compile(r"\[([\w.]+)\]$")


def evidence_metrics(f: FindingRecord) -> list[str]:
    """The probe metrics a finding's evidence names (each probe line ends in `[metric]`)."""
    found = (_EVIDENCE_METRIC.search(line) for line in f.evidence)
    return [m.group(1) for m in found if m is not None]


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


def _offered_rise(
    stats: Sequence[WindowStat], start: float, spans: list[tuple[float, float]]
) -> tuple[float, float] | None:
    """(before, during) sends per second when the offered load rose at this event: by at
    least LOAD_RISE and 3 standard errors (counts are Poisson), against the seconds before
    it that are outside every event. The margin before an event is one window here, not
    ONSET_MARGIN_S: the offered load is the driver's own schedule, seen the window it
    changes, and a short run has few steady windows to spare. The drain (no sends after
    the load) is left out."""
    last_send = max((st.start_s for st in stats if st.sent > 0), default=None)
    if last_send is None:
        return None
    end = next(b for a, b in spans if a == start)
    before = [
        st.sent
        for st in stats
        if st.start_s < start - LOAD_MARGIN_S
        and not any(a - LOAD_MARGIN_S <= st.start_s < b for a, b in spans)
    ]
    during = [st.sent for st in stats if start <= st.start_s < min(end, last_send + 1)]
    if len(before) < 4 or not during:
        return None
    r0, r1 = sum(before) / len(before), sum(during) / len(during)
    se = math.sqrt(r0 / len(before) + r1 / len(during))
    if r1 < LOAD_RISE * r0 or se <= 0 or (r1 - r0) / se < 3:
        return None
    return r0, r1


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
