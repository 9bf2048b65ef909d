"""Opening a database URL and bringing its schema to the newest Alembic revision.

Used by `tracker.store.repository.Store.open` and `perfsleuth db upgrade|current`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DatabaseError, NoSuchModuleError, OperationalError

from tracker._resources import migrations_path
from tracker.errors import UsageError

DEFAULT_URL = "sqlite:///perfsleuth.db"
ENV_VAR = "PERFSLEUTH_DB"


def resolve_url(url: str | None) -> str:
    """`--db` wins, then $PERFSLEUTH_DB, then perfsleuth.db in the working directory."""
    return url or os.environ.get(ENV_VAR) or DEFAULT_URL


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cursor = dbapi_conn.cursor()
    # WAL lets a reader (TUI, `show`) and a writer (a run) work at once; the busy timeout
    # lets two concurrent runs take turns instead of failing with "database is locked".
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    # A run only appends, so a big page cache buys nothing (writing and summarising an
    # hour-long run cost the same with 128 KiB as with 2 MiB); SQLite's default, 2,000 KiB
    # per connection, took ~15 minutes of a run to fill and read as a steady RSS climb of
    # ~0.16 MiB/min (benchmarks/driver_memory.py). 256 KiB is full after ~1 minute.
    cursor.execute("PRAGMA cache_size=-256")
    cursor.close()


def create_db_engine(url: str) -> Engine:
    """An Engine for `url`, with clear errors for URLs that cannot work."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise UsageError(
            f"--db: {url!r} is not a database URL; use e.g. sqlite:///perfsleuth.db"
        ) from None
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database
        if not database or database == ":memory:":
            raise UsageError(
                f"--db: {url!r} is an in-memory database that keeps nothing; "
                "give a file, e.g. sqlite:///perfsleuth.db"
            )
        if not database.startswith("file:"):
            _check_sqlite_path(Path(database).expanduser())
    try:
        engine = create_engine(parsed)
    except NoSuchModuleError:
        raise UsageError(f"--db: unknown database kind {parsed.drivername!r}") from None
    except ModuleNotFoundError as exc:
        raise UsageError(
            f"--db: the driver for {parsed.drivername} is not installed ({exc.name}); "
            "for PostgreSQL run `pip install 'perfsleuth[postgres]'`"
        ) from None
    if parsed.get_backend_name() == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def _check_sqlite_path(file: Path) -> None:
    """Refuse, with one line, a SQLite file perfsleuth could not create or write."""
    directory = file.parent.resolve()
    try:
        if not directory.is_dir():
            raise UsageError(
                f"--db: directory {directory} does not exist; create it or choose another path"
            )
        exists = file.exists()
    except PermissionError:
        raise UsageError(
            f"--db: permission denied looking into {directory}; choose a path you can write"
        ) from None
    if exists and not os.access(file, os.R_OK | os.W_OK):
        raise UsageError(f"--db: {file} is not readable and writable by this user")
    if not exists and not os.access(directory, os.W_OK | os.X_OK):
        raise UsageError(f"--db: cannot create {file}: {directory} is not writable by this user")


def _alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(migrations_path()))
    return config


def head_revision() -> str | None:
    return ScriptDirectory.from_config(_alembic_config()).get_current_head()


def current_revision(engine: Engine) -> str | None:
    try:
        with engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()
    except OperationalError as exc:
        raise UsageError(f"--db: cannot open the database: {exc.orig}") from None
    except DatabaseError as exc:
        raise UsageError(f"--db: not a perfsleuth database ({exc.orig})") from None


def migrate(engine: Engine) -> None:
    """Upgrade the schema to head; a database already at head is left untouched."""
    script = ScriptDirectory.from_config(_alembic_config())
    head = script.get_current_head()
    current = current_revision(engine)
    if current == head:
        return
    if current is not None and current not in {rev.revision for rev in script.walk_revisions()}:
        raise UsageError(
            f"--db: the database is at schema revision {current}, newer than this perfsleuth "
            f"knows (newest {head}); upgrade perfsleuth"
        )
    config = _alembic_config()
    try:
        with engine.begin() as conn:
            config.attributes["connection"] = conn
            command.upgrade(config, "head")
    except OperationalError as exc:
        raise UsageError(f"--db: cannot migrate the database: {exc.orig}") from None
