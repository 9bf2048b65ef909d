"""A background thread that appends windows, probe samples and profiles to the store.

Used by `tracker.recording`: the driver's event loop and the probe thread only enqueue,
so a slow disk never delays a request. Batches are written at least every
`flush_interval_s`, so an interrupted run loses at most that much.

The store can fail while the run goes on (the disk fills, another process holds the
database's lock): what could not be written stays queued, in order, and is retried with a
growing pause, so nothing is lost when the store comes back. The writer also keeps its own
copy of every window (encoded, a few KB each, up to `KEPT_WINDOWS`): if the store is
still failing at the end, or its file was deleted, the run's document is built from it.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from typing import Any

from tracker.records.stored import ProfileRecord, SampleRecord
from tracker.records.window import Window
from tracker.store.failures import describe_store_error
from tracker.store.repository import Store, window_from_row, window_row

_STOP = object()

#: Windows the writer keeps a copy of: six hours of one-second windows (~80 MB at most).
KEPT_WINDOWS = 6 * 3600
#: Windows that may wait for a failing store before the run is told to stop (one hour).
MAX_PENDING_WINDOWS = 3600
#: The longest pause between two tries of a failing store.
RETRY_MAX_S = 5.0
#: At the end, how long a failing store gets to come back (a lock held for a moment).
FINAL_RETRY_S = 10.0
#: How long one write waits for another process's SQLite lock. The writer retries on its
#: own, so waiting longer (the default 30 s) would only hold back the note that the store
#: is failing, and the run's end when it still fails then.
WRITE_LOCK_WAIT_S = 5.0


class StoreWriter:
    """Queue-fed writer for one run; `close()` writes everything still queued."""

    def __init__(
        self,
        store: Store,
        run_id: int,
        *,
        flush_interval_s: float = 0.5,
        on_error: Callable[[str], None] | None = None,
        on_recover: Callable[[], None] | None = None,
        final_retry_s: float = FINAL_RETRY_S,
    ) -> None:
        self._store = store
        self._run_id = run_id
        self._interval = flush_interval_s
        self._final_retry_s = final_retry_s
        self._queue: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._on_error = on_error
        self._on_recover = on_recover
        self._lock = threading.Lock()
        self._pending_rows: list[dict[str, Any]] = []
        self._pending_samples: list[SampleRecord] = []
        self._pending_profiles: list[ProfileRecord] = []
        self._kept_rows: list[dict[str, Any]] | None = []
        self.windows_written = 0
        self.samples_written = 0
        #: Why the store is failing now (one line, no SQL); None while writes succeed.
        self.error: str | None = None
        #: Every failure seen, even if the store came back (for the run's notes).
        self.failures = 0
        self._thread = threading.Thread(target=self._loop, name="perfsleuth-store", daemon=True)
        self._thread.start()

    def add_window(self, window: Window) -> None:
        self._queue.put(window)

    def add_sample(self, sample: SampleRecord) -> None:
        self._queue.put(sample)

    def add_profile(self, profile: ProfileRecord) -> None:
        self._queue.put(profile)

    def close(self, timeout: float = 60.0) -> None:
        """Write what is queued (retrying a failing store for a while) and stop."""
        self._queue.put(_STOP)
        self._thread.join(timeout)

    @property
    def overflowing(self) -> bool:
        """The store has failed for so long that the run should stop rather than queue."""
        with self._lock:
            return len(self._pending_rows) >= MAX_PENDING_WINDOWS

    def unwritten(self) -> tuple[list[Window], list[SampleRecord], list[ProfileRecord]]:
        """What never reached the store (after `close`): the run's document needs it."""
        with self._lock:
            windows = [window_from_row(row) for row in self._pending_rows]
            return windows, list(self._pending_samples), list(self._pending_profiles)

    def kept_windows(self) -> list[Window] | None:
        """Every window of the run, from the writer's own copy; None past KEPT_WINDOWS."""
        with self._lock:
            rows = None if self._kept_rows is None else list(self._kept_rows)
        return None if rows is None else [window_from_row(row) for row in rows]

    def _loop(self) -> None:
        stopping = False
        pause = self._interval
        next_try = 0.0
        while not stopping:
            try:
                item = self._queue.get(timeout=self._interval)
            except queue.Empty:
                item = None
            while item is not None:
                if item is _STOP:
                    stopping = True
                else:
                    self._take(item)
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    item = None
            if stopping:
                self._final_flush(pause)
            elif time.monotonic() >= next_try:
                if self._flush():
                    pause = self._interval
                else:
                    next_try = time.monotonic() + pause
                    pause = min(pause * 2, RETRY_MAX_S)

    def _take(self, item: object) -> None:
        with self._lock:
            if isinstance(item, Window):
                row = window_row(self._run_id, item)
                self._pending_rows.append(row)
                if self._kept_rows is not None:
                    self._kept_rows.append(row)
                    if len(self._kept_rows) > KEPT_WINDOWS:
                        self._kept_rows = None  # the store must then hold them
            elif isinstance(item, SampleRecord):
                self._pending_samples.append(item)
            elif isinstance(item, ProfileRecord):
                self._pending_profiles.append(item)

    def _final_flush(self, pause: float) -> None:
        deadline = time.monotonic() + self._final_retry_s
        while not self._flush() and time.monotonic() < deadline:
            time.sleep(min(pause, max(0.0, deadline - time.monotonic())))
            pause = min(pause * 2, RETRY_MAX_S)

    def _flush(self) -> bool:
        """Write what is pending, oldest first; False if the store failed (kept)."""
        with self._lock:
            rows = list(self._pending_rows)
            samples = list(self._pending_samples)
            profiles = list(self._pending_profiles)
        if not (rows or samples or profiles):
            return True
        try:
            # Each kind is cleared once written, so a retry never writes one twice.
            self._store.add_window_rows(rows)
            with self._lock:
                del self._pending_rows[: len(rows)]
            self.windows_written += len(rows)
            self._store.add_samples(self._run_id, samples)
            with self._lock:
                del self._pending_samples[: len(samples)]
            self.samples_written += len(samples)
            self._store.add_profiles(self._run_id, profiles)
            with self._lock:
                del self._pending_profiles[: len(profiles)]
        except Exception as exc:  # noqa: BLE001 - kept and retried; the run goes on
            first = self.error is None
            self.error = describe_store_error(exc, self._store.location)
            self.failures += 1
            if first and self._on_error is not None:
                self._on_error(self.error)
            return False
        if self.error is not None:
            self.error = None
            if self._on_recover is not None:
                self._on_recover()
        return True
