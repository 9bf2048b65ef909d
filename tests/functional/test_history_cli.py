"""`perfsleuth history` trends, change points, acknowledgement, and `compare` failing on a
slow creep, over a nightly history stored in a real SQLite file."""

from __future__ import annotations

import json
import random
from pathlib import Path

from cli_helpers import perfsleuth

from tracker.documents.run_document import run_document
from tracker.documents.stored_summary import estimates_for_summary
from tracker.records.window import LATENCY, Window
from tracker.store import Store


def store_nights(db: str, levels: list[float], seed: int = 1) -> None:
    """One stored run per night, its latencies scaled by that night's level, summarised
    as the runner summarises a run."""
    store = Store.open(db)
    rng = random.Random(seed)
    for level in levels:
        run_id = store.create_run(
            scenario="nightly",
            scenario_key="nightlykey000001",
            scenario_json={"load": {"model": "open", "rate": 20.0}},
            environment={"cpu_model": "test", "cpu_count": 2},
            tag="nightly",
        )
        windows = []
        for i in range(20):
            window = Window(index=i, start_s=float(i))
            for _ in range(20):
                window.hist(LATENCY).record_ms(rng.lognormvariate(4.0, 0.1) * level)
                window.ok += 1
                window.completed += 1
            windows.append(window)
        store.add_windows(run_id, windows)
        doc = run_document(store.get_run(run_id), windows, [], [])
        summary = {
            "latency_ms": doc["latency_ms"],
            "driver": doc["driver"],
            "metrics": estimates_for_summary(store, run_id, doc),
        }
        store.finish_run(run_id, status="completed", duration_s=20.0, summary=summary)
    store.close()


def test_a_slow_creep_is_caught_and_can_be_accepted(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'history.db'}"
    rng = random.Random(5)
    flat = [1 + rng.gauss(0, 0.01) for _ in range(15)]
    # +2.5% a night for 8 nights, then steady at +20%: never 5% above the previous 5 nights.
    creep = [1.025**k for k in range(1, 9)]
    after = [creep[-1] * (1 + rng.gauss(0, 0.01)) for _ in range(6)]
    store_nights(db, flat + creep + after)

    shown = perfsleuth("history", "--scenario", "nightly", "--json", "--db", db, cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    doc = json.loads(shown.stdout)
    assert len(doc["runs"]) == 29
    changes = [c for c in doc["change_points"] if c["metric"] == "latency_ms.p50"]
    assert changes, doc["change_points"]
    change = changes[-1]
    assert 16 <= change["run_id"] <= 24 and change["direction"] == "worse"
    assert change["change_pct"] > 10

    gate = perfsleuth("history", "--scenario", "nightly", "--fail-on-change", "--db", db,
                      cwd=tmp_path)  # fmt: skip
    assert gate.returncode == 1 and "ALERT" in gate.stdout
    assert f"perfsleuth history ack {change['run_id']}" in gate.stdout

    compared = perfsleuth(
        "compare", "--baseline", "last:5", "--format", "json", "--db", db, cwd=tmp_path
    )
    result = json.loads(compared.stdout)
    p50 = next(m for m in result["metrics"] if m["name"] == "latency_ms.p50")
    assert p50["verdict"] != "regressed"  # the last five nights crept too...
    assert compared.returncode == 1 and result["verdict"] == "regressed"  # ...the history did not
    assert any(c["metric"] == "latency_ms.p50" for c in result["change_points"])

    # Accept every change point of the creep (an intended trade-off): the alert stops.
    for c in doc["change_points"]:
        if c["direction"] == "worse":
            acked = perfsleuth(
                "history", "ack", str(c["run_id"]), "--metric", c["metric"],
                "--note", "bigger model", "--db", db, cwd=tmp_path,
            )  # fmt: skip
            assert acked.returncode == 0 and "accepted" in acked.stdout, acked.stderr
    again = perfsleuth("history", "--scenario", "nightly", "--fail-on-change", "--db", db,
                       cwd=tmp_path)  # fmt: skip
    assert again.returncode == 0, again.stdout
    assert "accepted: bigger model" in again.stdout
    compared = perfsleuth("compare", "--baseline", "last:5", "--db", db, cwd=tmp_path)
    assert compared.returncode == 0, compared.stdout


def test_a_steady_history_has_no_change_points(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'history.db'}"
    rng = random.Random(9)
    store_nights(db, [1 + rng.gauss(0, 0.02) for _ in range(25)])
    done = perfsleuth("history", "--scenario", "nightly", "--fail-on-change", "--db", db,
                      cwd=tmp_path)  # fmt: skip
    assert done.returncode == 0 and "no change points" in done.stdout, done.stdout
    bad = perfsleuth("history", "--scenario", "nope", "--db", db, cwd=tmp_path)
    assert bad.returncode == 2 and "no stored run of 'nope'" in bad.stderr
    ack = perfsleuth("history", "ack", "3", "--db", db, cwd=tmp_path)
    assert ack.returncode == 2 and "no change point at run 3" in ack.stderr
