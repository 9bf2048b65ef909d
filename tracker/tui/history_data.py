"""What the history and compare screens show, read from the store as plain data.

Used by `tracker.tui.history_app` (in its thread workers) and `tracker.tui.compare_view`;
no Textual here, so the reading and shaping are testable without a terminal. The series
and change points are `tracker.regressions.history.scenario_history`'s, the comparison is
`tracker.regressions.baseline.compare_stored`'s: the screens show what `history --scenario` and
`compare` print, never a second computation of it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from tracker.analysis.compare import Comparison, Options
from tracker.documents.stored_run import load_run
from tracker.records import RunRecord
from tracker.regressions.baseline import compare_stored, parse_spec
from tracker.regressions.history import SERIES_LIMIT, Change, History, scenario_history
from tracker.store import Store
from tracker.units import format_ms

#: Runs read to list scenarios: the same window `find_scenario` searches for a name.
SCAN_LIMIT = 1000
DEFAULT_BASELINE = "last:5"


def _rate(value: float) -> str:
    return f"{value:.1f}/s"


#: Trend charts: (history metric, title, how a value reads), in screen order. TTFT only
#: appears for streamed LLM runs (its series are empty otherwise).
TREND_METRICS: tuple[tuple[str, str, Callable[[float], str]], ...] = (
    ("latency_ms.p50", "latency p50", format_ms),
    ("latency_ms.p99", "latency p99", format_ms),
    ("throughput_rps", "throughput", _rate),
    ("llm.ttft_ms.p50", "TTFT p50", format_ms),
    ("llm.ttft_ms.p99", "TTFT p99", format_ms),
)

#: How each kind of change point is drawn: a colour for the mark and the list.
CHANGE_STYLES = {
    "alert": "red",
    "minor": "yellow",
    "accepted": "grey50",
    "better": "green",
}


@dataclass(frozen=True)
class Source:
    """Where the screens read from, and how a comparison they start is made."""

    store: Store
    baseline: str = DEFAULT_BASELINE
    options: Options = field(default_factory=Options)
    limit: int = SERIES_LIMIT


@dataclass(frozen=True)
class ScenarioRow:
    """One scenario identity (name + load settings) and its newest run."""

    name: str
    key: str
    runs: int
    last_run_id: int
    last_started: datetime


@dataclass(frozen=True)
class RunRow:
    """One run as the runs table lists it."""

    id: int
    started: datetime
    status: str
    tag: str | None
    p50_ms: float | None
    p99_ms: float | None
    throughput_rps: float | None
    findings: int


@dataclass(frozen=True)
class Trend:
    """One chart: a metric's values at run positions 0..n-1 (oldest first)."""

    metric: str
    title: str
    format: Callable[[float], str]
    points: list[tuple[float, float]]
    changes: list[tuple[float, Change]]


@dataclass(frozen=True)
class ScenarioData:
    """Everything the scenario screen shows."""

    history: History
    runs: list[RunRow]
    trends: list[Trend]

    @property
    def run_ids(self) -> list[int]:
        """Run id at each chart position."""
        return [r.id for r in self.history.runs]


def list_scenarios(store: Store) -> list[ScenarioRow]:
    """Scenarios of the newest SCAN_LIMIT runs, the most recently run first."""
    grouped: dict[str, list[RunRecord]] = {}
    for run in store.list_runs(SCAN_LIMIT):  # newest first
        grouped.setdefault(run.scenario_key, []).append(run)
    return [
        ScenarioRow(runs[0].scenario, key, len(runs), runs[0].id, runs[0].started_at)
        for key, runs in grouped.items()
    ]


def change_state(change: Change) -> str:
    """`alert`, `minor` (worse, below the minimum effect), `accepted` or `better`."""
    if change.acknowledged:
        return "accepted"
    if change.alerts:
        return "alert"
    return "minor" if change.worse else "better"


def change_line(change: Change) -> str:
    """A change point in words, as `history --scenario` lists it."""
    state = change_state(change)
    words = {
        "alert": "ALERT",
        "minor": "below the minimum effect",
        "accepted": f"accepted{': ' + change.note if change.note else ''}",
        "better": "better",
    }[state]
    return (
        f"{change.metric} at run {change.run_id}: {change.before:.4g} -> {change.after:.4g} "
        f"({change.change_pct:+.1f}%, {change.kind})  {words}"
    )


def load_scenario(store: Store, key: str, limit: int = SERIES_LIMIT) -> ScenarioData:
    """A scenario's runs (every status, newest first), trends and change points."""
    history = scenario_history(store, key, limit=limit)
    # The series holds completed runs only; failed and interrupted ones belong in the
    # table too (they are why a night has no point), found among the newest runs.
    others = [r for r in store.list_runs(SCAN_LIMIT) if r.scenario_key == key]
    by_id = {r.id: r for r in [*others, *history.runs]}
    runs = sorted(by_id.values(), key=lambda r: r.id, reverse=True)[:limit]
    rows = [_run_row(r, len(store.findings(r.id))) for r in runs]
    return ScenarioData(history, rows, trends(history))


def trends(history: History) -> list[Trend]:
    """The charts of `history`'s key metrics, x = the run's position in the series."""
    position = {run.id: i for i, run in enumerate(history.runs)}
    out = []
    for metric, title, fmt in TREND_METRICS:
        points = history.series.get(metric)
        if not points:
            continue
        changes = [(float(position[c.run_id]), c) for c in history.changes if c.metric == metric]
        out.append(
            Trend(
                metric,
                title,
                fmt,
                [(float(position[run_id]), value) for run_id, value in points],
                changes,
            )
        )
    return out


def _run_row(run: RunRecord, findings: int) -> RunRow:
    summary: dict[str, Any] = run.summary or {}
    latency = summary.get("latency_ms") or {}
    throughput = summary.get("throughput_rps")
    return RunRow(
        run.id,
        run.started_at,
        run.status,
        run.tag,
        latency.get("p50"),
        latency.get("p99"),
        float(throughput) if isinstance(throughput, int | float) else None,
        findings,
    )


def compare_pair(source: Source, candidate: str, baseline: str) -> Comparison:
    """`compare CANDIDATE --baseline BASELINE` with the CLI's options."""
    spec = parse_spec(baseline)
    return compare_stored(source.store, load_run(source.store, candidate), spec, source.options)
