"""The store on a real PostgreSQL server: schema, a full round trip, and the CLI end to end.

The server is the session's throwaway cluster on 127.0.0.1 (tests/support/postgres.py);
without PostgreSQL installed these tests skip and say what to install.
"""

from __future__ import annotations

import json
import math
import socket
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cli_helpers import perfsleuth, show_json
from sqlalchemy import inspect
from support.llm_server import ServerHandle, running_llm_server
from support.postgres import PSYCOPG_MISSING, PostgresServer

from tracker.records import FindingRecord, ProfileRecord, SampleRecord
from tracker.records.window import ITL, LATENCY, LATENCY_UNCORRECTED, TTFT, Histogram, Window
from tracker.store import Store
from tracker.store.database import create_db_engine, current_revision, head_revision


@pytest.fixture
def store(postgres_url: str) -> Iterator[Store]:
    s = Store.open(postgres_url)
    yield s
    s.close()


def _window(i: int) -> Window:
    w = Window(index=i, start_s=float(i), duration_s=1.0, warmup=i == 0)
    w.sent, w.completed, w.ok, w.good, w.output_tokens = 12, 11, 10, 9, 80
    w.dropped = 1
    w.add_error("http_5xx")
    w.bump("sessions_ok", 3)
    w.count_request("chat", ok=True)
    w.count_request("chat", ok=False)
    # Values spread over four decades, so the encoding carries many buckets.
    for v in range(200):
        ms = 0.05 * (1.04**v) + i
        w.hist(LATENCY).record_ms(ms)
        w.hist(LATENCY_UNCORRECTED).record_ms(ms * 0.9)
        w.hist(TTFT).record_ms(ms / 10)
    w.hist(ITL).record_ms(3.5)
    return w


def test_open_migrates_a_new_database_to_head(postgres_url: str) -> None:
    store = Store.open(postgres_url)
    try:
        assert current_revision(store.engine) == head_revision()
        tables = set(inspect(store.engine).get_table_names())
        assert {"runs", "windows", "probe_samples", "profiles", "findings"} <= tables
        assert "alembic_version" in tables
        assert store.location == postgres_url  # no password to hide here
    finally:
        store.close()


@pytest.mark.parametrize("scheme", ["postgresql", "postgres"])
def test_plain_postgres_schemes_mean_psycopg3(postgres_url: str, scheme: str) -> None:
    # The `postgres` extra installs psycopg 3; the common spellings must reach it.
    url = postgres_url.replace("postgresql+psycopg", scheme, 1)
    engine = create_db_engine(url)
    try:
        assert engine.dialect.driver == "psycopg"
        with engine.connect():
            pass
    finally:
        engine.dispose()


def test_a_run_round_trips_exactly(store: Store) -> None:
    started = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
    scenario_json = {"load": {"rate": 2.5, "model": "open"}, "name": "ünïcode ✓", "n": None}
    run_id = store.create_run(
        scenario="POST 127.0.0.1:8000/v1/completions",
        scenario_key="a" * 64,
        scenario_json=scenario_json,
        environment={"host": "h", "cpus": 2, "event_loop": "uvloop"},
        tag="nightly",
        target_url="http://127.0.0.1:8000/v1/completions",
        load_model="open",
        started_at=started,
    )
    windows = [_window(i) for i in range(4)]
    store.add_windows(run_id, windows)
    samples = [
        SampleRecord(-0.2, {"cpu.process_pct": 0.0, "mem.rss_mb": 101.25}),
        SampleRecord(0.25, {"cpu.process_pct": 55.5, "mem.rss_mb": 1e-9}),
        SampleRecord(0.5, {"cpu.process_pct": 1e12}, False, "target exited (code 1)"),
    ]
    store.add_samples(run_id, samples)
    profiles = [
        ProfileRecord(1.0, 1.0, 3, {"main;serve;hot_loop": 2, "main;serve": 1}),
        ProfileRecord(0.0, 1.0, 1, {"main;idle": 1}),
    ]
    store.add_profiles(run_id, profiles)
    findings = [
        FindingRecord(
            1.0,
            2.5,
            "latency_p99",
            81.5,
            "contention",
            [{"cause": "contention", "score": 0.86, "evidence": ["x"]}],
            0.86,
            ["ctx switches 4x"],
            "pin the threads",
        )
    ]
    store.replace_findings(run_id, findings)
    summary = {"latency_ms": {"p50": 1.5, "p99": 20.25}, "requests": {"total": 48}}
    store.finish_run(
        run_id,
        status="completed",
        duration_s=4.0,
        summary=summary,
        probes_unavailable={"gpu": "no NVIDIA driver"},
    )

    run = store.get_run(run_id)
    assert run.status == "completed" and run.tag == "nightly"
    assert run.started_at == started  # microseconds and the instant kept
    assert run.ended_at is not None
    assert abs(run.ended_at - datetime.now(UTC)) < timedelta(minutes=1)
    assert run.scenario_json == scenario_json
    assert run.environment["cpus"] == 2
    assert run.summary == summary
    assert run.probes_unavailable == {"gpu": "no NVIDIA driver"}
    assert (run.duration_s, run.load_model, run.error) == (4.0, "open", None)

    back = store.windows(run_id)
    assert len(back) == len(windows)
    for orig, got in zip(windows, back, strict=True):
        want, have = orig.to_wire(), got.to_wire()
        assert set(have.pop("histograms")) == set(want.pop("histograms"))
        assert have == want
        for name, hist in orig.histograms.items():
            assert got.histograms[name].summary_ms() == hist.summary_ms(), name
            assert got.histograms[name].buckets() == hist.buckets(), name
    assert store.samples(run_id) == sorted(samples, key=lambda s: s.t_s)
    assert list(store.iter_profiles(run_id)) == sorted(profiles, key=lambda p: p.t_s)
    assert store.findings(run_id) == findings
    # Replacing findings on PostgreSQL deletes and inserts in one transaction.
    store.replace_findings(run_id, [])
    assert store.findings(run_id) == []
    assert [r.id for r in store.list_runs()] == [run_id]


