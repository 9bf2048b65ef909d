"""Plain records every layer shares: a stored run, a probe sample, a stack profile, a
finding (`stored`), and the per-second HDR windows (`window`).

Neutral ground: the store hands these out and takes them in, analysis computes over them,
the recording and the screens pass them along, and none of those needs another's package
for it. Importing this package stays cheap (no SQLAlchemy, no hdrh).
"""

from tracker.records.stored import (
    DRIVER_SOURCE,
    FindingRecord,
    ProfileRecord,
    RunRecord,
    SampleRecord,
)

__all__ = ["DRIVER_SOURCE", "FindingRecord", "ProfileRecord", "RunRecord", "SampleRecord"]
