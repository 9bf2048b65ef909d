"""Several processes writing one database at once (two nightly jobs, a reader watching).

SQLite runs in WAL mode with a busy timeout, so concurrent writers take turns; these tests
start real OS processes together and check that every row of every run lands. The
direct-writer test also runs against the session's PostgreSQL server when there is one.
"""

from __future__ import annotations

import itertools
import json
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest
from support.llm_server import ServerHandle, running_llm_server

from tracker.records import SampleRecord
from tracker.records.window import LATENCY, Window
from tracker.store import Store

_TESTS = Path(__file__).resolve().parents[1]

RUNS = 3
RATE = 25
DURATION_S = 3

# Direct writers: each appends BATCHES transactions of WINDOWS windows and SAMPLES samples.
WRITERS = 4
BATCHES = 100
WINDOWS = 5
SAMPLES = 20


@pytest.fixture(scope="module")
def server() -> Iterator[ServerHandle]:
    with running_llm_server(warm_up=False) as handle:
        yield handle


def test_concurrent_cli_runs_into_one_sqlite_file_all_land(
    server: ServerHandle, tmp_path: Path
) -> None:
    db = tmp_path / "shared.db"  # new: the runs also race to create the schema
    procs = []
    for i in range(RUNS):
        workdir = tmp_path / f"job{i}"
        workdir.mkdir()
        cmd = [
            sys.executable,
            "-m",
            "tracker",
            "run",
            "--url",
            f"{server.url}/health",
            "--rate",
            str(RATE),
            "--duration",
            f"{DURATION_S}s",
            "--tag",
            f"job{i}",
            "--json",
            str(workdir / "run.json"),
            "--db",
            f"sqlite:///{db}",
        ]
        procs.append(
            subprocess.Popen(
                cmd, cwd=workdir, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
            )
        )
    results = []
    for proc in procs:
        try:
            _, err = proc.communicate(timeout=60)
        finally:
            proc.kill()
        results.append((proc.returncode, err))
    for code, err in results:
        assert code == 0, err
        assert "Traceback" not in err and "could not be stored" not in err, err
        assert "locked" not in err, err

    docs = [json.loads((tmp_path / f"job{i}" / "run.json").read_text()) for i in range(RUNS)]
    con = sqlite3.connect(db)
    runs = {
        row[0]: row[1:]
        for row in con.execute("select id, status, error, tag, started_at, ended_at from runs")
    }
    assert sorted(runs) == sorted(doc["run_id"] for doc in docs)
    spans = []
    for doc in docs:
        run_id = doc["run_id"]
        status, error, tag, started, ended = runs[run_id]
        assert (status, error, doc["status"]) == ("completed", None, "completed"), run_id
        assert tag == doc["tag"]
        spans.append((datetime.fromisoformat(started), datetime.fromisoformat(ended)))
        windows = con.execute(
            "select idx, sent, completed from windows where run_id = ? order by idx", (run_id,)
        ).fetchall()
        # A window per second of load (a drain may add one), none missing, and together
        # they hold every request the run reported.
        assert [w[0] for w in windows] == list(range(len(windows)))
        assert DURATION_S <= len(windows) <= DURATION_S + 1
        assert sum(w[1] for w in windows) >= 0.9 * RATE * DURATION_S
        assert sum(w[2] for w in windows) == doc["requests"]["total"]
        times = [
            r[0]
            for r in con.execute(
                "select t_s from probe_samples where run_id = ? order by t_s", (run_id,)
            )
        ]
        # 4 Hz from 0.2 s before the load to its end: a lost batch (0.5 s) is a gap.
        assert len(times) >= 4 * DURATION_S, len(times)
        assert times[0] < 0 < DURATION_S - 1 < times[-1]
        assert max(b - a for a, b in itertools.pairwise(times)) < 1.0
    # The three were really writing at the same time.
    assert max(s for s, _ in spans) < min(e for _, e in spans)


# -- direct writers ----------------------------------------------------------------------


def _window(index: int) -> Window:
    w = Window(index=index, start_s=float(index))
    w.sent = w.completed = w.ok = 10 + index % 7
    w.counters = {"sessions_ok": index}
    for v in range(20):
        w.hist(LATENCY).record_ms(1.0 + v + index % 13)
    return w


