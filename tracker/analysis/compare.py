"""A run against its baseline: one verdict per metric, one for the run, and likely causes.

Used by `perfsleuth compare` and `run --baseline` (through `tracker.regressions.baseline`), which
resolve the runs and hand over plain `RunSide`s; rendering is `tracker.reports.compare_text`.

The statistics, in order:
1. Each metric is compared on a log scale (latency, throughput, probes) or as a
   difference (error rate). A run's own uncertainty is its block-bootstrap standard
   error (`run_metrics`). With three or more baseline runs the baseline level is their
   median and the run-to-run spread (1.4826 x MAD) is added, because night-to-night noise
   on a shared machine is usually larger than the noise inside a run.
2. A two-sided z-test gives each metric a p-value; Benjamini-Hochberg at `alpha` decides
   which changes are significant, over the gating metrics together (and, apart, over the
   probe metrics), so twenty metrics do not give twenty chances of a false alarm.
3. Verdict per metric: `regressed` / `improved` when the change is significant *and* at
   least its minimum effect (5% on p50, 10% on p90/p99 by default); `inconclusive` when it
   is that much worse but not significant; otherwise `unchanged`. Intervals are shown at the
   FCR-adjusted level 1 - alpha * R / m (Benjamini-Yekutieli), which matches the test.
"""

from __future__ import annotations

import fnmatch
import math
from dataclasses import dataclass, field
from statistics import NormalDist
from typing import Any

from probes import unit_of
from tracker.analysis.causes import evidence_for, rank_causes
from tracker.analysis.run_metrics import Estimate

_NORMAL = NormalDist()
#: Run-to-run noise assumed (relative, per run) when the baseline has fewer than 3 runs:
#: identical 10 s runs of the example server here differ by 1-3% in p50.
BETWEEN_RUNS_PRIOR = 0.02
#: A percentile is judged only when this many requests lie beyond it in every run compared
#: (10 for p99 = 1,000 requests): a p99 of 400 requests is a statement about its 4 slowest.
TAIL_SAMPLES = 10
#: Environment keys that change what a run measures enough to warn about.
WARN_KEYS = {"cpu_model": "CPU model", "cpu_count": "core count"}
SHOWN_KEYS = ("host", "kernel", "os", "python", "perfsleuth", "event_loop", "git_commit")
#: The compare document's `schema_version` (docs/json.md, "Versioning"): new keys keep it; a
#: key removed, renamed or retyped bumps it, so CI scripts can refuse a shape they do not know.
COMPARE_SCHEMA_VERSION = 1


@dataclass(frozen=True)
class Rule:
    """How one metric is judged."""

    better: str  # "lower" or "higher"
    threshold: float  # minimum effect: a fraction (relative) or units (absolute)
    unit: str
    relative: bool = True
    gating: bool = True


SERVICE_RULES: dict[str, Rule] = {
    "latency_ms.p50": Rule("lower", 0.05, "ms"),
    "latency_ms.p90": Rule("lower", 0.10, "ms"),
    "latency_ms.p99": Rule("lower", 0.10, "ms"),
    "throughput_rps": Rule("higher", 0.05, "req/s"),
    # An error rate is judged by how much it moved in absolute terms: 0 -> 0.2% is
    # "infinitely" worse relatively and usually noise; 1 percentage point is not.
    "error_rate": Rule("lower", 0.01, "", relative=False),
    "llm.ttft_ms.p50": Rule("lower", 0.05, "ms"),
    "llm.ttft_ms.p90": Rule("lower", 0.10, "ms"),
    "llm.ttft_ms.p99": Rule("lower", 0.10, "ms"),
    "llm.itl_ms.p50": Rule("lower", 0.05, "ms"),
    "llm.itl_ms.p90": Rule("lower", 0.10, "ms"),
    "llm.itl_ms.p99": Rule("lower", 0.10, "ms"),
    "llm.tpot_ms.p50": Rule("lower", 0.05, "ms"),
    "llm.tpot_ms.p90": Rule("lower", 0.10, "ms"),
    "llm.tpot_ms.p99": Rule("lower", 0.10, "ms"),
    "llm.output_tokens_per_s": Rule("higher", 0.05, "tokens/s"),
    "llm.goodput_rps": Rule("higher", 0.05, "req/s"),
    # Asynchronous tasks: their whole wait is `latency_ms` (which gates); the parts of it
    # explain a change (queued longer, or a slower submission) without gating twice.
    "tasks.queue_ms.p50": Rule("lower", 0.10, "ms", gating=False),
    "tasks.queue_ms.p99": Rule("lower", 0.10, "ms", gating=False),
    "tasks.submit_ms.p50": Rule("lower", 0.10, "ms", gating=False),
    "tasks.submit_ms.p99": Rule("lower", 0.10, "ms", gating=False),
}
#: Probe means move a lot between runs; 20% is a change worth explaining.
PROBE_THRESHOLD = 0.20
#: Probe metrics that describe perfsleuth itself or the shape of the tree, not the server.
_PROBES_SKIPPED = ("driver.", "cpu.processes", "cpu.threads", "gc.processes", "py.samples")


