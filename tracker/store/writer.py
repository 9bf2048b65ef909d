"""A background thread that appends windows, probe samples and profiles to the store.

Used by `tracker.recording.runner`: the driver's event loop and the probe thread only enqueue,
so a slow disk never delays a request. Batches are written at least every
`flush_interval_s`, so an interrupted run loses at most that much.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable

from tracker.records.stored import ProfileRecord, SampleRecord
from tracker.records.window import Window
from tracker.store.repository import Store

_STOP = object()


class StoreWriter:
    """Queue-fed writer for one run; `close()` flushes everything still queued."""

    def __init__(
        self,
        store: Store,
        run_id: int,
        *,
        flush_interval_s: float = 0.5,
        on_error: Callable[[Exception], None] | None = None,
    ) -> None:
        self._store = store
        self._run_id = run_id
        self._interval = flush_interval_s
        self._queue: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._on_error = on_error
        self.windows_written = 0
        self.samples_written = 0
        self.error: Exception | None = None
        self._thread = threading.Thread(target=self._loop, name="perfsleuth-store", daemon=True)
        self._thread.start()

    def add_window(self, window: Window) -> None:
        self._queue.put(window)

    def add_sample(self, sample: SampleRecord) -> None:
        self._queue.put(sample)

    def add_profile(self, profile: ProfileRecord) -> None:
        self._queue.put(profile)

    def close(self, timeout: float = 30.0) -> None:
        """Write what is queued and stop the thread."""
        self._queue.put(_STOP)
        self._thread.join(timeout)

    def _loop(self) -> None:
        stopping = False
        while not stopping:
            windows: list[Window] = []
            samples: list[SampleRecord] = []
            profiles: list[ProfileRecord] = []
            try:
                item = self._queue.get(timeout=self._interval)
            except queue.Empty:
                continue
            while True:
                if item is _STOP:
                    stopping = True
                elif isinstance(item, Window):
                    windows.append(item)
                elif isinstance(item, SampleRecord):
                    samples.append(item)
                elif isinstance(item, ProfileRecord):
                    profiles.append(item)
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
            self._write(windows, samples, profiles)

    def _write(
        self, windows: list[Window], samples: list[SampleRecord], profiles: list[ProfileRecord]
    ) -> None:
        try:
            self._store.add_windows(self._run_id, windows)
            self._store.add_samples(self._run_id, samples)
            self._store.add_profiles(self._run_id, profiles)
        except Exception as exc:  # noqa: BLE001 - reported once by the runner, the run goes on
            if self.error is None:
                self.error = exc
                if self._on_error is not None:
                    self._on_error(exc)
            return
        self.windows_written += len(windows)
        self.samples_written += len(samples)
