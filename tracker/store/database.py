"""Opening a database URL and bringing its schema to the newest Alembic revision.

Used by `tracker.store.repository.Store.open` and `perfsleuth db upgrade|current`.
"""

from __future__ import annotations

import os
import sqlite3
import time
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Engine, create_engine, event, inspect, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import (
    ArgumentError,
    DatabaseError,
    DBAPIError,
    NoSuchModuleError,
    OperationalError,
)

from tracker._resources import migrations_path
from tracker.errors import UsageError

if TYPE_CHECKING:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

#: The newest migration. Opening a database already at it needs no Alembic at all (its
#: import and reading the migration scripts cost ~150 ms of every command); a unit test
#: keeps it equal to the scripts' head.
HEAD_REVISION = "0007"

DEFAULT_URL = "sqlite:///perfsleuth.db"
ENV_VAR = "PERFSLEUTH_DB"

# How long a SQLite writer waits for another process's write to finish.
SQLITE_BUSY_TIMEOUT_S = 30.0

# `postgres://` and bare `postgresql://` would pick psycopg2 (or nothing, for `postgres`),
# while the `postgres` extra installs psycopg 3: both spellings mean that driver here.
_PG_ALIASES = frozenset({"postgres", "postgresql"})
_PG_DRIVER = "postgresql+psycopg"
# Without it libpq waits for the OS TCP timeout (minutes) on a host that drops packets.
_PG_CONNECT_TIMEOUT_S = 10
# One advisory lock id for "a perfsleuth migration is running" on a PostgreSQL database.
_PG_MIGRATION_LOCK = zlib.crc32(b"perfsleuth schema migration")


def resolve_url(url: str | None) -> str:
    """`--db` wins, then $PERFSLEUTH_DB, then perfsleuth.db in the working directory."""
    return url or os.environ.get(ENV_VAR) or DEFAULT_URL


def _sqlite_pragmas(busy_timeout_s: float) -> Callable[[Any, Any], None]:
    """The connect hook of a SQLite engine whose writers wait `busy_timeout_s` for a
    lock."""

    def on_connect(dbapi_conn: Any, _record: Any) -> None:
        _set_pragmas(dbapi_conn, busy_timeout_s)

    return on_connect


def _set_pragmas(dbapi_conn: Any, busy_timeout_s: float) -> None:
    cursor = dbapi_conn.cursor()
    # WAL lets a reader (TUI, `show`) and a writer (a run) work at once; the busy timeout
    # lets two concurrent runs take turns instead of failing with "database is locked".
    cursor.execute(f"PRAGMA busy_timeout={busy_timeout_s * 1000:.0f}")
    if not _another_applications(cursor):
        _set_wal(cursor)
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    # A run only appends, so a big page cache buys nothing (writing and summarising an
    # hour-long run cost the same with 128 KiB as with 2 MiB); SQLite's default, 2,000 KiB
    # per connection, took ~15 minutes of a run to fill and read as a steady RSS climb of
    # ~0.16 MiB/min (benchmarks/driver_memory.py). 256 KiB is full after ~1 minute.
    cursor.execute("PRAGMA cache_size=-256")
    cursor.close()


def _another_applications(cursor: Any) -> bool:
    """Whether the file holds tables and no perfsleuth schema: WAL mode stays with a
    file, so turning it on would change another application's database before
    `migrate` refuses it (after `db upgrade --force` the schema is there)."""
    mode = cursor.execute("PRAGMA journal_mode").fetchone()
    if mode is not None and str(mode[0]).lower() == "wal":
        return False
    names = {
        row[0] for row in cursor.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
    }
    return bool(names) and "alembic_version" not in names


