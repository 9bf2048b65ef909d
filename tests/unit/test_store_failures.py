"""Store errors as one line naming the cause, never the SQL or its parameters."""

from __future__ import annotations

import sqlite3

import pytest
from sqlalchemy.exc import OperationalError

from tracker.store.failures import describe_store_error, is_store_error


@pytest.mark.parametrize(
    ("message", "cause"),
    [
        ("database or disk is full", "disk full"),
        ("database is locked", "database locked by another process"),
        ("attempt to write a readonly database", "database is read-only"),
        ("disk I/O error", "disk I/O error"),
    ],
)
def test_known_causes_are_named_without_the_statement(message: str, cause: str) -> None:
    exc = OperationalError(
        "INSERT INTO runs (target_url) VALUES (?)",
        ("http://u:hunter2@h/",),
        sqlite3.OperationalError(message),
    )
    assert is_store_error(exc)
    text = describe_store_error(exc, "/data/runs.db")
    assert text == f"{cause} at /data/runs.db ({message})"
    assert "INSERT" not in text and "hunter2" not in text


def test_an_unknown_error_keeps_the_drivers_first_line_only() -> None:
    exc = OperationalError("SELECT 1", {}, sqlite3.OperationalError("something odd\nmore"))
    assert describe_store_error(exc, None) == "the database failed: OperationalError: something odd"
    assert not is_store_error(ValueError("not from the database"))
