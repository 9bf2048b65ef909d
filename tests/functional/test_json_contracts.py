"""The JSON contracts of docs/json.md, held to their schemas (docs/schemas/).

Real output of the real CLI (a short streamed run of the example server on 127.0.0.1 and
its `show --json`, a group of runs, `run --baseline`, `compare --format json`, `attach`
on a sleeping process) is validated with `jsonschema`; documents built in-process fill
the sections a short run leaves null (sessions, tasks, findings, SLOs, change points).
Fast checks keep the schemas valid and docs/json.md naming every key they declare.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from cli_helpers import perfsleuth, show_json
from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from support.llm_server import running_llm_server
from support.processes import Spawn

from tracker.analysis.compare import COMPARE_SCHEMA_VERSION, RunSide, compare_runs
from tracker.analysis.run_metrics import Estimate
from tracker.documents.run_document import RUN_SCHEMA_VERSION, run_document
from tracker.records import FindingRecord, ProfileRecord, RunRecord, SampleRecord
from tracker.records.window import (
    INFLIGHT_WAIT,
    ITL,
    LATENCY,
    LATENCY_UNCORRECTED,
    LOOP_LAG,
    SCHEDULE_LAG,
    SESSION,
    TASK,
    TASK_POLL,
    TASK_POLLS,
    TASK_QUEUE,
    TASK_SUBMIT,
    TASKS_FAILED,
    TASKS_OK,
    TOKENS_FROM_USAGE,
    TPOT,
    TTFT,
    Window,
    per_request,
)
from tracker.regressions.history import Change

REPO = Path(__file__).resolve().parents[2]
SCHEMAS = REPO / "docs" / "schemas"
JSON_DOC = REPO / "docs" / "json.md"
#: Each schema and the section of docs/json.md that describes its document.
SECTIONS = {
    "run.schema.json": "The run document",
    "attach.schema.json": "The attach document",
    "compare.schema.json": "The compare document",
}
STREAM_BODY = json.dumps({"prompt": "one two three", "max_tokens": 4, "stream": True})
GROUP = "contracts"


# -- helpers -----------------------------------------------------------------------------


@cache
def schemas() -> dict[str, dict[str, Any]]:
    return {
        path.name: json.loads(path.read_text(encoding="utf-8"))
        for path in sorted(SCHEMAS.glob("*.schema.json"))
    }


def registry() -> Registry:
    # The schemas point at each other by file name ("compare.schema.json"), as a
    # validator given the files' own location resolves them.
    return Registry().with_resources(
        (name, Resource.from_contents(schema)) for name, schema in schemas().items()
    )


def validator(name: str) -> Draft202012Validator:
    return Draft202012Validator(
        schemas()[name],
        registry=registry(),
        format_checker=Draft202012Validator.FORMAT_CHECKER,
    )


def errors_of(doc: Any, name: str) -> list[str]:
    return [
        f"{'/'.join(map(str, e.absolute_path)) or '(top)'}: {e.message[:300]}"
        for e in validator(name).iter_errors(doc)
    ]


def assert_valid(doc: Any, name: str) -> None:
    errors = errors_of(doc, name)
    assert not errors, f"not a valid {name} document:\n" + "\n".join(errors)


def declared(name: str) -> set[str]:
    """The top-level keys a schema names (its own, and those of the schemas it extends)."""
    schema = schemas()[name]
    keys = set(schema.get("properties", {})) | set(schema.get("required", []))
    for part in schema.get("allOf", []):
        if "$ref" in part:
            keys |= declared(part["$ref"])
        keys |= set(part.get("properties", {})) | set(part.get("required", []))
    return keys


def assert_documented(doc: dict[str, Any], name: str) -> None:
    """A key the CLI writes but the schema (and so docs/json.md) does not name is drift:
    additive changes keep the version, but they still get documented."""
    unknown = set(doc) - declared(name)
    assert not unknown, f"keys missing from docs/schemas/{name} and docs/json.md: {unknown}"


def section(title: str) -> str:
    text = JSON_DOC.read_text(encoding="utf-8")
    start = text.index(f"\n## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else len(text)]


def refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield value
            else:
                yield from refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from refs(item)


def nested_keys(node: Any) -> Iterator[str]:
    """Every property name and required key below the top level of a schema."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("properties", "required") and isinstance(value, dict | list):
                yield from (str(k) for k in value)
            yield from nested_keys(value)
    elif isinstance(node, list):
        for item in node:
            yield from nested_keys(item)


