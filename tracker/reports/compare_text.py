"""`perfsleuth compare` (and `run --baseline`) on a terminal: a comparison as text; and
the formatters of values, changes and intervals the other compare formats and the compare
screen share.

Every rendering is a pure function of the compare JSON document (docs/json.md), so the
JSON and the reports always agree.
"""

from __future__ import annotations

from typing import Any

VERDICT_SYMBOL = {"regressed": "▲", "improved": "▼", "unchanged": "=", "inconclusive": "?"}


def metric_value(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    if unit == "":  # a rate such as error_rate: show it as a percentage
        return f"{value * 100:.2f}%"
    if abs(value) >= 1000:
        text = f"{value:,.0f}"
    elif abs(value) >= 100:
        text = f"{value:.1f}"
    else:
        text = f"{value:.3g}" if abs(value) < 1 else f"{value:.2f}"
    return with_unit(text, unit)


def with_unit(text: str, unit: str) -> str:
    """`12 ms`, `3.5 MiB/s`, and `2,500/s` for a bare rate (unit `1/s`)."""
    if unit.startswith("1/"):
        return f"{text}/{unit[2:]}"
    return f"{text} {unit}".rstrip()


def change_text(metric: dict[str, Any]) -> str:
    if "change_abs" in metric:
        change = metric.get("change_abs")
        return "-" if change is None else f"{change * 100:+.2f} pt"
    change = metric.get("change_pct")
    return "-" if change is None else f"{change:+.1f}%"


def interval_text(metric: dict[str, Any]) -> str:
    if "ci_abs" in metric:
        ci = metric.get("ci_abs")
        return "-" if not ci else f"[{ci[0] * 100:+.2f}, {ci[1] * 100:+.2f}] pt"
    ci = metric.get("ci_pct")
    return "-" if not ci else f"[{ci[0]:+.1f}%, {ci[1]:+.1f}%]"


def baseline_label(doc: dict[str, Any]) -> str:
    ids = doc["baseline"]["run_ids"]
    spec = doc["baseline"]["spec"]
    if not ids:
        return f"{spec} (no comparable runs)"
    runs = ", ".join(str(i) for i in ids[:10]) + (", ..." if len(ids) > 10 else "")
    return f"{spec} (run{'s' if len(ids) > 1 else ''} {runs})"


def shown_metrics(doc: dict[str, Any], gating: bool) -> list[dict[str, Any]]:
    """Gating metrics all; probe metrics only when they changed (the rest is noise)."""
    return [
        m
        for m in doc["metrics"]
        if m["gating"] == gating and (gating or m["verdict"] != "unchanged")
    ]


def change_point_text(cp: dict[str, Any]) -> str:
    return (
        f"{cp['metric']} moved {cp['change_pct']:+.1f}% ({cp['kind']}) at run {cp['run_id']}: "
        f"{cp['before']:.4g} -> {cp['after']:.4g}"
    )


def render_text(doc: dict[str, Any]) -> str:
    lines = [
        f"run {doc['run_id']} ({doc['scenario']}) vs {baseline_label(doc)}: "
        f"{doc['verdict'].upper()}",
        "",
    ]
    rows = shown_metrics(doc, True) + shown_metrics(doc, False)
    if rows:
        width = max(len(m["name"]) for m in rows)
        level = f"{doc['ci_level'] * 100:.1f}% CI"
        lines.append(
            f"  {'metric':<{width}}  {'baseline':>12}  {'this run':>12}  {'change':>10}  "
            f"{level:>22}  verdict"
        )
        for m in rows:
            lines.append(
                f"  {m['name']:<{width}}  {metric_value(m['baseline'], m['unit']):>12}  "
                f"{metric_value(m['candidate'], m['unit']):>12}  {change_text(m):>10}  "
                f"{interval_text(m):>22}  {VERDICT_SYMBOL[m['verdict']]} {m['verdict']}"
                + ("" if m["gating"] else "  (probe)")
            )
    for cp in doc.get("change_points") or []:
        lines.append("")
        lines.append(f"history: {change_point_text(cp)}")
        lines.append(
            f"  accept it: perfsleuth history ack {cp['run_id']} --metric {cp['metric']} --note WHY"
        )
    for cause in doc["causes"]:
        lines.append("")
        lines.append(f"likely cause: {cause['cause']} (score {cause['score']:.2f})")
        lines.extend(f"  - {line}" for line in cause["evidence"])
    for change in doc["environment_changes"]:
        lines.append(
            f"changed: {change['key']}: {', '.join(change['baseline'])} -> {change['candidate']}"
        )
    lines.extend(f"warning: {w}" for w in doc["warnings"])
    lines.extend(f"note: {n}" for n in doc["notes"])
    return "\n".join(lines)


def render(doc: dict[str, Any]) -> str:
    return render_text(doc)