@dataclass(frozen=True)
class RunSide:
    """What a comparison needs of one run."""

    run_id: int
    scenario: str
    scenario_key: str
    status: str
    estimates: dict[str, Estimate]
    environment: dict[str, Any]
    saturated: bool = False


@dataclass(frozen=True)
class Options:
    """User settings: per-metric thresholds (glob patterns, percent), gating, alpha."""

    thresholds_pct: dict[str, float] = field(default_factory=dict)
    gate_probes: bool = False
    alpha: float = 0.05


@dataclass
class MetricResult:
    name: str
    unit: str
    better: str
    gating: bool
    threshold: float
    relative: bool
    baseline: float | None = None
    candidate: float | None = None
    change_pct: float | None = None
    change_abs: float | None = None
    ci_pct: tuple[float, float] | None = None
    ci_abs: tuple[float, float] | None = None
    p_value: float = 1.0
    verdict: str = "unchanged"
    # Internal: the change and its standard error on the comparison's scale.
    _d: float = 0.0
    _se: float = 0.0

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.name,
            "unit": self.unit,
            "baseline": _round(self.baseline),
            "candidate": _round(self.candidate),
            "change_pct": _round(self.change_pct, 2),
            "ci_pct": [_round(x, 2) for x in self.ci_pct] if self.ci_pct else None,
            "verdict": self.verdict,
            "p_value": _round(self.p_value, 6),
            "threshold_pct" if self.relative else "threshold": _round(
                self.threshold * 100 if self.relative else self.threshold, 4
            ),
            "better": self.better,
            "gating": self.gating,
        }
        if not self.relative:
            out["change_abs"] = _round(self.change_abs, 6)
            out["ci_abs"] = [_round(x, 6) for x in self.ci_abs] if self.ci_abs else None
        return out


@dataclass
class Comparison:
    verdict: str
    run_id: int
    scenario: str
    baseline_spec: str
    baseline_ids: list[int]
    metrics: list[MetricResult]
    causes: list[dict[str, Any]]
    warnings: list[str]
    notes: list[str]
    environment_changes: list[dict[str, Any]]
    alpha: float
    ci_level: float
    # Unaccepted change points for the worse in the scenario's history
    # (tracker.regressions.history).
    change_points: list[dict[str, Any]] = field(default_factory=list)

    def add_change_points(self, changes: list[dict[str, Any]]) -> None:
        """A creep the baseline cannot see (it crept too) still fails the comparison."""
        self.change_points.extend(changes)
        if changes:
            self.verdict = "regressed"

    def to_json(self) -> dict[str, Any]:
        """The compare JSON contract (docs/json.md, the compare document)."""
        return {
            "schema_version": COMPARE_SCHEMA_VERSION,
            "verdict": self.verdict,
            "run_id": self.run_id,
            "scenario": self.scenario,
            "baseline": {"spec": self.baseline_spec, "run_ids": self.baseline_ids},
            "metrics": [m.to_json() for m in self.metrics],
            "causes": self.causes,
            "warnings": self.warnings,
            "notes": self.notes,
            "environment_changes": self.environment_changes,
            "change_points": self.change_points,
            "alpha": self.alpha,
            "ci_level": round(self.ci_level, 4),
        }


def compare_runs(
    candidate: RunSide, baseline: list[RunSide], *, spec: str, options: Options | None = None
) -> Comparison:
    """Compare `candidate` with the `baseline` runs (already resolved and comparable)."""
    opts = options or Options()
    warnings: list[str] = []
    notes: list[str] = []
    if not baseline:
        warnings.append(
            f"no comparable baseline run for {spec}: nothing to compare with yet "
            "(runs of the same scenario and load settings, status completed)"
        )
    results: list[MetricResult] = []
    if baseline:
        for name in _metric_names(candidate, baseline):
            short = _too_few(name, [candidate, *baseline])
            if short is not None:
                notes.append(short)
                continue
            rule = _rule(name, opts)
            result = _measure(name, rule, candidate, baseline)
            if result is not None:
                results.append(result)
    gating = [r for r in results if r.gating]
    explaining = [r for r in results if not r.gating]
    level = _decide(gating, opts.alpha)
    _decide(explaining, opts.alpha)
    verdict = _overall(gating) if baseline and gating else "inconclusive"
    if baseline and not gating:
        warnings.append("no service metric to compare: one side completed no requests")
    probe_deltas = [r.to_json() for r in results if r.name.startswith("probes.")]
    causes = rank_causes(probe_deltas)
    _environment_warnings(candidate, baseline, warnings)
    changes = _environment_changes(candidate, baseline)
    if len(baseline) in (1, 2):
        notes.append(
            f"{len(baseline)} baseline run{'s' if len(baseline) > 1 else ''}: the noise "
            f"between runs is assumed ({BETWEEN_RUNS_PRIOR:.0%} per run), not measured; a "
            "baseline of 3 or more runs (last:N, tag:NAME) measures it"
        )
    return Comparison(
        verdict=verdict,
        run_id=candidate.run_id,
        scenario=candidate.scenario,
        baseline_spec=spec,
        baseline_ids=[b.run_id for b in baseline],
        metrics=results,
        causes=causes,
        warnings=warnings,
        notes=notes,
        environment_changes=changes,
        alpha=opts.alpha,
        ci_level=level,
    )