# -- the schemas and the reference, fast --------------------------------------------------


def test_each_schema_is_a_valid_draft_2020_12_schema_whose_refs_resolve() -> None:
    assert set(schemas()) == set(SECTIONS)
    resolver = registry().resolver()
    for name, schema in schemas().items():
        assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema", name
        Draft202012Validator.check_schema(schema)
        for ref in refs(schema):
            resolver.lookup(ref if not ref.startswith("#") else name + ref)
    for name in ("run.schema.json", "compare.schema.json"):
        assert schemas()[name]["properties"]["schema_version"] == {"const": 1}
    assert RUN_SCHEMA_VERSION == 1 and COMPARE_SCHEMA_VERSION == 1


def test_docs_json_md_describes_every_key_the_schemas_declare() -> None:
    for name, title in SECTIONS.items():
        text = section(title)
        schema = schemas()[name]
        own = set(schema.get("properties", {})) | set(schema.get("required", []))
        for part in schema.get("allOf", []):
            own |= set(part.get("properties", {})) | set(part.get("required", []))
        missing = sorted(key for key in own if f"`{key}`" not in text)
        assert not missing, f'docs/json.md, "{title}", does not describe {missing}'
    # Keys inside sections: named in docs/json.md or in docs/metrics.md, which it links.
    text = JSON_DOC.read_text(encoding="utf-8") + (REPO / "docs" / "metrics.md").read_text(
        encoding="utf-8"
    )
    for name, schema in schemas().items():
        inner = {k for k in nested_keys(schema) if k not in schema.get("properties", {})}
        missing = sorted(
            k for k in inner if not re.search(rf"(?<![\w.]){re.escape(k)}(?!\w)", text)
        )
        assert not missing, f"{name}: docs/json.md does not name {missing}"
    for heading in ("Versioning", "Exit codes"):
        assert section(heading)
    codes = section("Exit codes")
    for code in (0, 1, 2, 3, 4, 130):
        assert f"\n| {code} |" in codes, code


def test_schema_version_is_written_first() -> None:
    doc = run_document(_record(attach=True), [], [], [])
    assert next(iter(doc)) == "schema_version" and doc["schema_version"] == RUN_SCHEMA_VERSION
    comparison = compare_runs(_side(2, 1.0), [_side(1, 1.0)], spec="1").to_json()
    assert next(iter(comparison)) == "schema_version"
    assert comparison["schema_version"] == COMPARE_SCHEMA_VERSION


# -- documents built in-process: every section filled -------------------------------------


def _record(*, attach: bool = False) -> RunRecord:
    scenario: dict[str, Any] = (
        {"attach": {"pid": 4242, "name": "python[4242]"}, "duration_s": 1.0}
        if attach
        else {
            "load": {"model": "open", "rate": 5.0, "duration_s": 3.0, "warmup_s": 0.0},
            "goodput": {"ttft_ms": 500.0},
            "session": {"steps": 2},
        }
    )
    return RunRecord(
        id=7,
        status="completed",
        scenario="attach python[4242]" if attach else "chat sessions",
        scenario_key="k",
        scenario_json=scenario,
        tag=None if attach else "nightly",
        started_at=datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC),
        ended_at=None,
        duration_s=1.2 if attach else 3.5,
        target_url=None if attach else "http://127.0.0.1:8000/v1/chat/completions",
        load_model="none" if attach else "open",
        environment={
            "host": "ci",
            "cpu_model": "Test CPU",
            "cpu_count": 2,
            "kernel": "6.1",
            "os": "Linux",
            "python": "3.11.7",
            "perfsleuth": "0.1.0",
            "git_commit": None,
            **({} if attach else {"event_loop": "uvloop"}),
        },
        summary=None
        if attach
        else {
            "abandoned": 1,
            "slo": [
                {
                    "threshold": "ttft_p99 <= 500 ms",
                    "key": "ttft_p99",
                    "limit": 500.0,
                    "value": None,
                    "passed": False,
                }
            ],
        },
        probes_unavailable={"gpu": "NVML library not found"},
        error=None,
    )


