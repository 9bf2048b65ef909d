"""What `perfsleuth history` and `history ack` do once their flags are parsed."""

from __future__ import annotations

import json
import sys

import click

from tracker.history import (
    HISTORY_METRICS,
    SERIES_LIMIT,
    History,
    acknowledge,
    find_scenario,
    scenario_history,
)
from tracker.store import RunRecord, Store

_BARS = "▁▂▃▄▅▆▇█"
EXIT_CHANGE = 1


def sparkline(values: list[float]) -> str:
    lo, hi = min(values), max(values)
    span = hi - lo
    return "".join(_BARS[int((v - lo) / span * 7.999)] if span else _BARS[3] for v in values)


def list_runs(runs: list[RunRecord], location: str) -> None:
    if not runs:
        click.echo(f"no runs stored yet in {location}")
        return
    click.echo(
        f"{'id':>5}  {'started (UTC)':<19}  {'status':<11}  {'p50 ms':>9}  {'p99 ms':>9}  scenario"
    )
    for r in runs:
        latency = (r.summary or {}).get("latency_ms") or {}
        p50 = f"{latency['p50']:.1f}" if "p50" in latency else "-"
        p99 = f"{latency['p99']:.1f}" if "p99" in latency else "-"
        started = r.started_at.strftime("%Y-%m-%d %H:%M:%S")
        tag = f" [{r.tag}]" if r.tag else ""
        click.echo(
            f"{r.id:>5}  {started:<19}  {r.status:<11}  {p50:>9}  {p99:>9}  {r.scenario}{tag}"
            f"  ({r.scenario_key[:8]})"
        )
    click.echo("trends and change points of one scenario: perfsleuth history --scenario NAME|KEY")


def render_history(history: History) -> str:
    lines = [
        f"scenario {history.scenario} ({history.scenario_key[:8]}): {len(history.runs)} "
        f"completed runs, {history.runs[0].id}..{history.runs[-1].id}"
        if history.runs
        else f"scenario {history.scenario_key[:8]}: no completed runs",
        "",
    ]
    width = max((len(m) for m in history.series), default=10)
    for metric, points in history.series.items():
        values = [v for _, v in points]
        lines.append(
            f"  {metric:<{width}}  {sparkline(values[-60:])}  last {values[-1]:.4g}"
            f"  (min {min(values):.4g}, max {max(values):.4g})"
        )
    lines.append("")
    if not history.changes:
        lines.append("no change points")
    for c in history.changes:
        state = (
            f"accepted{': ' + c.note if c.note else ''}"
            if c.acknowledged
            else ("ALERT" if c.alerts else "below the minimum effect" if c.worse else "better")
        )
        lines.append(
            f"  {c.metric:<{width}}  at run {c.run_id}: {c.before:.4g} -> {c.after:.4g} "
            f"({c.change_pct:+.1f}%, {c.kind}, p={c.p_value:.2g})  {state}"
        )
        if c.alerts:
            lines.append(
                f"  {'':<{width}}  accept it: perfsleuth history ack {c.run_id} "
                f"--metric {c.metric} --note WHY"
            )
    return "\n".join(lines)


def history(
    scenario: str | None,
    *,
    limit: int | None,
    as_json: bool,
    fail_on_change: bool,
    db_url: str | None,
) -> None:
    store = Store.open(db_url)
    if scenario is None:
        runs = store.list_runs(limit or 20)
        if as_json:
            click.echo(json.dumps([_run_json(r) for r in runs], indent=2))
        else:
            list_runs(runs, store.location)
        return
    result = scenario_history(store, find_scenario(store, scenario), limit=limit or SERIES_LIMIT)
    click.echo(json.dumps(result.to_json(), indent=2) if as_json else render_history(result))
    if fail_on_change and any(c.alerts for c in result.changes):
        sys.exit(EXIT_CHANGE)


def ack(run_spec: str, *, metric: str | None, note: str | None, db_url: str | None) -> None:
    store = Store.open(db_url)
    run = store.get_run(run_spec)
    done = acknowledge(store, run, metric, note)
    if done:
        click.echo(f"accepted the change of {', '.join(done)} at run {run.id}")
    else:
        click.echo(f"already accepted at run {run.id}")


def _run_json(r: RunRecord) -> dict[str, object]:
    return {
        "run_id": r.id,
        "status": r.status,
        "scenario": r.scenario,
        "scenario_key": r.scenario_key,
        "tag": r.tag,
        "started_at": r.started_at.isoformat(),
        "latency_ms": (r.summary or {}).get("latency_ms"),
    }


__all__ = ["HISTORY_METRICS", "ack", "history"]