def _metric_names(candidate: RunSide, baseline: list[RunSide]) -> list[str]:
    """Metrics every side has, service metrics first in their usual order."""
    shared = set(candidate.estimates)
    for side in baseline:
        shared &= set(side.estimates)
    service = [n for n in SERVICE_RULES if n in shared]
    probes = sorted(
        n
        for n in shared
        if n.startswith("probes.") and not n.removeprefix("probes.").startswith(_PROBES_SKIPPED)
    )
    return service + probes


def _too_few(name: str, sides: list[RunSide]) -> str | None:
    """Why a percentile is not judged (too few requests beyond it), or None."""
    key = name.rsplit(".", 1)[-1]
    if not (key.startswith("p") and key[1:].isdigit()):
        return None
    quantile = int(key[1:]) / 10 ** len(key[1:])
    needed = math.ceil(TAIL_SAMPLES / (1 - quantile))
    counts = [side.estimates[name].n for side in sides]
    fewest = min((n for n in counts if n is not None), default=None)
    if fewest is None or fewest >= needed:
        return None
    return (
        f"{name} not judged: {fewest:,} requests in the smallest run; a {key} needs "
        f"{needed:,} ({TAIL_SAMPLES} beyond it) — run longer or faster to judge it"
    )


def _rule(name: str, opts: Options) -> Rule:
    base = SERVICE_RULES.get(name)
    if base is None:
        metric = name.removeprefix("probes.")
        evidence = evidence_for(metric)
        # A probe that is evidence of a cause counts a rise as worse; for the others
        # (e.g. idle share) a change either way is only shown.
        base = Rule(
            "lower" if evidence is not None or not metric.endswith("idle_pct") else "higher",
            PROBE_THRESHOLD,
            unit_of(metric),
            gating=opts.gate_probes,
        )
    for pattern, pct in opts.thresholds_pct.items():
        if fnmatch.fnmatchcase(name, pattern):
            # Percent of the baseline, or percentage points for an absolute rate.
            base = Rule(base.better, pct / 100, base.unit, base.relative, base.gating)
    return base


def _median(values: list[float]) -> float:
    s = sorted(values)
    mid = len(s) // 2
    return s[mid] if len(s) % 2 else (s[mid - 1] + s[mid]) / 2


def _measure(
    name: str, rule: Rule, candidate: RunSide, baseline: list[RunSide]
) -> MetricResult | None:
    c = candidate.estimates[name]
    bs = [side.estimates[name] for side in baseline]
    base_value = _median([b.value for b in bs])
    result = MetricResult(
        name,
        rule.unit,
        rule.better,
        rule.gating,
        rule.threshold,
        rule.relative,
        base_value,
        c.value,
    )
    if rule.relative:
        if c.value <= 0 or base_value <= 0:
            return _degenerate(result, base_value, c.value)
        # A baseline run at zero (say, a night that served nothing) has no logarithm; the
        # median already says it was the exception.
        bs = [b for b in bs if b.value > 0]
        xs = [math.log(b.value) for b in bs]
        ses = [b.se / b.value for b in bs]
        c_x, c_se = math.log(c.value), c.se / c.value
    else:
        xs = [b.value for b in bs]
        ses = [b.se for b in bs]
        c_x, c_se = c.value, c.se
    level = _median(xs)
    k = len(xs)
    if k >= 3:
        within = math.sqrt(sum(s * s for s in ses) / k)
        between = max(1.4826 * _median([abs(x - level) for x in xs]), within)
        # The candidate is one draw from the run-to-run spread; the baseline level is
        # a median of k draws (its standard error ~1.2533 s / sqrt(k) for a normal spread).
        var = max(between, c_se) ** 2 + (1.2533 * between) ** 2 / k
    else:
        var = c_se**2 + sum(s * s for s in ses) / k**2
        if rule.relative:
            # Fewer than three runs cannot measure the noise between runs, which on a
            # shared machine is larger than the noise inside one: assume a prior of
            # BETWEEN_RUNS_PRIOR per run (for the candidate, and for the baseline's level).
            var += (1 + 1 / k) * BETWEEN_RUNS_PRIOR**2
    d = c_x - level
    se = math.sqrt(var)
    result._d, result._se = d, se
    if se > 0:
        result.p_value = 2.0 * (1.0 - _NORMAL.cdf(abs(d) / se))
    else:
        result.p_value = 0.0 if d else 1.0
    if rule.relative:
        result.change_pct = (math.exp(d) - 1.0) * 100.0
    else:
        result.change_abs = d
        result.change_pct = (d / base_value * 100.0) if base_value else None
    return result