def _windows() -> list[Window]:
    windows = []
    for i in range(3):
        w = Window(index=i, start_s=float(i), sent=4, completed=4, ok=3, output_tokens=12)
        w.good = 2
        w.add_error("timeout")
        for name in ("chat", "embed"):
            w.count_request(name, ok=name == "chat")
        for j in range(3):
            for hist in (LATENCY, LATENCY_UNCORRECTED, TTFT, ITL, TPOT, SESSION, TASK):
                w.hist(hist).record_ms(50.0 + 10 * j)
            for hist in (TASK_SUBMIT, TASK_QUEUE, TASK_POLL, SCHEDULE_LAG, LOOP_LAG):
                w.hist(hist).record_ms(1.0 + j)
            w.hist(INFLIGHT_WAIT).record_ms(0.5)
            w.hist(per_request(LATENCY, "chat")).record_ms(60.0)
            w.hist(per_request(TTFT, "chat")).record_ms(20.0)
            w.hist(per_request(TTFT, f"turn{j % 2 + 1}")).record_ms(20.0 + j)
        for counter, n in (
            ("sessions_ok", 2),
            ("sessions_failed", 1),
            (TASKS_OK, 2),
            (TASKS_FAILED, 1),
            (TASK_POLLS, 6),
            (TOKENS_FROM_USAGE, 3),
        ):
            w.bump(counter, n)
        windows.append(w)
    return windows


def _finding() -> FindingRecord:
    return FindingRecord(
        start_s=1.0,
        end_s=2.0,
        metric="latency_p50",
        change_pct=85.0,
        cause="contention",
        causes=[{"cause": "contention", "score": 0.9}, {"cause": "io", "score": 0.2}],
        confidence=0.8,
        evidence=["involuntary context switches 2500/s vs 100/s before (25x)"],
        advice="Contention: ...",
        flagged_at_s=2.5,
    )


def _side(run_id: int, slow: float) -> RunSide:
    estimates = {
        "latency_ms.p50": Estimate(100.0 * slow, 1.0),
        "throughput_rps": Estimate(20.0, 0.1),
        "error_rate": Estimate(0.001, 0.0005),
        "probes.cpu.ctx_switches_involuntary_per_s": Estimate(100.0 * slow**8, 5.0),
    }
    env = {"cpu_model": "Test CPU", "cpu_count": 2, "git_commit": f"c{run_id}"}
    return RunSide(run_id, "chat sessions", "k", "completed", estimates, env)


def _comparison() -> dict[str, Any]:
    comparison = compare_runs(
        _side(9, 1.3), [_side(i, 1.0 + i / 1000) for i in (4, 5, 6)], spec="last:3"
    )
    change = Change("latency_ms.p50", 8, 100.0, 112.0, 12.0, "creep", 1e-5, True, True)
    comparison.add_change_points([change.to_json()])
    return comparison.to_json()


