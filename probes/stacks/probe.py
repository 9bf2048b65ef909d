"""Stack probe: py-spy profiles of a Python target in one-second windows, with GIL and idle shares.

Used by the tracker, which adds a ``StackProbe`` to the sampler for Python targets and
stores each window's profile through :meth:`StackProbe.take_windows` (the speedscope
export and top-functions report read those windows back).

How, and why this way (figures measured here, py-spy 0.4.3, see docs/probes.md):

- py-spy cannot stream: ``record`` writes its output only when it exits. So each window
  is one ``py-spy record --gil --nonblocking --duration 1`` run. Starting py-spy costs
  ~7 ms of CPU (it parses the interpreter's symbols), a sample ~0.2 ms.
- ``--gil`` keeps only the thread holding the GIL: the window's profile is where Python
  code ran, and the share of instants with a trace is the GIL's busy share. It also spares
  py-spy reading every thread's ``/proc`` state at each sample, which costs ~2.7 ms per
  sample with 100 threads (py-spy issue #872's territory).
- Only ``dump --json`` says which threads are idle, and a dump costs a whole start-up
  (7-14 ms), so one snapshot per window gives the idle share.
- ``--nonblocking`` never stops the target; ``native=True`` needs ptrace stops at each
  sample (py-spy refuses ``--native`` with ``--nonblocking``).
"""

from __future__ import annotations

import functools
import logging
import time
from collections import deque
from dataclasses import dataclass
from typing import ClassVar

import psutil

from probes.stacks.profile import CollapsedStacks
from probes.stacks.pyspy import Failure, PySpyError, PySpyWorker, ThreadStack

log = logging.getLogger(__name__)

DEFAULT_RATE_HZ = 100
"""Samples per second (py-spy's own default). With ``--gil`` a sample costs ~0.15 ms, so
the two start-ups per window dominate: 2-4% of one core in py-spy for a pyenv build with
debug info (1-3% for a stripped distro python), 1 to 100 threads; nothing in the target."""

# A just-launched interpreter has no thread state for py-spy to find yet.
_STARTUP_GRACE_S = 5.0
# Failed windows in a row (target alive) after which sampling is declared broken.
_MAX_CONSECUTIVE_ERRORS = 5
# A window older than this (py-spy stalled) is not reported as the current one.
_STALE_AFTER_S = 3.0
# Windows kept for take_windows() when nobody drains them: an hour's worth.
_MAX_PENDING_WINDOWS = 3600


@dataclass(frozen=True, slots=True)
class StackWindow:
    """One window of stack samples (one py-spy run).

    Attributes:
        start_mono: ``time.monotonic()`` when py-spy was started, or when the previous
            window ended if this one followed it directly.
        end_mono: ``time.monotonic()`` when py-spy had finished.
        start_wall: ``time.time()`` at ``start_mono``.
        samples: Instants sampled without error.
        gil_samples: Instants at which some thread held the GIL (each gave one stack).
        thread_samples: Python threads seen by the window's snapshot.
        idle_samples: Of those, the ones py-spy judged idle (sleeping, waiting on I/O,
            a lock or the GIL).
        errors: Instants py-spy failed to read (torn reads of a running target).
        stacks: Collapsed stacks of the GIL holder -> samples.
    """

    start_mono: float
    end_mono: float
    start_wall: float
    samples: int
    gil_samples: int
    thread_samples: int
    idle_samples: int
    errors: int
    stacks: CollapsedStacks

    @property
    def gil_held_pct(self) -> float | None:
        """Share of instants some thread held the GIL, 0-100; None without samples."""
        return 100.0 * min(self.gil_samples, self.samples) / self.samples if self.samples else None

    @property
    def idle_pct(self) -> float | None:
        """Share of thread samples that were idle, 0-100; None without a snapshot."""
        return 100.0 * self.idle_samples / self.thread_samples if self.thread_samples else None

    @property
    def samples_per_s(self) -> float:
        """Instants sampled per second of the window (py-spy's start-up included)."""
        span = self.end_mono - self.start_mono
        return self.samples / span if span > 0 else 0.0


