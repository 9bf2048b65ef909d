"""What went wrong with the store, said in one line a person can act on.

Database errors carry the SQL statement and its parameters (which may hold a URL's or a
header's secrets): none of that is ever shown or stored. The driver's own message is
kept (its first line), with the cause named where it is a known one.
"""

from __future__ import annotations

from tracker.errors import RunFailedError

# The driver's message (lower-cased) -> what it means for the user.
_CAUSES = (
    ("database or disk is full", "disk full"),
    ("no space left on device", "disk full"),
    ("database is locked", "database locked by another process"),
    ("readonly database", "database is read-only"),
    ("read-only", "database is read-only"),
    ("disk i/o error", "disk I/O error"),
    ("unable to open database file", "cannot open the database file"),
    ("file is not a database", "not a database file"),
)


class StoreError(RunFailedError):
    """The store could not be written or read; the message names the cause."""


def describe_store_error(exc: BaseException, location: str | None) -> str:
    """`exc` (a SQLAlchemy, sqlite3 or psycopg error, or an OSError) as one line without
    SQL: the cause, where (when known), and the driver's own words."""
    if isinstance(exc, StoreError):
        return str(exc)
    origin = getattr(exc, "orig", None) or exc
    text = str(origin).strip().splitlines()[0] if str(origin).strip() else type(origin).__name__
    lowered = text.lower()
    at = f" at {location}" if location else ""
    for needle, cause in _CAUSES:
        if needle in lowered:
            return f"{cause}{at} ({text})"
    return f"the database{at} failed: {type(origin).__name__}: {text}"


def is_store_error(exc: BaseException) -> bool:
    """Whether `exc` came from the database layer (SQLAlchemy or a DB-API driver)."""
    if isinstance(exc, StoreError):
        return True
    module = type(exc).__module__
    return module.startswith(("sqlalchemy", "sqlite3", "psycopg"))
