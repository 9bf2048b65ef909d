"""`perfsleuth compare --format junit`: a comparison as JUnit XML, one test case per gating
metric, so CI systems show a regression as a failed test. A pure function of the compare
JSON document (docs/json.md).
"""

from __future__ import annotations

from typing import Any
from xml.etree import ElementTree as ET

from tracker.reports.compare_text import (
    change_point_text,
    change_text,
    interval_text,
    metric_value,
    shown_metrics,
)


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


def render(doc: dict[str, Any]) -> str:
    return render_junit(doc)
