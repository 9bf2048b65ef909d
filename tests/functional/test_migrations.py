"""Alembic owns the schema: every older revision, holding data, upgrades to head losing nothing.

Generic over revisions: they are read from the Alembic script directory, and each table's
rows are generated from its reflected column types, so a new revision is covered without
editing this file. Runs on SQLite and, when the session's PostgreSQL server is available,
on PostgreSQL (the `backend_url` fixture).
"""

from __future__ import annotations

import datetime as dt
import decimal
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from cli_helpers import perfsleuth

from tracker._resources import migrations_path
from tracker.errors import UsageError
from tracker.records import SampleRecord
from tracker.records.window import LATENCY, Window
from tracker.store import Store
from tracker.store.database import create_db_engine, current_revision, head_revision
from tracker.store.models import Base

ROWS = 3  # per table; the last row leaves every nullable column NULL
VERSION_TABLE = "alembic_version"

# A revision that drops or renames a column on purpose lists it here ("table.column"),
# so the check below knows the loss is meant. Nothing has been dropped so far.
INTENDED_DROPS: frozenset[str] = frozenset()


def _config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(migrations_path()))
    return config


def _revisions() -> list[str]:
    """Every revision, oldest first."""
    script = ScriptDirectory.from_config(_config())
    return [rev.revision for rev in reversed(list(script.walk_revisions()))]


HEAD = head_revision()
OLDER = [rev for rev in _revisions() if rev != HEAD]


def _upgrade(url: str, revision: str) -> sa.Engine:
    """A new database at `revision`, made the way perfsleuth's own migrate() does it."""
    engine = create_db_engine(url)
    config = _config()
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, revision)
    return engine


# -- generated rows ----------------------------------------------------------------------


def _autoincrement_pk(table: sa.Table) -> sa.Column[Any] | None:
    pk = list(table.primary_key.columns)
    if len(pk) == 1 and isinstance(pk[0].type, sa.Integer):
        return pk[0]
    return None


def _value(
    column: sa.Column[Any], row: int, position: int, inserted: dict[str, list[dict[str, Any]]]
) -> Any:
    """A value for `column` in row `row` that its type accepts and gives back unchanged."""
    for fk in column.foreign_keys:
        parents = inserted.get(fk.column.table.name, [])
        if not parents:
            assert column.nullable, f"{column.table.name}.{column.name}: no parent row yet"
            return None
        # Spread the children over the parents (the first gets two).
        return parents[row % len(parents)][fk.column.name]
    if column.nullable and row == ROWS - 1:
        return None
    kind = column.type
    if isinstance(kind, sa.JSON):
        return {"row": row, "column": column.name, "list": [row, 1.5, "ü"], "nested": {"ok": True}}
    if isinstance(kind, sa.Boolean):
        return row % 2 == 0
    if isinstance(kind, sa.Integer):
        return 1000 * (row + 1) + position  # distinct per row: unique indexes hold
    if isinstance(kind, sa.Float):
        return row + 0.25 + position / 8  # exact in binary, so equality is fair
    if isinstance(kind, sa.Numeric):
        return decimal.Decimal(f"{row}.{position:02d}")
    if isinstance(kind, sa.DateTime):
        tz = dt.UTC if kind.timezone else None
        return dt.datetime(2026, 1, 2, 3, 4, 5, 1000 * row + position, tzinfo=tz)
    if isinstance(kind, sa.Date):
        return dt.date(2026, 1, 1 + row)
    if isinstance(kind, sa.Time):
        return dt.time(3, 4, row)
    if isinstance(kind, sa.Interval):
        return dt.timedelta(seconds=row + 0.5)
    if isinstance(kind, sa.Enum):
        return kind.enums[row % len(kind.enums)]
    if isinstance(kind, sa.String):  # VARCHAR, TEXT, CHAR
        text = f"{column.name}-{row}-ü"
        return text[: kind.length] if kind.length else text
    if isinstance(kind, sa.LargeBinary):
        return bytes([row, position, 0, 255])
    if isinstance(kind, sa.Uuid):
        return uuid.UUID(int=row * 1000 + position)
    pytest.fail(
        f"no value generator for {column.table.name}.{column.name} of type {kind!r}: "
        "teach _value() in tests/functional/test_migrations.py about it"
    )


def _data_tables(engine: sa.Engine) -> list[sa.Table]:
    metadata = sa.MetaData()
    metadata.reflect(engine)
    return [t for t in metadata.sorted_tables if t.name != VERSION_TABLE]


def _fill(engine: sa.Engine) -> dict[str, list[dict[str, Any]]]:
    """ROWS rows in every table, parents first; returns what went in (ids included)."""
    inserted: dict[str, list[dict[str, Any]]] = {}
    with engine.begin() as conn:
        for table in _data_tables(engine):
            auto = _autoincrement_pk(table)
            rows = inserted[table.name] = []
            for row in range(ROWS):
                values = {
                    c.name: _value(c, row, pos, inserted)
                    for pos, c in enumerate(table.columns)
                    if c is not auto
                }
                # The database numbers the rows, as in real use: on PostgreSQL an explicit
                # id would leave the sequence behind and break the next insert.
                result = conn.execute(sa.insert(table).values(values))
                if auto is not None:
                    assert result.inserted_primary_key is not None
                    values[auto.name] = result.inserted_primary_key[0]
                rows.append(values)
    return inserted


