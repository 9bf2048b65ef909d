"""Go GC pause probe: parses the runtime's ``GODEBUG=gctrace=1`` lines from the target's stderr.

Used by the tracker for Go targets it launches (``gc.*`` metrics, shared with
``probes.gc.jvm``). The Go runtime prints one line per collection to standard error::

    gc 7 @1.234s 2%: 0.021+1.2+0.015 ms clock, 0.085+0.3/1.1/2.0+0.061 ms cpu,
    4->4->2 MB, 5 MB goal, 0 MB stacks, 0 MB globals, 4 P

The three wall-clock phases are stop-the-world sweep termination, concurrent mark and
scan, and stop-the-world mark termination (``runtime`` package documentation,
``GODEBUG``), so a cycle's pause is the first plus the third. The heap figures are the
heap at GC start, at GC end and the live (marked) heap, in MiB.
"""

from __future__ import annotations

import os
import re
from typing import IO, ClassVar, Final

import psutil

from probes.gc.common import GC_METRICS, FileTail, GcPause, PauseWindow, StreamPump

_NUM = r"\d+(?:\.\d+)?"
# Not anchored: a program that leaves its own stderr output unterminated gets the
# runtime's next line glued to it, and that cycle still happened.
_GCTRACE_LINE = re.compile(
    rf"gc \d+ @{_NUM}s \d+%: "
    rf"(?P<sweep_term>{_NUM})\+{_NUM}\+(?P<mark_term>{_NUM}) ms clock, "
    rf"[^,]* ms cpu, \d+->\d+->(?P<live>\d+) MB"
)

# The runtime forces a collection when none ran for two minutes (runtime.forcegcperiod),
# so a live Go program with gctrace on is silent for no longer than that.
_SILENCE_LIMIT_S: Final = 150.0


def parse_gctrace_line(line: str) -> GcPause | None:
    """Parse one ``gctrace`` line; None for any other line.

    Args:
        line: A line of the target's stderr.

    Returns:
        The cycle's stop-the-world time (sweep termination + mark termination) and its
        live heap in MiB.

    Example:
        >>> parse_gctrace_line(
        ...     "gc 7 @1.234s 2%: 0.021+1.2+0.015 ms clock, 0.085+0.3/1.1/2.0+0.061 ms cpu, "
        ...     "4->4->2 MB, 5 MB goal, 0 MB stacks, 0 MB globals, 4 P"
        ... )
        GcPause(pause_ms=0.036, heap_after_mb=2.0)
    """
    match = _GCTRACE_LINE.search(line)
    if match is None:
        return None
    pause_ms = float(match["sweep_term"]) + float(match["mark_term"])
    return GcPause(round(pause_ms, 6), float(match["live"]))


class GoGcProbe:
    """Samples ``gc.*`` metrics of Go processes from their ``gctrace`` lines.

    Build it with :meth:`from_stream` (the stderr pipe of a target launched with
    ``GODEBUG=gctrace=1``) or :meth:`from_file` (a file the target's stderr goes to).
    A cycle counts in the sample during which its line was read. Every Go process of
    the tree that shares the stream is counted.
    """

    name = "gc_go"
    METRICS: ClassVar[dict[str, tuple[str, str]]] = GC_METRICS

    def __init__(self) -> None:
        """Create a probe fed by :meth:`feed_line` only; prefer the ``from_*`` constructors."""
        self.unavailable: str | None = None
        self._window = PauseWindow()
        self._pump: StreamPump | None = None
        self._tail: FileTail | None = None
        self._live_since: float | None = None

    @classmethod
    def from_stream(cls, stream: IO[bytes], sink: IO[bytes] | None = None) -> GoGcProbe:
        """Read ``stream`` on a daemon thread, copying every byte to ``sink`` unchanged.

        Args:
            stream: The target's stderr pipe (``Popen.stderr``, binary). Read until end
                of file, which comes when every process holding the pipe has exited.
            sink: Where the target's stderr goes on to (e.g. ``sys.stderr.buffer``, or a
                log file opened ``"ab"``); None drops it.

        Returns:
            A probe whose reader thread is already running.
        """
        probe = cls()
        probe._pump = StreamPump(stream, probe.feed_line, sink, name="perfsleuth-gctrace")
        return probe

    @classmethod
    def from_file(cls, path: str | os.PathLike[str], *, from_start: bool = False) -> GoGcProbe:
        """Tail a file that receives the target's stderr (rotation and truncation survive).

        Args:
            path: The file.
            from_start: Read what it already holds; otherwise only new lines count.
        """
        probe = cls()
        try:
            probe._tail = FileTail(path, from_start=from_start)
        except PermissionError:
            probe.unavailable = f"cannot read {os.fspath(path)}: permission denied"
        return probe

    @property
    def total_pause_ms(self) -> float:
        """Sum of the pauses of every cycle read so far (including unreported ones)."""
        return self._window.total_pause_ms

    @property
    def cycles_seen(self) -> int:
        """Number of ``gctrace`` lines read so far."""
        return self._window.total_pauses

    @property
    def input_ended(self) -> bool:
        """True once the stream reached end of file (never for a file or bare probe)."""
        return self._pump is not None and not self._pump.running

    def feed_line(self, line: str) -> None:
        """Record the cycle ``line`` reports; other lines are ignored. Thread-safe."""
        pause = parse_gctrace_line(line)
        if pause is not None:
            self._window.record(pause)

    def sample(self, now: float, procs: list[psutil.Process]) -> dict[str, float]:
        """Report the cycles read since the previous call.

        Args:
            now: ``time.monotonic()`` of this sample.
            procs: Target tree; empty means no live target, so nothing is reported.

        Returns:
            Metrics named as in :attr:`METRICS`.
        """
        if self._tail is not None:
            try:
                lines = self._tail.read_lines()
            except OSError as exc:
                self.unavailable = f"reading {self._tail.path} failed: {exc.strerror or exc}"
                return {}
            for line in lines:
                self.feed_line(line)
        self._check_silence(now, bool(procs))
        return self._window.metrics(now, live=bool(procs))

    def close(self) -> None:
        """Release the tailed file; a stream's reader thread ends at its end of file."""
        if self._tail is not None:
            self._tail.close()

    def _check_silence(self, now: float, live: bool) -> None:
        if not live:
            self._live_since = None
            return
        if self._live_since is None:
            self._live_since = now
        if not self.cycles_seen and now - self._live_since > _SILENCE_LIMIT_S:
            self.unavailable = (
                f"no gctrace line from the target in {_SILENCE_LIMIT_S:.0f} s: launch the Go "
                "program with GODEBUG=gctrace=1 and its stderr piped to perfsleuth"
            )