def test_a_run_document_with_every_section_filled_matches_the_run_schema() -> None:
    samples = [
        SampleRecord(-0.25, {"cpu.process_pct": 40.0, "driver.cpu_pct": 3.0}),
        SampleRecord(0.25, {"cpu.process_pct": 60.0, "driver.cpu_pct": 5.0}, note="skipped"),
    ]
    profiles = [ProfileRecord(0.0, 1.0, 10, {"main;serve;work": 7, "main;idle": 3})]
    doc = run_document(_record(), _windows(), samples, [_finding()], profiles)
    doc["comparison"] = _comparison()
    for key in ("requests_by_name", "sessions", "tasks", "llm", "stacks"):
        assert doc[key] is not None, key
    assert doc["llm"]["ttft_by_turn_ms"] and doc["findings"] and doc["slo"]
    assert doc["probe_events"] and doc["driver"]["cpu_pct"] is not None
    assert doc["target_session_rate_per_s"] == 5.0
    assert_valid(doc, "run.schema.json")
    assert_documented(doc, "run.schema.json")
    # A run with load is no attach document.
    assert errors_of(doc, "attach.schema.json")


def test_a_compare_document_with_change_points_matches_the_compare_schema() -> None:
    doc = _comparison()
    assert doc["verdict"] == "regressed" and doc["change_points"] and doc["causes"]
    assert any("change_abs" in m for m in doc["metrics"])
    assert_valid(doc, "compare.schema.json")
    assert_documented(doc, "compare.schema.json")
    # The schema holds real constraints: a retyped or missing key fails it.
    assert errors_of({**doc, "verdict": "worse"}, "compare.schema.json")
    assert errors_of({**doc, "schema_version": 2}, "compare.schema.json")
    assert errors_of({k: v for k, v in doc.items() if k != "alpha"}, "compare.schema.json")


def test_an_attach_document_built_in_process_matches_the_attach_schema() -> None:
    samples = [SampleRecord(0.25, {"cpu.process_pct": 1.0, "driver.cpu_pct": 2.0})]
    doc = run_document(_record(attach=True), [], samples, [])
    assert_valid(doc, "attach.schema.json")
    assert_valid(doc, "run.schema.json")
    assert errors_of({**doc, "run_id": "7"}, "attach.schema.json")
    assert errors_of({k: v for k, v in doc.items() if k != "schema_version"}, "run.schema.json")
    assert errors_of({**doc, "latency_ms": None, "requests": None}, "attach.schema.json")


# -- real output of the CLI ---------------------------------------------------------------


@dataclass
class StoredRuns:
    """Two short streamed runs of the example server in one group; the second one
    compared with the first by `run --baseline`."""

    cwd: Path
    db: str
    first: dict[str, Any]
    second: dict[str, Any]
    second_exit: int


@pytest.fixture(scope="module")
def stored_runs(tmp_path_factory: pytest.TempPathFactory) -> StoredRuns:
    cwd = tmp_path_factory.mktemp("contracts")
    db = f"sqlite:///{cwd / 'runs.db'}"
    with running_llm_server() as server:

        def run(out: str, *extra: str) -> Any:
            return perfsleuth(
                "run", "--url", f"{server.url}/v1/completions", "--rate", "10",
                "--duration", "2s", "--body", STREAM_BODY, "--stream", "sse",
                "--attach", str(server.pid), "--group", GROUP, "--no-tui",
                "--json", out, "--db", db, *extra,
                cwd=cwd,
            )  # fmt: skip

        done = run("first.json")
        assert done.returncode == 0, done.stderr
        first = json.loads((cwd / "first.json").read_text())
        second_done = run("second.json", "--baseline", str(first["run_id"]))
    # Two 2 s runs may differ by chance: exit 1 then, with the document written first.
    assert second_done.returncode in (0, 1), second_done.stderr
    second = json.loads((cwd / "second.json").read_text())
    return StoredRuns(cwd, db, first, second, second_done.returncode)