def _snapshot(engine: sa.Engine, columns: dict[str, list[str]]) -> dict[str, list[dict[str, Any]]]:
    """The rows of each table, ordered by primary key, reduced to `columns`."""
    metadata = sa.MetaData()
    metadata.reflect(engine, only=list(columns))
    out: dict[str, list[dict[str, Any]]] = {}
    with engine.connect() as conn:
        for name, cols in columns.items():
            table = metadata.tables[name]
            query = sa.select(*(table.c[c] for c in cols)).order_by(*table.primary_key.columns)
            out[name] = [dict(row) for row in conn.execute(query).mappings()]
    return out


# -- the upgrade keeps every row ---------------------------------------------------------


@pytest.mark.parametrize("revision", OLDER)
def test_upgrading_a_database_with_data_to_head_loses_nothing(
    backend_url: str, revision: str
) -> None:
    engine = _upgrade(backend_url, revision)
    try:
        inserted = _fill(engine)
        columns = {
            t.name: [c.name for c in t.columns] for t in _data_tables(engine) if t.name in inserted
        }
        before = _snapshot(engine, columns)
    finally:
        engine.dispose()
    # What went in reads back as it was written: otherwise "unchanged" proves little.
    for name, rows in inserted.items():
        assert before[name] == [{c: r[c] for c in columns[name]} for r in rows], name

    store = Store.open(backend_url)
    try:
        assert current_revision(store.engine) == HEAD
        after_tables = {t.name: {c.name for c in t.columns} for t in _data_tables(store.engine)}
        kept: dict[str, list[str]] = {}
        for name, cols in columns.items():
            assert name in after_tables, f"table {name} (at {revision}) is gone at {HEAD}"
            lost = {c for c in cols if c not in after_tables[name]}
            assert lost <= {c.split(".", 1)[1] for c in INTENDED_DROPS if c.startswith(name)}, (
                f"columns {sorted(lost)} of {name} are gone at {HEAD}"
            )
            kept[name] = [c for c in cols if c not in lost]
        after = _snapshot(store.engine, kept)
        for name, cols in kept.items():
            assert after[name] == [{c: r[c] for c in cols} for r in before[name]], name

        # The upgraded database works for today's code: the old runs are listed, and a
        # new run with a window and samples is stored next to them.
        old_ids = sorted(r["id"] for r in inserted["runs"])
        assert sorted(r.id for r in store.list_runs()) == old_ids
        run_id = store.create_run(
            scenario="after-upgrade", scenario_key="k", scenario_json={}, environment={}
        )
        assert run_id not in old_ids
        window = Window(index=0, start_s=0.0)
        window.ok = window.completed = 1
        window.hist(LATENCY).record_ms(12.5)
        store.add_windows(run_id, [window])
        store.add_samples(run_id, [SampleRecord(0.25, {"cpu.process_pct": 1.0})])
        assert store.windows(run_id)[0].hist(LATENCY).count == 1
        assert len(store.samples(run_id)) == 1
    finally:
        store.close()


# -- head ----------------------------------------------------------------------------------


def test_migrations_build_exactly_the_models_schema(backend_url: str) -> None:
    # Models and migrations must agree, or the next autogenerated revision would carry
    # someone else's forgotten change.
    store = Store.open(backend_url)
    try:
        with store.engine.connect() as conn:
            diffs = compare_metadata(
                MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata
            )
    finally:
        store.close()
    assert diffs == []


@contextmanager
def _statements() -> Iterator[list[str]]:
    """Every SQL statement any engine sends inside the block."""
    seen: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        seen.append(" ".join(statement.split()))

    sa.event.listen(sa.Engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        sa.event.remove(sa.Engine, "before_cursor_execute", record)


def test_a_database_at_head_is_left_untouched(backend_url: str) -> None:
    first = Store.open(backend_url)
    run_id = first.create_run(scenario="s", scenario_key="k", scenario_json={}, environment={})
    first.close()
    with _statements() as seen:
        again = Store.open(backend_url)
    try:
        assert seen, "Store.open did not even read the revision"
        writes = [s for s in seen if not s.upper().startswith(("SELECT", "PRAGMA"))]
        assert writes == []
        assert current_revision(again.engine) == HEAD
        assert again.get_run(run_id).scenario == "s"
    finally:
        again.close()


def test_a_database_from_a_newer_perfsleuth_is_refused(backend_url: str, tmp_path: Path) -> None:
    store = Store.open(backend_url)
    with store.engine.begin() as conn:
        conn.execute(sa.text(f"UPDATE {VERSION_TABLE} SET version_num = '9999_future'"))
    store.close()
    with pytest.raises(UsageError, match=r"revision 9999_future, newer than this perfsleuth"):
        Store.open(backend_url)

    done = perfsleuth("db", "upgrade", "--db", backend_url, cwd=tmp_path, timeout=30)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"perfsleuth: error: --db: the database is at schema revision 9999_future, newer "
        f"than this perfsleuth knows (newest {HEAD}); upgrade perfsleuth"
    ]
    # Nothing was touched: the refusal leaves the future revision in place.
    engine = create_db_engine(backend_url)
    try:
        assert current_revision(engine) == "9999_future"
    finally:
        engine.dispose()
