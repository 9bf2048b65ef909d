"""Databases perfsleuth did not make: another application's (SQLite and PostgreSQL) is
refused unless `db upgrade --force`, and left exactly as it was; a read-only file (a
read-only mount) can be read by show, history, compare and export, and is refused, in
one line, by the commands that write."""

from __future__ import annotations

import contextlib
import hashlib
import shutil
import socket
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from cli_helpers import perfsleuth, show_json
from sqlalchemy import create_engine, inspect, text
from support.sample_app import running_sample_app

from tracker.store import Store

FOREIGN = "holds another application's tables (orders, users) and no perfsleuth schema"


def _one_line_error(stderr: str) -> str:
    assert "Traceback" not in stderr
    lines = [line for line in stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    return lines[0]


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _fill_foreign(url: str) -> None:
    """Another application's schema and a row, made with SQLAlchemy Core."""
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT)"))
        conn.execute(text("CREATE TABLE orders (id INTEGER PRIMARY KEY)"))
        conn.execute(text("INSERT INTO users (id, name) VALUES (1, 'ada')"))
    engine.dispose()


def _tables(url: str) -> set[str]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return set(inspect(conn).get_table_names())
    finally:
        engine.dispose()


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_another_applications_sqlite_file_is_refused_and_left_untouched(tmp_path: Path) -> None:
    app_db = tmp_path / "app.db"
    url = f"sqlite:///{app_db}"
    _fill_foreign(url)
    before = _digest(app_db)
    for args in (
        ["history"],
        ["show", "latest"],
        ["db", "upgrade"],
        ["run", "--url", f"http://127.0.0.1:{_closed_port()}/", "--duration", "1s"],
    ):
        done = perfsleuth(*args, "--db", url, cwd=tmp_path)
        assert done.returncode == 2, (args, done.stdout, done.stderr)
        line = _one_line_error(done.stderr)
        assert FOREIGN in line and str(app_db) in line and "db upgrade --force" in line
    # Not a byte changed: no tables, no rows, and not even its journal mode (WAL sticks
    # to a file, and the other application may not expect it).
    assert _digest(app_db) == before
    assert sorted(p.name for p in tmp_path.glob("app.db*")) == ["app.db"]

    forced = perfsleuth("db", "upgrade", "--force", "--db", url, cwd=tmp_path)
    assert forced.returncode == 0, forced.stderr
    assert {"users", "orders", "runs", "alembic_version"} <= _tables(url)
    assert perfsleuth("history", "--db", url, cwd=tmp_path).returncode == 0
    with contextlib.closing(sqlite3.connect(app_db)) as con:
        assert con.execute("SELECT name FROM users").fetchall() == [("ada",)]


def test_another_applications_postgresql_database_is_refused(postgres_url: str, tmp_path: Path):
    _fill_foreign(postgres_url)
    done = perfsleuth("history", "--db", postgres_url, cwd=tmp_path)
    assert done.returncode == 2
    assert FOREIGN in _one_line_error(done.stderr)
    assert _tables(postgres_url) == {"users", "orders"}
    assert (
        perfsleuth("db", "upgrade", "--force", "--db", postgres_url, cwd=tmp_path).returncode == 0
    )
    assert {"users", "orders", "runs"} <= _tables(postgres_url)


def test_another_applications_alembic_database_is_refused_even_forced(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'app.db'}"
    _fill_foreign(url)
    engine = create_engine(url)
    with engine.begin() as conn:  # the other application migrates with Alembic too
        conn.execute(text("CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL)"))
        conn.execute(text("INSERT INTO alembic_version VALUES ('9f1c2ab4e7d0')"))
    engine.dispose()
    for args in (["history"], ["db", "upgrade", "--force"]):
        done = perfsleuth(*args, "--db", url, cwd=tmp_path)
        assert done.returncode == 2
        line = _one_line_error(done.stderr)
        assert "belongs to another application (Alembic revision 9f1c2ab4e7d0" in line