@pytest.mark.slow
def test_run_json_and_show_json_match_the_run_schema(stored_runs: StoredRuns) -> None:
    doc = stored_runs.first
    assert doc["schema_version"] == 1 and doc["status"] == "completed"
    assert doc["requests"]["ok"] > 0 and doc["llm"] is not None
    assert "comparison" not in doc and "group" not in doc
    assert_valid(doc, "run.schema.json")
    assert_documented(doc, "run.schema.json")
    assert errors_of(doc, "attach.schema.json")  # it sent load
    shown = show_json(stored_runs.db, str(doc["run_id"]), stored_runs.cwd)
    assert_valid(shown, "run.schema.json")
    assert shown == doc


@pytest.mark.slow
def test_run_with_baseline_carries_the_compare_document(stored_runs: StoredRuns) -> None:
    doc = stored_runs.second
    assert_valid(doc, "run.schema.json")
    assert_documented(doc, "run.schema.json")
    comparison = doc["comparison"]
    assert_valid(comparison, "compare.schema.json")
    assert comparison["schema_version"] == 1
    assert comparison["baseline"]["run_ids"] == [stored_runs.first["run_id"]]
    assert stored_runs.second_exit == (1 if comparison["verdict"] == "regressed" else 0)
    # `show` gives the run document without the comparison `run --baseline` added.
    shown = show_json(stored_runs.db, str(doc["run_id"]), stored_runs.cwd)
    assert shown == {k: v for k, v in doc.items() if k != "comparison"}


@pytest.mark.slow
def test_compare_format_json_matches_the_compare_schema(stored_runs: StoredRuns) -> None:
    first, second = stored_runs.first["run_id"], stored_runs.second["run_id"]
    done = perfsleuth(
        "compare", str(second), "--baseline", str(first), "--format", "json",
        "--db", stored_runs.db, cwd=stored_runs.cwd,
    )  # fmt: skip
    doc = json.loads(done.stdout)
    assert done.returncode == (1 if doc["verdict"] == "regressed" else 0), done.stderr
    assert_valid(doc, "compare.schema.json")
    assert_documented(doc, "compare.schema.json")
    assert doc["run_id"] == second and doc["baseline"] == {"spec": str(first), "run_ids": [first]}
    assert doc["metrics"], doc["notes"]
    # The same comparison `run --baseline` made when the run ended.
    assert doc == stored_runs.second["comparison"]
    # Bad input: exit 2, one line on stderr, no document.
    bad = perfsleuth(
        "compare", str(second), "--baseline", "tag:no-such-tag", "--format", "json",
        "--db", stored_runs.db, cwd=stored_runs.cwd,
    )  # fmt: skip
    assert bad.returncode == 2 and bad.stdout == "", bad.stdout + bad.stderr


@pytest.mark.slow
def test_a_group_document_matches_the_run_schema(stored_runs: StoredRuns) -> None:
    doc = show_json(stored_runs.db, f"group:{GROUP}", stored_runs.cwd)
    assert_valid(doc, "run.schema.json")
    assert_documented(doc, "run.schema.json")
    assert doc["group"] == GROUP
    assert doc["run_ids"] == [stored_runs.first["run_id"], stored_runs.second["run_id"]]
    assert doc["target_rate_rps"] == 20.0  # the sum of its runs' rates


def test_attach_json_and_show_json_match_the_attach_schema(spawn: Spawn, tmp_path: Path) -> None:
    sleeper = spawn("import time\ntime.sleep(60)\n")
    db = f"sqlite:///{tmp_path / 'attach.db'}"
    out = tmp_path / "attach.json"
    done = perfsleuth(
        "attach", str(sleeper.pid), "--duration", "1s", "--no-tui", "--json", str(out),
        "--db", db, cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    doc = json.loads(out.read_text())
    assert doc["schema_version"] == 1 and doc["status"] == "completed"
    assert_valid(doc, "attach.schema.json")
    assert_valid(doc, "run.schema.json")
    assert_documented(doc, "attach.schema.json")
    assert doc["probes"], "an attach watches the process: its probes are the document"
    shown = show_json(db, str(doc["run_id"]), tmp_path)
    assert shown == doc
