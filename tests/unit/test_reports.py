"""Every registered output format (tracker.reports.FORMATS) renders a fixed input of its
kind exactly as reviewed: one reference file per format under expected/reports/.

A new format fails here until its reference output exists and has been read by a person:
write it with PERFSLEUTH_UPDATE_EXPECTED=1, then review the file before committing it.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tracker import reports
from tracker.analysis.compare import RunSide, compare_runs
from tracker.analysis.run_metrics import Estimate
from tracker.documents.run_document import run_document
from tracker.records import FindingRecord, ProfileRecord, RunRecord, SampleRecord
from tracker.records.window import LATENCY, TTFT, Window

EXPECTED = Path(__file__).parent / "expected" / "reports"
STARTED = datetime(2026, 12, 1, 2, 0, 0, tzinfo=UTC)
SUFFIX = {"json": "json", "md": "md", "junit": "xml", "speedscope": "json", "csv": "csv",
          "hdr": "hlog", "collapsed": "txt", "text": "txt"}  # fmt: skip


def _windows() -> list[Window]:
    out = []
    for i in range(4):
        w = Window(index=i, start_s=float(i), warmup=i == 0, sent=10, completed=10, ok=9)
        w.errors, w.output_tokens = 1, 320
        w.errors_by_class = {"http_5xx": 1}
        for k in range(9):
            w.hist(LATENCY).record_ms(100.0 + 10 * k + i)
            w.hist(TTFT).record_ms(20.0 + k)
        out.append(w)
    return out


def _run_document() -> dict[str, Any]:
    record = RunRecord(
        id=7, status="completed", scenario="completions", scenario_key="k" * 64,
        scenario_json={"load": {"model": "open", "rate": 10.0, "duration_s": 3.0}},
        tag="nightly", started_at=STARTED, ended_at=STARTED, duration_s=4.0,
        target_url="http://127.0.0.1:8000/v1/completions", load_model="open",
        environment={"host": "ci", "cpu_count": 2}, summary={"abandoned": 0},
        probes_unavailable={"gpu": "no NVIDIA driver"}, error=None,
    )  # fmt: skip
    samples = [
        SampleRecord(t / 4, {"cpu.process_pct": 50.0 + t, "mem.rss_mb": 512.0}) for t in range(16)
    ]
    finding = FindingRecord(
        start_s=2.0, end_s=3.0, metric="latency_ms.p50", change_pct=40.0, cause="contention",
        causes=[{"cause": "contention", "score": 0.8}], confidence=0.8,
        evidence=["run delay 3x the steady state"], advice="look at what else runs",
    )  # fmt: skip
    profiles = [ProfileRecord(1.0, 1.0, 10, {"main;serve;handle": 7, "main;gc": 3})]
    return run_document(record, _windows(), samples, [finding], profiles)


def _compare_document() -> dict[str, Any]:
    def side(run_id: int, slow: float) -> RunSide:
        estimates = {
            "latency_ms.p50": Estimate(100.0 * slow, 1.0),
            "latency_ms.p99": Estimate(200.0 * slow, 4.0),
            "throughput_rps": Estimate(20.0, 0.1),
            "probes.cpu.run_delay_ms_per_s": Estimate(10.0 * slow**4, 0.5),
        }
        env = {"cpu_model": "Test CPU", "cpu_count": 2, "git_commit": "abc"}
        return RunSide(run_id, "completions", "k", "completed", estimates, env)

    return compare_runs(side(9, 1.3), [side(i, 1.0) for i in (4, 5, 6)], spec="last:3").to_json()


def _render(fmt: reports.ReportFormat) -> str:
    render = fmt.renderer()
    if fmt.kind == "run":
        return str(render(_run_document()))
    if fmt.kind == "compare":
        return str(render(_compare_document()))
    if fmt.kind == "stacks":
        return str(render({"main;serve;handle": 7, "main;gc": 3}, run_id=7))
    exported = render(
        _windows(), run_id=7, started_at=STARTED, scenario="completions", metrics=(),
        include_warmup=False,
    )  # fmt: skip
    return str(exported.text)


@pytest.mark.parametrize("fmt", reports.FORMATS, ids=lambda f: f"{f.kind}-{f.name}")
def test_every_format_renders_its_reference_output(fmt: reports.ReportFormat) -> None:
    path = EXPECTED / f"{fmt.kind}_{fmt.name}.{SUFFIX.get(fmt.name, 'txt')}"
    text = _render(fmt)
    if os.environ.get("PERFSLEUTH_UPDATE_EXPECTED"):
        path.write_text(text, encoding="utf-8")
    assert path.exists(), f"no reference output for {fmt.kind} format {fmt.name!r}: see docstring"
    assert text == path.read_text(encoding="utf-8")


def test_the_cli_offers_exactly_the_registered_formats() -> None:
    from tracker.cli import compare, export

    def choices(command: Any) -> tuple[str, ...]:
        option = next(p for p in command.params if p.name == "fmt")
        return tuple(option.type.choices)

    assert choices(compare.command) == reports.names("compare")
    assert choices(export.command) == reports.names("stacks", "windows")


def test_each_kind_is_documented_and_names_are_unique() -> None:
    assert {f.kind for f in reports.FORMATS} == set(reports.RENDER_SIGNATURES)
    keys = [(f.kind, f.name) for f in reports.FORMATS]
    assert len(keys) == len(set(keys))
    with pytest.raises(KeyError, match="known: text, md, json, junit"):
        reports.get("compare", "html")