def test_an_empty_file_and_a_new_path_become_perfsleuth_databases(tmp_path: Path) -> None:
    (tmp_path / "empty.db").touch()
    for name in ("empty.db", "new.db"):
        done = perfsleuth("history", "--db", f"sqlite:///{tmp_path / name}", cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        assert "runs" in _tables(f"sqlite:///{tmp_path / name}")


@contextlib.contextmanager
def _read_only_mount(where: Path, files: list[Path]) -> Iterator[Path]:
    """`files` copied onto a tmpfs at `where` that is then remounted read-only: a file
    that cannot be written even by root (who ignores permission bits)."""
    where.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(where)],
        capture_output=True, text=True,
    )  # fmt: skip
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip()}): needs root")
    try:
        for file in files:
            shutil.copy2(file, where / file.name)
        subprocess.run(["mount", "-o", "remount,ro", str(where)], check=True)
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def _stored_runs(db: Path, cwd: Path) -> None:
    """Two short completed runs against a real loopback app."""
    with running_sample_app() as app:
        for _ in range(2):
            done = perfsleuth(
                "run", "--url", f"{app}/ok", "--rate", "20", "--duration", "2s",
                "--tag", "base", "--db", f"sqlite:///{db}", cwd=cwd,
            )  # fmt: skip
            assert done.returncode == 0, done.stderr
    # The last writer closed cleanly: no -wal file is left beside it.
    assert not Path(f"{db}-wal").exists()


def test_a_read_only_database_is_read_by_the_commands_that_read(tmp_path: Path) -> None:
    source = tmp_path / "runs.db"
    _stored_runs(source, tmp_path)
    with _read_only_mount(tmp_path / "ro", [source]) as mount:
        url = f"sqlite:///{mount / 'runs.db'}"
        listed = perfsleuth("history", "--db", url, cwd=tmp_path)
        assert listed.returncode == 0, listed.stderr
        assert listed.stdout.count("completed") == 2
        assert show_json(url, "2", tmp_path)["tag"] == "base"
        status = perfsleuth("history", "--status", "completed", "--db", url, cwd=tmp_path)
        assert status.returncode == 0 and status.stdout.count("completed") == 2
        exported = perfsleuth(
            "export", "1", "--format", "csv", "--out", "-", "--db", url, cwd=tmp_path
        )
        assert exported.returncode == 0 and "latency" in exported.stdout, exported.stderr
        current = perfsleuth("db", "current", "--db", url, cwd=tmp_path)
        assert current.returncode == 0 and "up to date" in current.stdout
        compared = perfsleuth(
            "compare", "2", "--baseline", "1", "--format", "json", "--db", url, cwd=tmp_path
        )
        assert compared.returncode in (0, 1, 3), compared.stderr
        assert '"verdict"' in compared.stdout

        for args in (
            ["run", "--url", f"http://127.0.0.1:{_closed_port()}/", "--duration", "1s"],
            ["db", "upgrade"],
            ["db", "prune"],
        ):
            done = perfsleuth(*args, "--db", url, cwd=tmp_path)
            assert done.returncode == 2, (args, done.stderr)
            line = _one_line_error(done.stderr)
            assert "is read-only (its permissions, or a read-only mount)" in line, line
        assert sorted(p.name for p in mount.iterdir()) == ["runs.db"]


def test_a_read_only_database_of_an_older_schema_is_refused_clearly(tmp_path: Path) -> None:
    from alembic import command

    from tracker.store.database import _alembic_config

    source = tmp_path / "old.db"
    store = Store.open(f"sqlite:///{source}", upgrade=False)
    config = _alembic_config()
    with store.engine.begin() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, "0005")
    store.close()
    with _read_only_mount(tmp_path / "ro", [source]) as mount:
        done = perfsleuth("history", "--db", f"sqlite:///{mount / 'old.db'}", cwd=tmp_path)
    assert done.returncode == 2
    line = _one_line_error(done.stderr)
    assert "is read-only and is at revision 0005" in line and "perfsleuth db upgrade" in line
