"""The store: SQLAlchemy 2.0 models and the only code in perfsleuth that speaks SQL.

`Store` (and SQLAlchemy with it) is imported on first use: the records alone are what the
live screen's process needs, and importing SQLAlchemy would double its start-up.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tracker.records.stored import FindingRecord, ProfileRecord, RunRecord, SampleRecord

if TYPE_CHECKING:
    from tracker.store.repository import Store

__all__ = ["FindingRecord", "ProfileRecord", "RunRecord", "SampleRecord", "Store"]


def __getattr__(name: str) -> Any:
    if name == "Store":
        from tracker.store.repository import Store

        return Store
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
