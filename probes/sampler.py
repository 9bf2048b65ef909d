"""Background sampler: runs the probes on a fixed schedule on its own thread.

Used by the tracker run loop (which stores each ``ProbeSample``) and the TUI; it
never touches an asyncio loop, so the load generator's timing is not disturbed.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Protocol, runtime_checkable

import psutil

from probes.cpu import CpuProbe
from probes.disk import DiskProbe, ProcessIOProbe
from probes.gpu import GpuProbe
from probes.memory import MemoryProbe
from probes.own import SelfProbe
from probes.pressure import PressureProbe
from probes.target import Target

log = logging.getLogger(__name__)

# How stale the target's list of descendants may be: a new worker is seen within this
# long (and counted from its birth), an exited one at the next tick.
_TREE_MAX_AGE_S = 1.0


@runtime_checkable
class Probe(Protocol):
    """What the sampler needs from a probe; every probe in this package implements it
    (CPU, memory, PSI, disk, process I/O, GPU, self, the GC probes and the stack probes).

    ``sample`` returns a flat dict of metrics named ``<resource>.<what>_<unit>`` (each
    declared, with its unit, in the probe's ``METRICS``) to finite numbers. It keeps
    its own previous counters so rates are per second between consecutive calls; the
    first call returns gauges only. An empty ``procs`` means there is no live
    target, so target metrics must be left out. A probe that cannot work sets
    ``unavailable`` to a one-line reason and is not called again; one that can only
    do part of its work may keep a ``partly_unavailable`` mapping {part: reason},
    reported as "<probe>.<part>" next to the unavailable probes. A probe holding
    threads, processes or files has a ``close()`` (optional, idempotent) that the
    sampler calls when it stops. tests/unit/test_probe_contracts.py checks all this.
    """

    name: str
    unavailable: str | None

    def sample(self, now: float, procs: list[psutil.Process]) -> dict[str, float]:
        """Return this tick's metrics; ``now`` is ``time.monotonic()``."""
        ...


@dataclass(frozen=True, slots=True)
class ProbeSample:
    """One tick of the sampler.

    Attributes:
        t_mono: ``time.monotonic()`` when the tick started.
        t_wall: ``time.time()`` at the same moment.
        metrics: Metric name -> value (see ``probes.METRICS`` for units). Target
            metrics are missing while there is no live target.
        target_alive: False once the target died, and always when there is none.
        note: Something worth recording about this tick, e.g. the target's death
            reason (only on the first tick that sees it dead) or skipped ticks.
    """

    t_mono: float
    t_wall: float
    metrics: dict[str, float]
    target_alive: bool
    note: str | None = None


def default_probes() -> list[Probe]:
    """Fresh instances of the standard probes: CPU, memory, PSI, disk, process I/O, GPU, self."""
    return [
        CpuProbe(),
        MemoryProbe(),
        PressureProbe(),
        DiskProbe(),
        ProcessIOProbe(),
        GpuProbe(),
        SelfProbe(),
    ]


class Sampler:
    """Samples the target and host every ``interval_s`` on a daemon thread.

    Ticks are scheduled at ``start + k * interval_s`` so they do not drift; when a
    tick runs late the missed ticks are skipped rather than run in a burst. A probe
    that raises is marked unavailable and dropped; the others keep running.

    Example:
        >>> with Sampler(None, 0.5, on_sample=print):  # doctest: +SKIP
        ...     time.sleep(2)
    """

    def __init__(
        self,
        target: Target | None,
        interval_s: float = 0.25,
        on_sample: Callable[[ProbeSample], None] | None = None,
        probes: Sequence[Probe] | None = None,
    ) -> None:
        """Configure the sampler; nothing runs until :meth:`start`.

        Args:
            target: Process tree to watch; None samples host metrics only.
            interval_s: Seconds between ticks.
            on_sample: Called on the sampler thread with each sample; keep it quick.
                Exceptions it raises are logged and otherwise ignored.
            probes: Probes to run; default :func:`default_probes`.

        Raises:
            ValueError: ``interval_s`` is not positive.
        """
        if not interval_s > 0:
            raise ValueError(f"interval_s must be positive, got {interval_s}")
        self.target = target
        self.interval_s = interval_s
        self._on_sample = on_sample
        self._probes: list[Probe] = list(probes) if probes is not None else default_probes()
        self._owned = list(self._probes)  # closed by stop(), dropped ones included
        self._unavailable: dict[str, str] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._samples_taken = 0
        self._ticks_skipped = 0
        self._latest: ProbeSample | None = None
        self._target_was_alive = True
        self._callback_failed = False

    @property
    def unavailable(self) -> dict[str, str]:
        """Probe name -> one-line reason, for probes that stopped or never ran (a copy)."""
        with self._lock:
            return dict(self._unavailable)

    @property
    def samples_taken(self) -> int:
        """Number of ticks completed so far."""
        return self._samples_taken

    @property
    def ticks_skipped(self) -> int:
        """Scheduled ticks dropped because the sampler was running late."""
        return self._ticks_skipped

    @property
    def latest(self) -> ProbeSample | None:
        """The most recent sample, or None before the first tick."""
        return self._latest

    @property
    def running(self) -> bool:
        """True while the sampling thread is alive."""
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        """Start the sampling thread; the first tick happens immediately.

        Raises:
            RuntimeError: Already started.
        """
        if self._thread is not None:
            raise RuntimeError("Sampler already started; create a new one to sample again")
        self._thread = threading.Thread(target=self._run, name="perfsleuth-sampler", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 2.0) -> bool:
        """Ask the thread to finish and wait for it.

        Args:
            timeout: Seconds to wait for the current tick to finish.

        Returns:
            True if the thread has ended (or never started).
        """
        self._stop.set()
        thread = self._thread
        if thread is not None:
            thread.join(timeout)
        ended = thread is None or not thread.is_alive()
        if ended:
            self._close_probes()
        return ended

    def _close_probes(self) -> None:
        """Release what probes hold (NVML sessions, py-spy processes, sockets)."""
        for probe in self._owned:
            close = getattr(probe, "close", None)
            if close is None:
                continue
            try:
                close()
            except Exception:
                log.exception("closing probe %r failed", probe.name)
        self._owned = []

    def __enter__(self) -> Sampler:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def sample_once(self) -> ProbeSample:
        """Take one tick on the calling thread (what the thread does every interval).

        Useful for tests and for a final reading; do not call it while the thread runs.
        """
        return self._tick(None)

    def _run(self) -> None:
        start = time.monotonic()
        k = 0
        skipped = 0
        while not self._stop.is_set():
            note = f"sampler fell behind: skipped {skipped} tick(s)" if skipped else None
            self._tick(note)
            k += 1
            now = time.monotonic()
            due = start + k * self.interval_s
            if now > due:
                # Late: jump to the next future tick instead of bursting to catch up.
                next_k = math.floor((now - start) / self.interval_s) + 1
                skipped = next_k - k
                self._ticks_skipped += skipped
                k = next_k
                due = start + k * self.interval_s
            else:
                skipped = 0
            self._stop.wait(max(0.0, due - time.monotonic()))

    def _tick(self, note: str | None) -> ProbeSample:
        t_mono = time.monotonic()
        t_wall = time.time()
        notes = [note] if note else []
        procs: list[psutil.Process] = []
        alive = False
        if self.target is not None:
            try:
                alive = self.target.alive
                procs = self.target.processes(_TREE_MAX_AGE_S) if alive else []
            except Exception as exc:  # never let a /proc surprise end sampling
                log.exception("reading the target failed")
                alive, procs = False, []  # unknown this tick: no death note for it
                notes.append(f"reading the target failed: {type(exc).__name__}: {exc}")
            else:
                if self._target_was_alive and not alive:
                    notes.append(f"target {self._death_reason()}; host metrics continue")
                self._target_was_alive = alive
        metrics: dict[str, float] = {}
        for probe in list(self._probes):
            try:
                metrics.update(probe.sample(t_mono, procs))
            except Exception as exc:
                log.exception("probe %r failed", probe.name)
                self._drop(probe, f"{probe.name} probe failed: {type(exc).__name__}: {exc}")
                continue
            if probe.unavailable:
                self._drop(probe, probe.unavailable)
                continue
            partial: dict[str, str] | None = getattr(probe, "partly_unavailable", None)
            if partial:
                self._note_partial(probe.name, partial)
        sample = ProbeSample(t_mono, t_wall, metrics, alive, "; ".join(notes) or None)
        self._samples_taken += 1
        self._latest = sample
        if self._on_sample is not None:
            try:
                self._on_sample(sample)
            except Exception:
                if not self._callback_failed:  # once: it would fail every tick
                    log.exception("on_sample callback failed; further failures not logged")
                    self._callback_failed = True
        return sample

    def _death_reason(self) -> str:
        assert self.target is not None
        return self.target.death_reason or f"process {self.target.pid} has no live processes"

    def _note_partial(self, name: str, parts: dict[str, str]) -> None:
        """Record metrics a probe had to leave out, as "<probe>.<part>": reason."""
        with self._lock:
            for part, reason in parts.items():
                self._unavailable.setdefault(f"{name}.{part}", reason.splitlines()[0])

    def _drop(self, probe: Probe, reason: str) -> None:
        first_line = reason.splitlines()[0] if reason else "unavailable"
        with self._lock:
            self._unavailable[probe.name] = first_line
        self._probes.remove(probe)