def writer_main(url: str, name: str) -> None:
    """One writer process: its own run, BATCHES appends of windows and samples."""
    store = Store.open(url)  # they all open a new database at once: the migration races too
    run_id = store.create_run(
        scenario=name, scenario_key=name, scenario_json={}, environment={"pid": 0}
    )
    print(f"ready {run_id}", flush=True)
    sys.stdin.readline()  # the parent's "go", sent to all writers together
    started = time.perf_counter()
    for b in range(BATCHES):
        store.add_windows(run_id, [_window(b * WINDOWS + k) for k in range(WINDOWS)])
        store.add_samples(
            run_id,
            [
                SampleRecord(b + k / SAMPLES, {"cpu.process_pct": float(k), "batch": float(b)})
                for k in range(SAMPLES)
            ],
        )
    store.finish_run(run_id, status="completed", duration_s=time.perf_counter() - started)
    print(f"done {time.perf_counter() - started:.3f}", flush=True)


def reader_main(url: str, stop_file: str) -> None:
    """Reads every run over and over while the writers work: each batch is one
    transaction, so a reader must only ever see whole batches, and counts only grow."""
    store = Store.open(url, upgrade=False)
    print("ready 0", flush=True)
    sys.stdin.readline()
    seen: dict[int, tuple[int, int]] = {}
    passes = midway = 0
    while not Path(stop_file).exists():
        unfinished = False
        for run in store.list_runs():
            windows = sum(1 for _ in store.iter_windows(run.id))
            samples = len(store.samples(run.id))
            assert windows % WINDOWS == 0 and samples % SAMPLES == 0, (windows, samples)
            before = seen.get(run.id, (0, 0))
            assert windows >= before[0] and samples >= before[1], (before, windows, samples)
            seen[run.id] = (windows, samples)
            unfinished |= windows < BATCHES * WINDOWS
        passes += 1
        midway += unfinished
        # Decoding every window is CPU the writers (two cores in CI) need more.
        time.sleep(0.05)
    print(f"done {passes} {midway}", flush=True)


def _start(role: str, *args: str) -> subprocess.Popen[str]:
    code = (
        "import sys; sys.path[:0] = sys.argv[1:3]; import test_store_concurrency as t; "
        "getattr(t, sys.argv[3])(*sys.argv[4:])"
    )
    return subprocess.Popen(
        [sys.executable, "-c", code, str(_TESTS), str(_TESTS / "functional"), role, *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _ready(proc: subprocess.Popen[str]) -> int:
    """Wait for a worker's "ready N" line; N is its run id (0 for the reader)."""
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line.startswith("ready"):
        proc.kill()
        raise AssertionError(f"worker did not start: {proc.communicate()[1]}")
    return int(line.split()[1])


def _go(proc: subprocess.Popen[str]) -> None:
    assert proc.stdin is not None
    proc.stdin.write("go\n")
    proc.stdin.flush()


def test_concurrent_store_writers_lose_nothing(backend_url: str, tmp_path: Path) -> None:
    stop_file = tmp_path / "stop"
    # The database is new: the writers also race to create the schema (and, on SQLite,
    # to switch the file to WAL).
    writers = [_start("writer_main", backend_url, f"writer{i}") for i in range(WRITERS)]
    procs = list(writers)
    try:
        run_ids = [_ready(p) for p in writers]
        reader = _start("reader_main", backend_url, str(stop_file))
        procs.append(reader)
        _ready(reader)
        started = time.perf_counter()
        for p in procs:
            _go(p)
        outs = [p.communicate(timeout=60) for p in writers]
        elapsed = time.perf_counter() - started
        stop_file.touch()
        reader_out, reader_err = reader.communicate(timeout=60)
    finally:
        for p in procs:
            p.kill()
    for p, (out, err) in zip(writers, outs, strict=True):
        assert p.returncode == 0, err
        assert "locked" not in err.lower(), err
        assert "done" in out
    assert reader.returncode == 0, reader_err
    passes, midway = map(int, reader_out.split()[-2:])
    assert midway > 0, "the reader never saw the writers at work"

    store = Store.open(backend_url)
    try:
        for run_id in run_ids:
            assert store.get_run(run_id).status == "completed"
            windows = store.windows(run_id)
            assert [w.index for w in windows] == list(range(BATCHES * WINDOWS))
            for w in windows[:: WINDOWS * 7]:
                assert w.hist(LATENCY).count == 20 and w.counters == {"sessions_ok": w.index}
            samples = store.samples(run_id)
            assert len(samples) == BATCHES * SAMPLES
            assert sorted({int(s.metrics["batch"]) for s in samples}) == list(range(BATCHES))
    finally:
        store.close()
    rows = WRITERS * BATCHES * (WINDOWS + SAMPLES)
    print(
        f"{WRITERS} writers, {rows} rows in {WRITERS * BATCHES * 2} transactions: "
        f"{elapsed:.2f}s; the reader read all runs {passes} times, {midway} mid-way"
    )
