"""Stopping a run from another thread: the live screen's `q`, or its process's stop."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable


class RunControl:
    """Stops a run from another thread, as Ctrl-C does: the first request finishes the
    run and stores it, a second abandons what is in flight. Thread-safe; a request made
    before the run can take it is applied when it does."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: Callable[[], None] | None = None
        self._pending = 0

    def request_stop(self) -> None:
        with self._lock:
            if self._stop is None:
                self._pending += 1
                return
            if self._loop is None:
                self._stop()
            else:
                self._loop.call_soon_threadsafe(self._stop)

    def bind(
        self, stop: Callable[[], None] | None, loop: asyncio.AbstractEventLoop | None = None
    ) -> None:
        """Called as the run starts (and with None as it ends). `stop` runs on `loop` when
        one is given (the driver's), else in the requesting thread (it must be thread-safe,
        e.g. `threading.Event.set`)."""
        with self._lock:
            self._loop, self._stop = loop, stop
            pending, self._pending = self._pending, 0
        if stop is None:
            return
        for _ in range(pending):
            if loop is None:
                stop()
            else:
                loop.call_soon(stop)
