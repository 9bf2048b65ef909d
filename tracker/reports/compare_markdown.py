"""`perfsleuth compare --format md`: a comparison as Markdown, for a pull request or a
nightly comment. A pure function of the compare JSON document (docs/json.md).
"""

from __future__ import annotations

from typing import Any

from tracker.reports.compare_text import (
    baseline_label,
    change_point_text,
    change_text,
    interval_text,
    metric_value,
    shown_metrics,
)

_MD_VERDICT = {
    "regressed": "🔴 regressed",
    "improved": "🟢 improved",
    "unchanged": "⚪ unchanged",
    "inconclusive": "🟡 inconclusive",
}


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


def render(doc: dict[str, Any]) -> str:
    return render_markdown(doc)
