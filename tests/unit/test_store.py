import sqlite3

import pytest

from tracker.errors import UsageError
from tracker.records import FindingRecord, ProfileRecord, SampleRecord
from tracker.records.window import LATENCY, TTFT, Window
from tracker.store import Store
from tracker.store.database import current_revision, head_revision
from tracker.store.writer import StoreWriter


@pytest.fixture
def store(tmp_path):
    s = Store.open(f"sqlite:///{tmp_path / 'runs.db'}")
    yield s
    s.close()


def _run(store, **kw):
    args = {
        "scenario": "s",
        "scenario_key": "k",
        "scenario_json": {"load": {"rate": 2.0}},
        "environment": {"host": "h"},
    }
    args.update(kw)
    return store.create_run(**args)


def test_new_database_is_migrated_to_head(tmp_path):
    path = tmp_path / "fresh.db"
    store = Store.open(f"sqlite:///{path}")
    assert current_revision(store.engine) == head_revision()
    tables = {
        r[0]
        for r in sqlite3.connect(path).execute("select name from sqlite_master where type='table'")
    }
    assert {"runs", "windows", "probe_samples", "profiles", "findings", "alembic_version"} <= tables
    assert sqlite3.connect(path).execute("pragma journal_mode").fetchone()[0] == "wal"


def test_reopening_keeps_data(tmp_path):
    url = f"sqlite:///{tmp_path / 'r.db'}"
    first = Store.open(url)
    run_id = _run(first, tag="base")
    first.close()
    again = Store.open(url)
    assert again.get_run(run_id).tag == "base"


def test_windows_samples_findings_roundtrip(store):
    run_id = _run(store)
    windows = []
    for i in range(3):
        w = Window(index=i, start_s=float(i), warmup=i == 0)
        w.ok = w.completed = 10
        w.output_tokens = 50
        w.add_error("http_5xx")
        for v in range(10):
            w.hist(LATENCY).record_ms(100.0 + v + i)
            w.hist(TTFT).record_ms(5.0)
        windows.append(w)
    store.add_windows(run_id, windows)
    store.add_samples(
        run_id,
        [
            SampleRecord(0.25, {"cpu.process_pct": 50.0}),
            SampleRecord(0.5, {"cpu.process_pct": 70.0}, False, "gone"),
        ],
    )
    finding = FindingRecord(
        1.0,
        2.0,
        "latency_p99",
        80.0,
        "contention",
        [{"cause": "contention", "score": 0.9}],
        0.9,
        ["x"],
    )
    store.replace_findings(run_id, [finding])
    back = store.windows(run_id)
    assert [w.index for w in back] == [0, 1, 2]
    assert back[0].warmup and not back[1].warmup
    assert back[2].errors_by_class == {"http_5xx": 1}
    for orig, got in zip(windows, back, strict=True):
        assert got.hist(LATENCY).summary_ms() == orig.hist(LATENCY).summary_ms()
    samples = store.samples(run_id)
    assert samples[1].note == "gone" and not samples[1].target_alive
    assert store.findings(run_id) == [finding]


def test_profiles_roundtrip_in_time_order_through_the_writer(store):
    run_id = _run(store)
    writer = StoreWriter(store, run_id, flush_interval_s=0.05)
    later = ProfileRecord(1.0, 1.0, 3, {"main;serve;hot_loop": 2, "main;serve": 1})
    earlier = ProfileRecord(0.0, 1.0, 1, {"main;idle": 1})
    writer.add_profile(later)
    writer.add_profile(earlier)
    writer.close()
    assert writer.error is None
    assert list(store.iter_profiles(run_id)) == [earlier, later]


def test_finish_run_and_latest(store):
    a = _run(store)
    b = _run(store, scenario="other")
    store.finish_run(
        b, status="interrupted", duration_s=3.0, summary={"x": 1}, probes_unavailable={"gpu": "no"}
    )
    latest = store.get_run("latest")
    assert latest.id == b and latest.status == "interrupted"
    assert latest.probes_unavailable == {"gpu": "no"}
    assert store.get_run(str(a)).status == "running"
    assert [r.id for r in store.list_runs()] == [b, a]


@pytest.mark.parametrize("spec", ["99", "abc"])
def test_unknown_run_is_a_usage_error(store, spec):
    with pytest.raises(UsageError):
        store.get_run(spec)


def test_missing_directory_and_bad_url_are_usage_errors(tmp_path):
    with pytest.raises(UsageError, match="does not exist"):
        Store.open(f"sqlite:///{tmp_path / 'nope' / 'x.db'}")
    with pytest.raises(UsageError, match="not a database URL"):
        Store.open("not a url")
    with pytest.raises(UsageError, match="unknown database kind"):
        Store.open("nosuchdb://x")


def test_env_var_selects_database(tmp_path, monkeypatch):
    path = tmp_path / "env.db"
    monkeypatch.setenv("PERFSLEUTH_DB", f"sqlite:///{path}")
    store = Store.open(None)
    assert store.url.endswith("env.db") and path.exists()


def test_location_is_an_absolute_path_for_sqlite(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    store = Store.open("sqlite:///rel.db")
    assert store.location == str(tmp_path / "rel.db")


def test_head_revision_constant_matches_the_migration_scripts():
    # Store.open skips Alembic for a database at HEAD_REVISION; a new migration must bump it.
    from tracker.store.database import HEAD_REVISION, head_revision

    assert head_revision() == HEAD_REVISION