def _set_wal(cursor: Any) -> None:
    """Switch to WAL, retrying while other processes open the same new file.

    Converting a new file takes an exclusive lock, and SQLite answers "database is
    locked" at once, without the busy handler, when two connections both hold a shared
    lock and want it (a deadlock otherwise): 2-4 failures in 60 measured when 6 processes
    opened fresh files together. Two jobs starting on a new database do just that.
    """
    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_S
    while True:
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def create_db_engine(
    url: str, *, for_reading: bool = False, busy_timeout_s: float = SQLITE_BUSY_TIMEOUT_S
) -> Engine:
    """An Engine for `url`, with clear errors for URLs that cannot work.

    `for_reading`: the command only reads, so a SQLite file this user cannot write (its
    permissions, a read-only mount) is opened read-only instead of refused.
    `busy_timeout_s`: how long a SQLite write waits for another process's lock."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise UsageError(
            f"--db: {url!r} is not a database URL; use e.g. sqlite:///perfsleuth.db"
        ) from None
    if parsed.drivername in _PG_ALIASES:
        parsed = parsed.set(drivername=_PG_DRIVER)
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database
        if not database or database == ":memory:":
            raise UsageError(
                f"--db: {url!r} is an in-memory database that keeps nothing; "
                "give a file, e.g. sqlite:///perfsleuth.db"
            )
        file = Path(database).expanduser()
        if for_reading and not database.startswith("file:") and _read_only(file):
            engine = create_engine(parsed, creator=lambda: _read_only_connection(file))
            event.listen(engine, "connect", _sqlite_read_pragmas)
            return engine
        if not database.startswith("file:"):
            _check_sqlite_path(file)
    connect_args: dict[str, Any] = {}
    if parsed.get_backend_name() == "postgresql" and "connect_timeout" not in parsed.query:
        connect_args["connect_timeout"] = _PG_CONNECT_TIMEOUT_S
    try:
        engine = create_engine(parsed, connect_args=connect_args)
    except NoSuchModuleError:
        raise UsageError(f"--db: unknown database kind {parsed.drivername!r}") from None
    except ModuleNotFoundError as exc:
        raise UsageError(
            f"--db: the driver for {parsed.drivername} is not installed ({exc.name}); "
            f"for PostgreSQL run `pip install 'perfsleuth[postgres]'` and use {_PG_DRIVER}://"
        ) from None
    if parsed.get_backend_name() == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas(busy_timeout_s))
    return engine


def _read_only(file: Path) -> bool:
    """Whether `file` is a SQLite file this user may read but not write."""
    try:
        return file.is_file() and os.access(file, os.R_OK) and not os.access(file, os.W_OK)
    except OSError:
        return False


def _read_only_connection(file: Path) -> sqlite3.Connection:
    """A read-only connection to `file`.

    A WAL database read in a directory that cannot be written has no WAL index (-shm) and
    cannot make one; with no -wal file either (the last writer closed cleanly) nothing is
    pending outside the main file, so SQLite may take it as immutable."""
    uri = f"{file.resolve().as_uri()}?mode=ro"
    if not os.access(file.parent, os.W_OK) and not Path(f"{file}-wal").exists():
        uri += "&immutable=1"
    return sqlite3.connect(uri, uri=True, check_same_thread=False)


def _sqlite_read_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cursor = dbapi_conn.cursor()
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_S * 1000:.0f}")
    cursor.execute("PRAGMA cache_size=-256")
    cursor.close()


def is_read_only(engine: Engine) -> bool:
    """Whether `engine` was opened read-only (`create_db_engine(..., for_reading=True)`)."""
    return event.contains(engine, "connect", _sqlite_read_pragmas)


def location(engine: Engine) -> str:
    """Where the data lives, for people: a SQLite file's absolute path, or the URL
    without its password."""
    url = engine.url
    if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
        return str(Path(url.database).expanduser().resolve())
    return safe_url(url)


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
    if exists and not os.access(file, os.R_OK):
        raise UsageError(f"--db: {file} is not readable by this user")
    if exists and not os.access(file, os.W_OK):
        raise UsageError(
            f"--db: {file} is read-only (its permissions, or a read-only mount) and this "
            "command writes to it; show, history, compare and export can read it as it is"
        )
    if not exists and not os.access(directory, os.W_OK | os.X_OK):
        raise UsageError(f"--db: cannot create {file}: {directory} is not writable by this user")


def _alembic_config() -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(migrations_path()))
    return config


def _scripts() -> ScriptDirectory:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(_alembic_config())


def head_revision() -> str | None:
    return _scripts().get_current_head()


def safe_url(url: URL) -> str:
    """`url` as people may see it: the password, if any, replaced by ***."""
    return url.render_as_string(hide_password=True)


def _reason(exc: DBAPIError) -> str:
    """The driver's message on one line: libpq's run over several (a hint, one entry per
    address tried), and the first line says what went wrong."""
    lines = [line.strip() for line in str(exc.orig).splitlines() if line.strip()]
    first = " ".join(lines[0].split()) if lines else type(exc.orig).__name__
    return first.removeprefix("connection failed: ")


def _connect(engine: Engine) -> Connection:
    """A connection, or a one-line UsageError naming the database (never its password)."""
    try:
        return engine.connect()
    except DBAPIError as exc:
        if engine.dialect.name != "sqlite":
            raise UsageError(
                f"--db: cannot connect to {safe_url(engine.url)}: {_reason(exc)}"
            ) from None
        if isinstance(exc, OperationalError):
            raise UsageError(f"--db: cannot open the database: {_reason(exc)}") from None
        # SQLite reads the header as the pragmas run: "file is not a database".
        raise UsageError(f"--db: not a perfsleuth database ({_reason(exc)})") from None


def _stored_revision(conn: Connection) -> str | None:
    """The revision Alembic recorded, read with plain SQL (no Alembic import)."""
    if not inspect(conn).has_table("alembic_version"):
        return None
    row = conn.execute(text("SELECT version_num FROM alembic_version")).first()
    return str(row[0]) if row is not None else None


def current_revision(engine: Engine) -> str | None:
    with _connect(engine) as conn:
        try:
            return _stored_revision(conn)
        except OperationalError as exc:
            raise UsageError(f"--db: cannot open the database: {_reason(exc)}") from None
        except DatabaseError as exc:
            raise UsageError(f"--db: not a perfsleuth database ({_reason(exc)})") from None


def _check_known(current: str | None, script: ScriptDirectory) -> None:
    if current is not None and current not in {rev.revision for rev in script.walk_revisions()}:
        raise UsageError(
            f"--db: the database is at schema revision {current}, newer than this perfsleuth "
            f"knows (newest {script.get_current_head()}); upgrade perfsleuth"
        )


def _take_migration_lock(conn: Connection) -> None:
    """Make concurrent openers of one database migrate it one at a time.

    Two runs started together on a new database (or on the first day after an upgrade)
    otherwise both see the old revision and both run the upgrade: the second fails
    with "table ... already exists" (SQLite) or a unique violation in pg_type.
    """
    if conn.dialect.name == "sqlite":
        # The write lock now, not at the first write: the busy timeout queues the others.
        conn.exec_driver_sql("BEGIN IMMEDIATE")
    elif conn.dialect.name == "postgresql":
        conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_PG_MIGRATION_LOCK})")


def _check_ours(engine: Engine, current: str | None, known: set[str], force: bool) -> None:
    """Refuse another application's database: perfsleuth's tables (and its migrations)
    would go in beside that application's, unasked."""
    from tracker.store.models import Base, RunModel

    if current is not None and current in known:
        return
    with _connect(engine) as conn:
        tables = set(inspect(conn).get_table_names())
    if current is not None and RunModel.__tablename__ in tables:
        return  # a newer perfsleuth's database (`_check_known` says so)
    foreign = sorted(tables - {*Base.metadata.tables, "alembic_version"})
    if not foreign:
        return
    where = location(engine)
    if current is not None:
        raise UsageError(
            f"--db: {where} belongs to another application (Alembic revision {current} is "
            "not perfsleuth's); give perfsleuth a database of its own"
        )
    if force:
        return
    shown = ", ".join(foreign[:3]) + (f" and {len(foreign) - 3} more" if len(foreign) > 3 else "")
    raise UsageError(
        f"--db: {where} holds another application's tables ({shown}) and no perfsleuth "
        "schema; give perfsleuth a database of its own, or add its tables there with "
        "`perfsleuth db upgrade --force`"
    )


