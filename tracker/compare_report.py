"""Renderings of a comparison: text (a terminal), Markdown (a PR or nightly comment),
JUnit XML (CI test reports). JSON is `Comparison.to_json()`.

Used by `perfsleuth compare` and `run --baseline`. Every rendering is a pure function
of the comparison's JSON document, so the JSON and the reports always agree.
"""

from __future__ import annotations

from typing import Any
from xml.etree import ElementTree as ET

VERDICT_SYMBOL = {"regressed": "▲", "improved": "▼", "unchanged": "=", "inconclusive": "?"}
_MD_VERDICT = {
    "regressed": "🔴 regressed",
    "improved": "🟢 improved",
    "unchanged": "⚪ unchanged",
    "inconclusive": "🟡 inconclusive",
}


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


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|")


def render_markdown(doc: dict[str, Any]) -> str:
    lines = [
        f"### perfsleuth: {_MD_VERDICT[doc['verdict']]}",
        "",
        f"Run **{doc['run_id']}** (`{_md_cell(doc['scenario'])}`) compared with "
        f"{_md_cell(baseline_label(doc))}.",
        "",
    ]
    rows = shown_metrics(doc, True)
    if rows:
        level = f"{doc['ci_level'] * 100:.1f}% CI"
        lines += [
            f"| metric | baseline | this run | change | {level} | verdict |",
            "|---|---:|---:|---:|---:|---|",
        ]
        lines += [
            f"| `{m['name']}` | {metric_value(m['baseline'], m['unit'])} | "
            f"{metric_value(m['candidate'], m['unit'])} | {change_text(m)} | {interval_text(m)} | "
            f"{_MD_VERDICT[m['verdict']]} |"
            for m in rows
        ]
        lines.append("")
    if doc.get("change_points"):
        lines.append("**Change points in the history** (not accepted)")
        lines.append("")
        lines += [f"- {_md_cell(change_point_text(cp))}" for cp in doc["change_points"]]
        lines.append("")
    if doc["causes"]:
        lines.append("**Likely cause**")
        lines.append("")
        for cause in doc["causes"]:
            lines.append(f"- **{cause['cause']}** (score {cause['score']:.2f})")
            lines.extend(f"  - {_md_cell(e)}" for e in cause["evidence"])
        lines.append("")
    probes = shown_metrics(doc, False)
    if probes:
        lines += [
            "<details><summary>Probe changes</summary>",
            "",
            "| probe | baseline | this run | change | verdict |",
            "|---|---:|---:|---:|---|",
        ]
        lines += [
            f"| `{m['name'].removeprefix('probes.')}` | {metric_value(m['baseline'], m['unit'])} | "
            f"{metric_value(m['candidate'], m['unit'])} | {change_text(m)} | {m['verdict']} |"
            for m in probes
        ]
        lines += ["", "</details>", ""]
    for change in doc["environment_changes"]:
        lines.append(
            f"- changed `{change['key']}`: {_md_cell(', '.join(change['baseline']))} → "
            f"{_md_cell(str(change['candidate']))}"
        )
    lines.extend(f"> ⚠️ {_md_cell(w)}" for w in doc["warnings"])
    lines.extend(f"- {_md_cell(n)}" for n in doc["notes"])
    return "\n".join(lines).rstrip() + "\n"


def render_junit(doc: dict[str, Any]) -> str:
    """One test case per gating metric: a regression fails, an inconclusive one is
    skipped (CI systems show it apart), the rest pass."""
    cases = shown_metrics(doc, True)
    history = doc.get("change_points") or []
    suite = ET.Element(
        "testsuite",
        {
            "name": f"perfsleuth compare: {doc['scenario']}",
            "tests": str(len(cases) + len(history)),
            "failures": str(sum(m["verdict"] == "regressed" for m in cases) + len(history)),
            "skipped": str(sum(m["verdict"] == "inconclusive" for m in cases)),
            "errors": "0",
        },
    )
    props = ET.SubElement(suite, "properties")
    for name, value in (
        ("run_id", str(doc["run_id"])),
        ("baseline", doc["baseline"]["spec"]),
        ("baseline_runs", ",".join(map(str, doc["baseline"]["run_ids"]))),
        ("verdict", doc["verdict"]),
    ):
        ET.SubElement(props, "property", {"name": name, "value": value})
    for m in cases:
        case = ET.SubElement(
            suite, "testcase", {"classname": "perfsleuth.compare", "name": m["name"]}
        )
        summary = (
            f"{m['name']}: {metric_value(m['baseline'], m['unit'])} -> "
            f"{metric_value(m['candidate'], m['unit'])} ({change_text(m)}, CI {interval_text(m)})"
        )
        if m["verdict"] == "regressed":
            failure = ET.SubElement(case, "failure", {"message": summary, "type": "regression"})
            causes = [
                f"likely cause: {c['cause']}: {'; '.join(c['evidence'])}" for c in doc["causes"]
            ]
            failure.text = "\n".join([summary, *causes])
        elif m["verdict"] == "inconclusive":
            ET.SubElement(case, "skipped", {"message": f"inconclusive: {summary}"})
        else:
            ET.SubElement(case, "system-out").text = f"{m['verdict']}: {summary}"
    for cp in doc.get("change_points") or []:
        case = ET.SubElement(
            suite, "testcase", {"classname": "perfsleuth.history", "name": cp["metric"]}
        )
        ET.SubElement(case, "failure", {"message": change_point_text(cp), "type": "change_point"})
    if doc["warnings"]:
        ET.SubElement(suite, "system-err").text = "\n".join(doc["warnings"])
    ET.indent(suite)
    body = ET.tostring(suite, encoding="unicode")
    return f'<?xml version="1.0" encoding="UTF-8"?>\n{body}\n'


RENDERERS = {"text": render_text, "md": render_markdown, "junit": render_junit}
