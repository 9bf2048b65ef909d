"""A scenario's history: its runs in order, each key metric as a series, change points.

Used by `perfsleuth history --scenario` (trends, change points, `--fail-on-change`), by
`history ack` (accepting a change point) and by `compare` against `last:N` / `best:N`,
which fails on an unaccepted change point in the recent runs: a slow creep of 2% a night
never differs much from the last five nights, but it is a change point of the series.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tracker.analysis.changepoints import detect
from tracker.analysis.compare import SERVICE_RULES
from tracker.errors import UsageError
from tracker.records import RunRecord
from tracker.store import Store

#: Metrics whose series are searched for change points, in display order.
HISTORY_METRICS = (
    "latency_ms.p50",
    "latency_ms.p99",
    "throughput_rps",
    "error_rate",
    "llm.ttft_ms.p50",
    "llm.ttft_ms.p99",
    "llm.itl_ms.p50",
    "llm.tpot_ms.p50",
    "llm.output_tokens_per_s",
)
#: Runs read for a series: a season of nightly runs.
SERIES_LIMIT = 200


@dataclass(frozen=True)
class Change:
    """A change point of one metric's series, at the first run of the new level."""

    metric: str
    run_id: int
    before: float
    after: float
    change_pct: float
    kind: str
    p_value: float
    worse: bool
    significant: bool  # at least the metric's minimum effect (compare's thresholds)
    acknowledged: bool = False
    note: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "metric": self.metric,
            "run_id": self.run_id,
            "before": round(self.before, 6),
            "after": round(self.after, 6),
            "change_pct": round(self.change_pct, 2),
            "kind": self.kind,
            "p_value": round(self.p_value, 6),
            "direction": "worse" if self.worse else "better",
            "acknowledged": self.acknowledged,
            "note": self.note,
        }

    @property
    def alerts(self) -> bool:
        """Worse by at least the minimum effect, and nobody accepted it."""
        return self.worse and self.significant and not self.acknowledged


@dataclass
class History:
    scenario: str
    scenario_key: str
    runs: list[RunRecord]
    series: dict[str, list[tuple[int, float]]] = field(default_factory=dict)
    changes: list[Change] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario,
            "scenario_key": self.scenario_key,
            "runs": [
                {"run_id": r.id, "started_at": r.started_at.isoformat(), "tag": r.tag}
                for r in self.runs
            ],
            "series": {m: [[i, v] for i, v in s] for m, s in self.series.items()},
            "change_points": [c.to_json() for c in self.changes],
        }


def metric_value(run: RunRecord, metric: str) -> float | None:
    """A run's value of a comparison metric, from its stored summary."""
    summary = run.summary or {}
    stored = (summary.get("metrics") or {}).get(metric)
    if stored is not None:
        return float(stored[0])
    # Runs stored before summaries carried estimates still have the headline figures.
    node: Any = summary
    for part in metric.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    if node is None and metric == "error_rate":
        node = (summary.get("requests") or {}).get("error_rate")
    return float(node) if isinstance(node, int | float) else None


def scenario_history(
    store: Store,
    scenario_key: str,
    *,
    up_to: int | None = None,
    limit: int = SERIES_LIMIT,
    metrics: tuple[str, ...] = HISTORY_METRICS,
) -> History:
    """Series and change points of one scenario identity (runs with id <= `up_to`)."""
    runs = store.comparable_runs(
        scenario_key, before_id=None if up_to is None else up_to + 1, limit=limit
    )[::-1]
    history = History(runs[-1].scenario if runs else "", scenario_key, runs)
    accepted = store.acknowledgements(scenario_key)
    for metric in metrics:
        points = [(r.id, v) for r in runs if (v := metric_value(r, metric)) is not None]
        if not points:
            continue
        history.series[metric] = points
        rule = SERVICE_RULES[metric]
        for cp in detect([v for _, v in points]):
            run_id = points[cp.index][0]
            delta = cp.after - cp.before
            worse = delta > 0 if rule.better == "lower" else delta < 0
            size = abs(cp.change_pct) / 100 if rule.relative else abs(delta)
            key = (metric, run_id)
            history.changes.append(
                Change(
                    metric=metric,
                    run_id=run_id,
                    before=cp.before,
                    after=cp.after,
                    change_pct=cp.change_pct,
                    kind=cp.kind,
                    p_value=cp.p_value,
                    worse=worse,
                    significant=size >= rule.threshold,
                    acknowledged=key in accepted,
                    note=accepted.get(key),
                )
            )
    return history


def find_scenario(store: Store, text: str) -> str:
    """The scenario key `--scenario` means: a scenario name (its newest identity) or a
    key prefix."""
    for run in store.list_runs(limit=1000):
        if run.scenario == text or run.scenario_key.startswith(text):
            return run.scenario_key
    raise UsageError(
        f"--scenario: no stored run of {text!r}; list scenarios with `perfsleuth history`"
    )


def acknowledge(store: Store, run: RunRecord, metric: str | None, note: str | None) -> list[str]:
    """Accept the change points at `run` (of `metric`, or every one found there)."""
    history = scenario_history(store, run.scenario_key)
    found = [c for c in history.changes if c.run_id == run.id]
    if metric is not None:
        if metric not in HISTORY_METRICS:
            raise UsageError(
                f"--metric: {metric!r} is not a history metric; one of {', '.join(HISTORY_METRICS)}"
            )
        names = [metric]
    else:
        names = [c.metric for c in found]
        if not names:
            raise UsageError(
                f"no change point at run {run.id}; see `perfsleuth history --scenario "
                f"{run.scenario_key[:8]}` (or name one with --metric)"
            )
    return [m for m in names if store.acknowledge(run.scenario_key, m, run.id, note)]
