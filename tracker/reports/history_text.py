"""`perfsleuth history` as text: the stored runs, newest first, or one scenario's trends
(sparklines) and change points, with what to type to accept one."""

from __future__ import annotations

from tracker.records import RunRecord
from tracker.regressions.history import History

_BARS = "▁▂▃▄▅▆▇█"


def sparkline(values: list[float]) -> str:
    lo, hi = min(values), max(values)
    span = hi - lo
    return "".join(_BARS[int((v - lo) / span * 7.999)] if span else _BARS[3] for v in values)


def render_run_list(runs: list[RunRecord], location: str) -> str:
    if not runs:
        return f"no runs stored yet in {location}"
    lines = [
        f"{'id':>5}  {'started (UTC)':<19}  {'status':<11}  {'p50 ms':>9}  {'p99 ms':>9}  scenario"
    ]
    for r in runs:
        latency = (r.summary or {}).get("latency_ms") or {}
        p50 = f"{latency['p50']:.1f}" if "p50" in latency else "-"
        p99 = f"{latency['p99']:.1f}" if "p99" in latency else "-"
        started = r.started_at.strftime("%Y-%m-%d %H:%M:%S")
        tag = f" [{r.tag}]" if r.tag else ""
        lines.append(
            f"{r.id:>5}  {started:<19}  {r.status:<11}  {p50:>9}  {p99:>9}  {r.scenario}{tag}"
            f"  ({r.scenario_key[:8]})"
        )
    lines.append("trends and change points of one scenario: perfsleuth history --scenario NAME|KEY")
    return "\n".join(lines)


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


def run_json(r: RunRecord) -> dict[str, object]:
    return {
        "run_id": r.id,
        "status": r.status,
        "scenario": r.scenario,
        "scenario_key": r.scenario_key,
        "tag": r.tag,
        "started_at": r.started_at.isoformat(),
        "latency_ms": (r.summary or {}).get("latency_ms"),
    }
