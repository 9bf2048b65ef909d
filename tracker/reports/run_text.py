"""A run document for a person: the end-of-run summary and `perfsleuth show`.

JSON output is the document itself (`run_json`; docs/json.md).
"""

from __future__ import annotations

from typing import Any

from probes import family_of
from tracker.units import format_ms

_PCTS = ("p50", "p90", "p99", "max")


def _pct_row(label: str, pct: dict[str, float] | None) -> str:
    if not pct:
        return f"  {label:<22} -"
    cells = "  ".join(f"{name} {format_ms(pct.get(name)):>8}" for name in _PCTS)
    return f"  {label:<22} {cells}"


def render_run(doc: dict[str, Any]) -> str:
    """A compact, aligned summary of one run."""
    lines = [
        f"run {doc['run_id']} · {doc['status']} · {doc['scenario']}"
        + (f" · tag {doc['tag']}" if doc.get("tag") else ""),
        f"  started {doc['started_at']}  duration {doc.get('duration_s') or 0:.1f}s"
        f"  measured {doc.get('measured_s', 0):.1f}s",
    ]
    if doc.get("error"):
        lines.append(f"  error: {doc['error']}")
    if doc.get("load"):
        lines.extend(_load_lines(doc))
    lines.extend(_probe_lines(doc))
    return "\n".join(lines)


def _load_lines(doc: dict[str, Any]) -> list[str]:
    lines: list[str] = []
    req = doc["requests"]
    rate = doc.get("target_rate_rps")
    lines.append(
        f"  requests {req['total']}  ok {req['ok']}  errors {req['errors']}"
        f" ({req['error_rate'] * 100:.1f}%)  throughput {doc['throughput_rps']:.2f} req/s"
        + (f" (target {rate:g})" if rate else "")
        + (
            f" ({doc['target_session_rate_per_s']:g} sessions/s)"
            if doc.get("target_session_rate_per_s")
            else ""
        )
    )
    errors = {k: v for k, v in req["errors_by_class"].items() if v}
    if errors:
        lines.append("  errors by class: " + ", ".join(f"{k} {v}" for k, v in errors.items()))
    if req.get("dropped"):
        lines.append(f"  dropped at the in-flight cap: {req['dropped']}")
    lines.append(_pct_row("latency (corrected)", doc.get("latency_ms")))
    lines.append(_pct_row("latency (uncorrected)", doc.get("latency_uncorrected_ms")))
    for name, stats in (doc.get("requests_by_name") or {}).items():
        lines.append(
            _pct_row(f"  {name} ({stats['ok']} ok, {stats['errors']} err)", stats.get("latency_ms"))
        )
    sessions = doc.get("sessions")
    if sessions:
        lines.append(
            _pct_row(
                f"sessions ({sessions['ok']} ok, {sessions['failed']} failed)",
                sessions.get("duration_ms"),
            )
        )
    tasks = doc.get("tasks")
    if tasks:
        lines.append(
            _pct_row(f"tasks ({tasks['ok']} ok, {tasks['failed']} failed)", tasks.get("e2e_ms"))
        )
        lines.append(_pct_row("  task submission", tasks.get("submit_ms")))
        if tasks.get("queue_ms"):
            lines.append(_pct_row("  task queue wait", tasks.get("queue_ms")))
        lines.append(_pct_row("  status requests", tasks.get("poll_ms")))
        lines.append(
            f"  {tasks['polls']} status requests, {tasks['polls_per_task']:.1f} a task; "
            f"{tasks['completed_per_s']:.2f} tasks/s done"
        )
    llm = doc.get("llm")
    if llm:
        lines.append(_pct_row("TTFT", llm.get("ttft_ms")))
        lines.append(_pct_row("ITL", llm.get("itl_ms")))
        lines.append(_pct_row("TPOT", llm.get("tpot_ms")))
        for turn, pct in (llm.get("ttft_by_turn_ms") or {}).items():
            lines.append(_pct_row(f"  TTFT turn {turn}", pct))
        goodput = llm.get("goodput_rps")
        lines.append(
            f"  output tokens {llm['output_tokens']}  ({llm['output_tokens_per_s']:.1f} tokens/s)"
            + (f"  goodput {goodput:.2f} req/s" if goodput is not None else "")
        )
    driver = doc.get("driver") or {}
    lag = driver.get("schedule_lag_ms")
    loop_lag = driver.get("loop_lag_ms")
    cpu = driver.get("cpu_pct")
    parts = []
    if lag:
        parts.append(f"schedule lag p99 {format_ms(lag.get('p99'))}")
    if loop_lag:
        parts.append(f"event-loop lag p99 {format_ms(loop_lag.get('p99'))}")
    if cpu:
        parts.append(f"cpu {cpu['mean']:.0f}% (max {cpu['max']:.0f}%)")
    if parts:
        lines.append(
            "  driver "
            + "  ".join(parts)
            + (
                "  (SATURATED: the driver could not keep up; latencies partly measure it)"
                if driver.get("saturated")
                else ""
            )
        )
    return lines


def _probe_lines(doc: dict[str, Any]) -> list[str]:
    lines: list[str] = []
    probes = doc.get("probes") or {}
    if probes:
        lines.append("  probes (mean / max):")
        for name, stats in probes.items():
            if "<" in (family_of(name) or ""):
                continue  # per core / pid / disk: in the JSON, too many for a summary
            unit = stats.get("unit") or ""
            lines.append(f"    {name:<38} {stats['mean']:>10.1f} / {stats['max']:<10.1f} {unit}")
    stacks = doc.get("stacks")
    if stacks:
        lines.append(f"  where Python code ran ({stacks['samples']} py-spy samples, self time):")
        for row in stacks["top_self"][:5]:
            lines.append(f"    {row['pct']:5.1f}%  {row['function']}")
    for probe, reason in (doc.get("probes_unavailable") or {}).items():
        lines.append(f"  probe {probe} unavailable: {reason}")
    for event in doc.get("probe_events") or []:
        lines.append(f"  probes at {event['t_s']:.1f}s: {event['note']}")
    for result in doc.get("slo") or []:
        verdict = "ok" if result["passed"] else "FAILED"
        value = "no data" if result["value"] is None else f"{result['value']:.4g}"
        lines.append(f"  SLO {result['threshold']}: {value} {verdict}")
    for finding in doc.get("findings") or []:
        lines.extend(render_finding(finding))
    return lines


def render_finding(finding: dict[str, Any]) -> list[str]:
    """A finding: when, what, the cause with its confidence, evidence and a next step."""
    change = (
        f"{finding['change_pct']:+.1f} pt"
        if finding["metric"] == "error_rate"
        else f"{finding['change_pct']:+.0f}%"
    )
    others = ", ".join(f"{c['cause']} {c['score']:.2f}" for c in finding["causes"][1:])
    lines = [
        f"  degraded {finding['start_s']:.0f}-{finding['end_s']:.0f}s: "
        f"{finding['metric'].replace('_', ' ')} {change} -> cause: {finding['cause'].upper()} "
        f"(confidence {finding['confidence']:.2f}{'; also ' + others if others else ''})"
    ]
    lines.extend(f"    - {line}" for line in finding["evidence"])
    if finding.get("advice"):
        lines.append(f"    next step: {finding['advice']}")
    return lines


def render(doc: dict[str, Any]) -> str:
    return render_run(doc)
