"""The degradation detector and attribution while a run goes, off the driver's loop."""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor

from tracker.analysis.attribute import ProbeSeries, attribute_run
from tracker.analysis.detect import OnlineDetector
from tracker.recording.progress import ProgressView
from tracker.records import FindingRecord, SampleRecord
from tracker.records.window import Window


class LiveWatch:
    """The degradation detector, fed each window and probe sample on its own thread (never
    the driver's event loop). While the run goes, each degradation is attributed as it is
    flagged, again every `REATTRIBUTE_S` while it lasts (its evidence grows) and once more
    when it ends, and handed to the live view; at the end the whole run is attributed for
    the store."""

    #: Seconds between two attributions of an open degradation.
    REATTRIBUTE_S = 5.0

    def __init__(self, progress: ProgressView | None) -> None:
        self._detector = OnlineDetector()
        self._series = ProbeSeries()
        self._progress = progress
        self._attributed_at = -math.inf
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="perfsleuth-detect")

    def add(self, window: Window) -> None:
        self._pool.submit(self._step, window)

    def add_sample(self, sample: SampleRecord) -> None:
        self._pool.submit(self._series.add, sample)

    def _step(self, window: Window) -> None:
        before = len(self._detector.closed)
        flagged = self._detector.add(window)
        closed = self._detector.closed
        ended = closed[before:]
        ongoing = self._detector.open_now()
        now = window.start_s + window.duration_s
        due = ongoing and now - self._attributed_at >= self.REATTRIBUTE_S
        if self._progress is None or not (flagged or ended or due):
            return
        self._attributed_at = now
        # Closed events stay in: they are left out of the steady state the open ones are
        # judged against.
        findings = attribute_run([*closed, *ongoing], self._detector.stats, self._series.means())
        for finding in findings:
            # The open events, and those that just ended (their final interval).
            if finding.end_s >= now or any(
                finding.start_s <= d.start_s and d.end_s <= finding.end_s for d in ended
            ):
                self._progress.finding(finding)

    def findings(self, *, driver_saturated: bool) -> list[FindingRecord]:
        """Close the detector and attribute each degraded interval."""
        self._pool.shutdown(wait=True)
        degradations = self._detector.finish()
        if not degradations:
            return []
        return attribute_run(
            degradations,
            self._detector.stats,
            self._series.means(),
            driver_saturated=driver_saturated,
        )