def _degenerate(result: MetricResult, base: float, cand: float) -> MetricResult:
    """A relative metric at zero on one side: a collapse (or a recovery) needs no test."""
    if base == cand:
        result.change_pct = 0.0
        return result
    result.change_pct = (cand - base) / base * 100.0 if base else None
    result._d = math.inf if cand > base else -math.inf
    if not result.gating:
        # A probe from (or to) zero: 0 -> 0.08 blocked processes is no finding; only a
        # move past the probe's evidence floor is.
        rule = evidence_for(result.name.removeprefix("probes."))
        if rule is None or abs(cand - base) < rule.floor:
            result.verdict = "unchanged"
            return result
    worse = (cand > base) == (result.better == "lower")
    result.p_value = 0.0
    result.verdict = "regressed" if worse else "improved"
    return result


def _decide(results: list[MetricResult], alpha: float) -> float:
    """Benjamini-Hochberg over `results`, then each verdict; returns the interval level."""
    tested = [r for r in results if math.isfinite(r._d)]
    m = len(tested)
    order = sorted(tested, key=lambda r: r.p_value)
    cutoff = 0
    for i, r in enumerate(order, start=1):
        if r.p_value <= alpha * i / m:
            cutoff = i
    significant = {id(r) for r in order[:cutoff]}
    level = 1.0 - alpha * max(cutoff, 1) / max(m, 1)
    z = _NORMAL.inv_cdf(1.0 - (1.0 - level) / 2.0)
    for r in tested:
        lo, hi = r._d - z * r._se, r._d + z * r._se
        if r.relative:
            r.ci_pct = ((math.exp(lo) - 1) * 100, (math.exp(hi) - 1) * 100)
            effect = math.exp(r._d) - 1
        else:
            r.ci_abs = (lo, hi)
            if r.baseline:
                r.ci_pct = (lo / r.baseline * 100, hi / r.baseline * 100)
            effect = r._d
        worse = effect > 0 if r.better == "lower" else effect < 0
        big = abs(effect) >= r.threshold
        if big and id(r) in significant:
            r.verdict = "regressed" if worse else "improved"
        elif big and worse:
            # It looks like a regression of at least the minimum effect, but the data
            # cannot tell it from noise. (A possible improvement is no cause for alarm.)
            r.verdict = "inconclusive"
        else:
            r.verdict = "unchanged"
    return level


def _overall(gating: list[MetricResult]) -> str:
    verdicts = {r.verdict for r in gating}
    for verdict in ("regressed", "inconclusive", "improved"):
        if verdict in verdicts:
            return verdict
    return "unchanged"


def _environment_warnings(candidate: RunSide, baseline: list[RunSide], out: list[str]) -> None:
    if candidate.status != "completed":
        out.append(f"run {candidate.run_id} is {candidate.status}, not completed")
    for key, label in WARN_KEYS.items():
        mine = candidate.environment.get(key)
        others = sorted(
            {str(b.environment.get(key)) for b in baseline if b.environment.get(key) != mine}
        )
        if others:
            out.append(
                f"baseline ran on a different {label}: {', '.join(others)} "
                f"(this run: {mine}); differences may come from the machine"
            )
    for side in [candidate, *baseline]:
        if side.saturated:
            out.append(
                f"the load driver was saturated in run {side.run_id}: its latencies partly "
                "measure perfsleuth itself"
            )
    other = [b.run_id for b in baseline if b.scenario_key != candidate.scenario_key]
    if other:
        runs = ", ".join(map(str, other))
        out.append(f"baseline run {runs} measured a different scenario or load settings")


def _environment_changes(candidate: RunSide, baseline: list[RunSide]) -> list[dict[str, Any]]:
    changes = []
    for key in SHOWN_KEYS:
        mine = candidate.environment.get(key)
        theirs = sorted(
            {str(b.environment.get(key)) for b in baseline if b.environment.get(key) != mine}
        )
        if theirs:
            changes.append({"key": key, "baseline": theirs, "candidate": mine})
    return changes


def _round(value: float | None, digits: int = 4) -> float | None:
    if value is None or not math.isfinite(value):
        return None
    return round(value, digits)
