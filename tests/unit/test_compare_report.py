"""Compare reports render as reviewed: Markdown and JUnit against expected files."""

from __future__ import annotations

import os
from pathlib import Path
from xml.etree import ElementTree as ET

import pytest

from tracker.analysis.compare import RunSide, compare_runs
from tracker.analysis.run_metrics import Estimate
from tracker.reports.compare_junit import render_junit
from tracker.reports.compare_markdown import render_markdown
from tracker.reports.compare_text import render_text

EXPECTED = Path(__file__).parent / "expected"


def _side(run_id: int, slow: float, ctx: float, commit: str) -> RunSide:
    estimates = {
        "latency_ms.p50": Estimate(100.0 * slow, 1.0),
        "latency_ms.p90": Estimate(150.0 * slow, 2.0),
        "latency_ms.p99": Estimate(200.0 * slow, 4.0),
        "throughput_rps": Estimate(20.0, 0.1),
        "error_rate": Estimate(0.001, 0.0005),
        "llm.ttft_ms.p50": Estimate(40.0, 0.5),
        "probes.cpu.ctx_switches_involuntary_per_s": Estimate(ctx, ctx * 0.05),
        "probes.cpu.run_delay_ms_per_s": Estimate(ctx / 10, ctx / 200),
        "probes.mem.rss_mb": Estimate(512.0, 1.0),
    }
    env = {"cpu_model": "Test CPU", "cpu_count": 2, "git_commit": commit}
    return RunSide(run_id, "POST /v1/completions", "k", "completed", estimates, env)


def document() -> dict:
    baseline = [_side(i, 1.0 + i / 1000, 100.0, "aaa") for i in (4, 5, 6)]
    comparison = compare_runs(_side(9, 1.3, 2500.0, "bbb"), baseline, spec="last:3")
    return comparison.to_json()


@pytest.mark.parametrize(
    ("render", "name"), [(render_markdown, "compare.md"), (render_junit, "compare.junit.xml")]
)
def test_report_matches_the_expected_file(render, name: str) -> None:
    text = render(document())
    path = EXPECTED / name
    if os.environ.get("PERFSLEUTH_UPDATE_EXPECTED"):
        path.write_text(text, encoding="utf-8")
    assert text == path.read_text(encoding="utf-8")


def test_junit_is_well_formed_and_fails_on_regressions() -> None:
    suite = ET.fromstring(render_junit(document()))
    assert suite.tag == "testsuite"
    failed = [c.get("name") for c in suite.iter("testcase") if c.find("failure") is not None]
    assert failed == ["latency_ms.p50", "latency_ms.p90", "latency_ms.p99"]
    assert suite.get("failures") == "3"
    failure = suite.find("testcase/failure")
    assert failure is not None and "contention" in (failure.text or "")


def test_text_names_the_verdict_and_the_cause() -> None:
    text = render_text(document())
    assert text.splitlines()[0].endswith("REGRESSED")
    assert "likely cause: contention" in text
    assert "changed: git_commit: aaa -> bbb" in text