def test_histogram_stored_in_postgres_merges_exactly(store: Store) -> None:
    # Re-summarising a time range merges stored windows: the merge of what PostgreSQL
    # hands back must equal the merge of the originals.
    run_id = store.create_run(scenario="s", scenario_key="k", scenario_json={}, environment={})
    windows = [_window(i) for i in range(3)]
    store.add_windows(run_id, windows)
    merged, merged_back = Histogram(), Histogram()
    for w in windows:
        merged.merge(w.hist(LATENCY))
    for w in store.iter_windows(run_id):
        merged_back.merge(w.hist(LATENCY))
    assert merged_back.summary_ms() == merged.summary_ms()
    assert merged_back.count == 600


@pytest.fixture(scope="module")
def server() -> Iterator[ServerHandle]:
    with running_llm_server() as handle:
        yield handle


def test_cli_run_show_history_and_db_current_on_postgres(
    server: ServerHandle, postgres_url: str, tmp_path: Path
) -> None:
    out = tmp_path / "run.json"
    done = perfsleuth(
        "run",
        "--url",
        f"{server.url}/v1/completions",
        "--rate",
        "10",
        "--duration",
        "3s",
        "--body",
        json.dumps({"prompt": "one two", "max_tokens": 2}),
        "--tag",
        "pg-nightly",
        "--json",
        str(out),
        "--db",
        postgres_url,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    doc = json.loads(out.read_text())
    assert doc["status"] == "completed" and doc["tag"] == "pg-nightly"
    assert doc["requests"]["total"] >= 25 and doc["requests"]["errors"] == 0

    shown = show_json(postgres_url, str(doc["run_id"]), tmp_path)
    # `show` recomputes the document from the store: it must agree with what run wrote.
    for key in ("run_id", "status", "requests", "latency_ms", "latency_uncorrected_ms"):
        assert shown[key] == doc[key], key
    assert show_json(postgres_url, "latest", tmp_path)["run_id"] == doc["run_id"]

    history = perfsleuth("history", "--db", postgres_url, cwd=tmp_path)
    assert history.returncode == 0, history.stderr
    row = history.stdout.splitlines()[1].split()
    assert row[0] == str(doc["run_id"]) and "completed" in row
    assert "[pg-nightly]" in history.stdout
    p50 = float(row[row.index("completed") + 1])
    assert math.isclose(p50, doc["latency_ms"]["p50"], abs_tol=0.05)

    current = perfsleuth("db", "current", "--db", postgres_url, cwd=tmp_path)
    assert current.returncode == 0, current.stderr
    assert f"revision {head_revision()}" in current.stdout and "up to date" in current.stdout


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # closed again when we return: nothing listens


@pytest.mark.parametrize("command", [["history"], ["db", "current"], ["show", "latest"]])
def test_unreachable_postgres_is_one_line_and_exit_2(tmp_path: Path, command: list[str]) -> None:
    # No server needed: the point is that nothing listens on that port.
    pytest.importorskip("psycopg", reason=PSYCOPG_MISSING)
    port = _closed_port()
    url = f"postgresql+psycopg://perfsleuth:s3cret@127.0.0.1:{port}/runs"
    done = perfsleuth(*command, "--db", url, cwd=tmp_path, timeout=30)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("perfsleuth: error: --db: cannot connect to ")
    assert f"127.0.0.1:{port}/runs" in lines[0] and "s3cret" not in lines[0]
    assert "refused" in lines[0].lower()


def test_missing_postgres_database_is_one_line_and_exit_2(
    postgres_server: PostgresServer, tmp_path: Path
) -> None:
    url = postgres_server.url("no_such_db")
    done = perfsleuth("history", "--db", url, cwd=tmp_path, timeout=30)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"perfsleuth: error: --db: cannot connect to {url}: connection to server at "
        f'"127.0.0.1", port {postgres_server.port} failed: FATAL: database "no_such_db" '
        "does not exist"
    ]
