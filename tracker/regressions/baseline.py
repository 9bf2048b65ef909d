"""Resolving a baseline SPEC to stored runs, and comparing a run with it.

Used by `perfsleuth compare` and `run --baseline` (tracker.cli.compare), and by the compare
screen. Baseline SPECs (docs/regressions.md, "Baselines"): a run id; `tag:NAME` (every
completed run with that tag and the same scenario identity, as a set); `last:N` (the last
N comparable completed runs before the candidate); `best:N` (of those, the single run
with the lowest median latency); `group:NAME` (the runs of `run --group NAME`, merged
into one).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from tracker.analysis.compare import Comparison, Options, RunSide, compare_runs
from tracker.analysis.run_metrics import Estimate, load_estimates, probe_estimates
from tracker.documents.stored_run import LoadedRun, load_run, single
from tracker.errors import UsageError
from tracker.records import RunRecord
from tracker.store import Store
from tracker.store.liveness import ABANDONED

_SPEC = re.compile(r"^(?:(?P<id>\d+)|(?P<kind>tag|last|best|group):(?P<arg>.*))$")
MAX_BASELINE_RUNS = 1000


@dataclass(frozen=True)
class BaselineSpec:
    kind: str  # "run", "tag", "last", "best", "group"
    arg: str

    def __str__(self) -> str:
        return self.arg if self.kind == "run" else f"{self.kind}:{self.arg}"


def parse_spec(text: str) -> BaselineSpec:
    """A baseline SPEC, or a UsageError saying what SPECs look like."""
    match = _SPEC.match(text.strip())
    hint = "use a run id, tag:NAME, last:N, best:N or group:NAME (e.g. --baseline last:5)"
    if match is None:
        raise UsageError(f"--baseline: {text!r} is not a baseline; {hint}")
    if match["id"]:
        return BaselineSpec("run", match["id"])
    kind, arg = match["kind"], match["arg"].strip()
    if kind in ("last", "best"):
        if not arg.isdigit() or not 1 <= int(arg) <= MAX_BASELINE_RUNS:
            raise UsageError(
                f"--baseline: {kind}:{arg} needs a count from 1 to {MAX_BASELINE_RUNS}, "
                f"e.g. {kind}:5"
            )
    elif not arg:
        raise UsageError(f"--baseline: {kind}: needs a name; {hint}")
    return BaselineSpec(kind, arg)


def resolve_baseline(store: Store, candidate: RunRecord, spec: BaselineSpec) -> list[LoadedRun]:
    """The baseline runs `spec` names for `candidate`, loaded (see `baseline_records`)."""
    if spec.kind == "group":
        group = load_run(store, f"group:{spec.arg}")
        # Compared even when its scenario differs, with a warning, as an explicit run id is.
        return [group]
    return [single(store, r) for r in baseline_records(store, candidate, spec)]


def baseline_records(store: Store, candidate: RunRecord, spec: BaselineSpec) -> list[RunRecord]:
    """The baseline runs `spec` names for `candidate` (never the candidate itself).

    An explicit run id is taken as given (a comparison across scenarios is then warned
    about); the other kinds keep only comparable completed runs. A tag that no run carries
    is most likely a typo, so it is an error; comparable runs missing is not (a nightly
    job's first night has no history yet).
    """
    if spec.kind == "run":
        run = store.get_run(spec.arg)
        if run.id == candidate.id:
            raise UsageError(f"--baseline: run {run.id} is the run being compared")
        usable = (run.status == "completed" and run.summary) or (
            run.status == ABANDONED and store.has_windows(run.id)  # killed, but it has data
        )
        if not usable:
            raise UsageError(
                f"--baseline: run {run.id} is {run.status}; compare against a completed run"
            )
        return [run]
    if spec.kind == "tag":
        tagged = store.tagged_runs(spec.arg, limit=MAX_BASELINE_RUNS)
        if not tagged:
            raise UsageError(
                f"--baseline: no run is tagged {spec.arg!r}; tag runs with `run --tag NAME`"
            )
        return [
            r
            for r in tagged
            if r.id != candidate.id
            and r.status == "completed"
            and r.scenario_key == candidate.scenario_key
        ]
    runs = store.comparable_runs(
        candidate.scenario_key, before_id=candidate.id, limit=int(spec.arg)
    )
    if spec.kind == "best" and runs:
        return [min(runs, key=_median_latency)]
    return runs


def _median_latency(run: RunRecord) -> float:
    latency = (run.summary or {}).get("latency_ms") or {}
    value = latency.get("p50")
    return float(value) if value is not None else float("inf")


def run_side(loaded: LoadedRun) -> RunSide:
    """A run as a comparison sees it, from its summary (or, for groups and for runs stored
    before summaries carried estimates, recomputed from its windows and samples)."""
    run = loaded.record
    summary = run.summary or {}
    stored = summary.get("metrics")
    if isinstance(stored, dict):
        estimates = {name: Estimate.from_json(v) for name, v in stored.items()}
        saturated = bool((summary.get("driver") or {}).get("saturated"))
    else:
        doc = loaded.document()
        estimates = load_estimates(doc, loaded.windows())
        estimates.update(probe_estimates(doc, loaded.samples()))
        saturated = bool(doc["driver"]["saturated"])
    return RunSide(
        run_id=run.id,
        scenario=run.scenario,
        scenario_key=run.scenario_key,
        status=run.status,
        estimates=estimates,
        environment=run.environment,
        saturated=saturated,
    )


def compare_stored(
    store: Store, candidate: LoadedRun, spec: BaselineSpec, options: Options
) -> Comparison:
    """Compare a stored run (or group) with the baseline `spec` resolves to."""
    baseline = resolve_baseline(store, candidate.record, spec)
    comparison = compare_runs(
        run_side(candidate),
        [run_side(b) for b in baseline],
        spec=str(spec),
        options=options,
    )
    # The history speaks for "recent nights" baselines; a tag is a chosen reference set.
    if spec.kind in ("last", "best") and candidate.group is None:
        comparison.add_change_points(current_alerts(store, candidate.record))
    return comparison


def current_alerts(store: Store, run: RunRecord) -> list[dict[str, Any]]:
    """For each metric, the latest change point of the scenario's series up to `run`
    when it is for the worse and nobody accepted it: the level the run is at."""
    from tracker.regressions.history import scenario_history

    history = scenario_history(store, run.scenario_key, up_to=run.id)
    latest: dict[str, Any] = {}
    for change in history.changes:
        if change.metric not in latest or change.run_id > latest[change.metric].run_id:
            latest[change.metric] = change
    return [c.to_json() for c in latest.values() if c.alerts]