class StackProbe(PySpyWorker):
    """Samples ``py.*`` metrics and per-window stack profiles of one Python process.

    Sampling runs on the probe's own thread, started by the first :meth:`sample` call,
    so py-spy never delays the sampler's other probes. Call :meth:`close` at the end.

    Example:
        >>> probe = StackProbe(target.pid)  # doctest: +SKIP
        >>> with Sampler(target, probes=[*default_probes(), probe]):  # doctest: +SKIP
        ...     time.sleep(5)
        >>> windows = probe.take_windows()  # doctest: +SKIP
    """

    name = "stacks"
    thread_label = "stacks"
    METRICS: ClassVar[dict[str, tuple[str, str]]] = {
        "py.gil_held_pct": (
            "%",
            "share of py-spy samples in which a thread of the target held the GIL",
        ),
        "py.idle_pct": (
            "%",
            "share of the target's Python threads idle (sleeping, waiting) in py-spy snapshots",
        ),
        "py.samples_per_s": ("1/s", "py-spy stack samples taken of the target per second"),
    }

    def __init__(
        self,
        pid: int,
        rate_hz: int = DEFAULT_RATE_HZ,
        native: bool = False,
        *,
        py_spy: str | None = None,
    ) -> None:
        """Configure the probe; nothing runs until the first :meth:`sample`.

        Args:
            pid: The Python process to sample.
            rate_hz: Samples per second (whole: py-spy's ``--rate``).
            native: Include C frames in the stacks. py-spy then stops the target at every
                sample (ptrace), which costs the target time; do not combine with a
                ``GcEstimateProbe`` on the same pid (one ptrace tracer at a time).
            py_spy: Path of the py-spy binary; default: next to this Python, then PATH.

        Raises:
            ValueError: ``rate_hz`` is below 2 (a window needs a sampled instant).
        """
        if rate_hz < 2:
            raise ValueError(f"rate_hz must be at least 2, got {rate_hz}")
        super().__init__(pid, py_spy)
        self.rate_hz = int(rate_hz)
        self.native = native
        self._latest: StackWindow | None = None
        self._pending: deque[StackWindow] = deque(maxlen=_MAX_PENDING_WINDOWS)
        self._total: CollapsedStacks = {}

    def sample(self, now: float, procs: list[psutil.Process]) -> dict[str, float]:
        """Return the metrics of the last complete window.

        Args:
            now: ``time.monotonic()`` of this tick.
            procs: Target tree; empty means no live target, so nothing is returned.

        Returns:
            Metrics named as in :attr:`METRICS`; empty until the first window completes.
        """
        if self.unavailable or not procs:
            return {}
        self._start()
        with self._lock:
            window = self._latest
        if window is None or window.samples == 0 or now - window.end_mono > _STALE_AFTER_S:
            return {}
        metrics = {"py.samples_per_s": window.samples_per_s}
        if window.gil_held_pct is not None:
            metrics["py.gil_held_pct"] = window.gil_held_pct
        if window.idle_pct is not None:
            metrics["py.idle_pct"] = window.idle_pct
        return metrics

    def take_windows(self) -> list[StackWindow]:
        """Return the windows completed since the last call (oldest first), for the store."""
        with self._lock:
            windows = list(self._pending)
            self._pending.clear()
        return windows

    def profile(self) -> CollapsedStacks:
        """Return the profile of every window so far (a copy), e.g. for a speedscope export."""
        with self._lock:
            return dict(self._total)

    def _run(self) -> None:
        started = time.monotonic()
        failures = 0
        ever_sampled = False
        previous_end: float | None = None
        while not self._stop.is_set():
            snapshot: list[ThreadStack] = []
            start_mono, start_wall = time.monotonic(), time.time()
            try:
                window = self._spy.record(
                    seconds=1,
                    rate_hz=self.rate_hz,
                    native=self.native,
                    gil_only=True,
                    during=functools.partial(self._snapshot, snapshot),
                )
            except PySpyError as exc:
                if exc.kind is Failure.GONE:
                    if not ever_sampled and not self._stop.is_set():
                        self.unavailable = f"no live process with pid {self.pid} to sample"
                    return
                failures += 1
                if self._fatal(exc, ever_sampled, time.monotonic() - started, failures):
                    self.unavailable = exc.reason
                    return
                log.debug("py-spy record of pid %d failed: %s", self.pid, exc.reason)
                previous_end = None
                self._stop.wait(0.5)
                continue
            if not window.complete:
                return  # the target exited mid-window, or close() interrupted it
            failures = 0
            ever_sampled = True
            end_mono = time.monotonic()
            # Windows are back to back: py-spy's start-up between them counts as this
            # window's time, so samples_per_s shows the rate actually achieved.
            if previous_end is not None:
                start_wall -= start_mono - previous_end
                start_mono = previous_end
            previous_end = end_mono
            threads = snapshot
            self._publish(
                StackWindow(
                    start_mono=start_mono,
                    end_mono=end_mono,
                    start_wall=start_wall,
                    samples=window.intervals,
                    gil_samples=window.samples,
                    thread_samples=len(threads),
                    idle_samples=sum(1 for t in threads if not t.active),
                    errors=window.errors,
                    stacks=window.stacks,
                )
            )

    def _snapshot(self, into: list[ThreadStack]) -> None:
        try:
            into.extend(self._spy.dump())
        except PySpyError as exc:
            # The window's own py-spy run reports the errors that matter.
            log.debug("py-spy dump of pid %d failed: %s", self.pid, exc.reason)

    @staticmethod
    def _fatal(exc: PySpyError, ever_sampled: bool, elapsed: float, failures: int) -> bool:
        if exc.kind in (Failure.PERMISSION, Failure.MISSING):
            return True
        if not ever_sampled:
            return elapsed > _STARTUP_GRACE_S
        return failures >= _MAX_CONSECUTIVE_ERRORS

    def _publish(self, window: StackWindow) -> None:
        with self._lock:
            self._latest = window
            self._pending.append(window)
            for stack, count in window.stacks.items():
                self._total[stack] = self._total.get(stack, 0) + count
