"""`run --group NAME` from several drivers at once: the runs read as one (`group:NAME`),
histograms merged exactly."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cli_helpers import perfsleuth, start_perfsleuth
from support.llm_server import running_llm_server

from tracker.records.window import LATENCY, Histogram
from tracker.store import Store

pytestmark = pytest.mark.slow


def _args(url: str, db: str, rate: str) -> list[str]:
    return [
        "run", "--url", f"{url}/v1/inference", "--rate", rate, "--duration", "4s",
        "--body", '{"prompt": "hi", "max_tokens": 2}', "--db", db,
    ]  # fmt: skip


def test_group_runs_merge_into_one_logical_run(tmp_path: Path, backend_url: str) -> None:
    # Two drivers into one store at once: a team's shared PostgreSQL, or one SQLite file.
    db = backend_url
    with running_llm_server() as server:
        procs = [
            start_perfsleuth(*_args(server.url, db, "10"), "--group", "night-1", cwd=tmp_path)
            for _ in range(2)
        ]
        for proc in procs:
            _, err = proc.communicate(timeout=90)
            assert proc.returncode == 0, err
        # Run 3: the same load from one driver, as a baseline for the group.
        assert perfsleuth(*_args(server.url, db, "20"), cwd=tmp_path).returncode == 0
    shown = perfsleuth("show", "group:night-1", "--json", "--db", db, cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    doc = json.loads(shown.stdout)
    assert doc["group"] == "night-1" and doc["run_ids"] == [1, 2]
    assert doc["requests"]["total"] == 40 + 40
    assert doc["target_rate_rps"] == 20.0

    store = Store.open(db)
    merged = Histogram()
    for run_id in (1, 2):
        for window in store.iter_windows(run_id):
            if LATENCY in window.histograms:
                merged.merge(window.histograms[LATENCY])
    exact = merged.summary_ms()
    assert exact is not None
    for key in ("p50", "p90", "p99", "max"):
        assert doc["latency_ms"][key] == exact[key]

    # A group compares like a run (its estimates come from the merged windows).
    compared = perfsleuth(
        "compare", "group:night-1", "--baseline", "3", "--format", "json", "--db", db,
        cwd=tmp_path,
    )  # fmt: skip
    assert compared.returncode in (0, 1, 3), compared.stderr
    assert json.loads(compared.stdout)["baseline"]["run_ids"] == [3]
    exported = perfsleuth(
        "export", "group:night-1", "--format", "csv", "--out", "g.csv", "--db", db, cwd=tmp_path
    )
    assert exported.returncode == 0, exported.stderr

    missing = perfsleuth("show", "group:nope", "--db", db, cwd=tmp_path)
    assert missing.returncode == 2 and "no runs in group 'nope'" in missing.stderr