def migrate(engine: Engine, *, force: bool = False) -> None:
    """Upgrade the schema to head; a database already at head is left untouched.

    A database with other tables and no perfsleuth schema is refused unless `force`; one
    opened read-only must already be at head."""
    current = current_revision(engine)
    if current == HEAD_REVISION:
        return
    from alembic import command

    script = _scripts()
    head = script.get_current_head()
    if current == head:
        return
    _check_ours(engine, current, {rev.revision for rev in script.walk_revisions()}, force)
    _check_known(current, script)
    if is_read_only(engine):
        state = "holds no perfsleuth runs" if current is None else f"is at revision {current}"
        raise UsageError(
            f"--db: {location(engine)} is read-only and {state} (this perfsleuth reads "
            f"revision {head}); copy it where it can be written and run `perfsleuth db upgrade`"
        )
    config = _alembic_config()
    try:
        with _connect(engine) as conn, conn.begin():
            _take_migration_lock(conn)
            # Whoever held the lock before us may have done the work already.
            current = _stored_revision(conn)
            if current == head:
                return
            _check_known(current, script)
            config.attributes["connection"] = conn
            command.upgrade(config, "head")
    except OperationalError as exc:
        raise UsageError(f"--db: cannot migrate the database: {_reason(exc)}") from None
