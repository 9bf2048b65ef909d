"""The store: SQLAlchemy 2.0 models and the only code in perfsleuth that speaks SQL."""

from tracker.store.records import FindingRecord, ProfileRecord, RunRecord, SampleRecord
from tracker.store.repository import Store

__all__ = ["FindingRecord", "ProfileRecord", "RunRecord", "SampleRecord", "Store"]
