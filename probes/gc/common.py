"""Shared parts of the log-reading GC probes: pause records, per-interval rates, line input.

Used by ``probes.gc.jvm`` (unified GC log files) and ``probes.gc.go`` (``gctrace`` lines on
a launched process's stderr). Both emit the same ``gc.*`` metrics, so reports need not
care which runtime produced them.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO, Final

log = logging.getLogger(__name__)

GC_METRICS: Final[dict[str, tuple[str, str]]] = {
    "gc.pause_ms_per_s": (
        "ms/s",
        "time the target's processes were paused for garbage collection, per second of "
        "wall time, summed over processes (Python: exact, JVM / Go: from the GC log)",
    ),
    "gc.collections_per_s": (
        "1/s",
        "collections (Python: every generation; JVM: stop-the-world pauses; Go: GC cycles)",
    ),
    "gc.pause_max_ms": ("ms", "longest GC pause reported in the interval"),
    "gc.heap_after_mb": (
        "MiB",
        "heap in use after the latest collection (JVM: after the pause; Go: live heap)",
    ),
}
"""Metric name -> (unit, description) for every metric the GC log probes can emit."""

# A line longer than this is not a GC log line; the excess is dropped unparsed so a
# writer that never sends a newline cannot grow our memory without bound.
MAX_LINE_BYTES: Final = 64 * 1024
# Bounds one sample's work on a huge backlog (a log read from its start); the rest is
# read on the following samples.
_MAX_READ_PER_CALL: Final = 8 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class GcPause:
    """One collection read from a GC log.

    Attributes:
        pause_ms: Stop-the-world time of this collection in milliseconds.
        heap_after_mb: Heap in use after it, in MiB, when the line says so.
    """

    pause_ms: float
    heap_after_mb: float | None = None


class PauseWindow:
    """Collects pauses as their lines arrive and turns them into per-interval metrics.

    Thread-safe: a reader thread may :meth:`record` while the sampler thread calls
    :meth:`metrics`. A pause belongs to the interval in which it was recorded.
    """

    def __init__(self) -> None:
        """Start with no baseline: the first :meth:`metrics` call reports gauges only."""
        self._lock = threading.Lock()
        self._pending: list[GcPause] = []
        self._prev_now: float | None = None
        self._heap_after_mb: float | None = None
        self.total_pauses = 0
        self.total_pause_ms = 0.0

    def record(self, pause: GcPause) -> None:
        """Add a pause that has just been read."""
        with self._lock:
            self._pending.append(pause)
            self.total_pauses += 1
            self.total_pause_ms += pause.pause_ms

    def metrics(self, now: float, live: bool) -> dict[str, float]:
        """Drain the pauses recorded since the previous call and return ``gc.*`` metrics.

        Args:
            now: ``time.monotonic()`` of this sample.
            live: False when there is no live target: nothing is reported, the pending
                pauses are discarded and the next call starts a new baseline.

        Returns:
            ``gc.heap_after_mb`` once known; the rates and ``gc.pause_max_ms`` from the
            second call on (0 when no pause arrived in the interval).
        """
        with self._lock:
            pending, self._pending = self._pending, []
        for pause in pending:
            if pause.heap_after_mb is not None:
                self._heap_after_mb = pause.heap_after_mb
        if not live:
            self._prev_now = None
            return {}
        metrics: dict[str, float] = {}
        if self._heap_after_mb is not None:
            metrics["gc.heap_after_mb"] = self._heap_after_mb
        prev, self._prev_now = self._prev_now, now
        if prev is None or now <= prev:
            return metrics
        dt = now - prev
        metrics["gc.pause_ms_per_s"] = sum(p.pause_ms for p in pending) / dt
        metrics["gc.collections_per_s"] = len(pending) / dt
        metrics["gc.pause_max_ms"] = max((p.pause_ms for p in pending), default=0.0)
        return metrics


class LineSplitter:
    """Turns byte chunks into complete text lines, holding back a partial last line."""

    def __init__(self) -> None:
        """Start with an empty buffer."""
        self._partial = b""
        self._overflowing = False

    def feed(self, data: bytes) -> list[str]:
        """Return the lines completed by ``data`` (without their line endings)."""
        lines: list[str] = []
        start = 0
        while True:
            end = data.find(b"\n", start)
            if end < 0:
                break
            self._append(data[start:end])
            if not self._overflowing:
                lines.append(_decode(self._partial))
            self._partial = b""
            self._overflowing = False
            start = end + 1
        self._append(data[start:])
        return lines

    def flush(self) -> list[str]:
        """Return the held-back partial line as a line (the writer has finished)."""
        partial, overflowing = self._partial, self._overflowing
        self._partial = b""
        self._overflowing = False
        return [_decode(partial)] if partial and not overflowing else []

    def _append(self, piece: bytes) -> None:
        if self._overflowing:
            return
        if len(self._partial) + len(piece) > MAX_LINE_BYTES:
            self._partial = b""
            self._overflowing = True
            return
        self._partial += piece


def _decode(raw: bytes) -> str:
    return raw.decode("utf-8", errors="replace").rstrip("\r")


class FileTail:
    """Reads the lines appended to a log file, like ``tail -F``, one batch per call.

    Survives what log writers do to their files: rotation by rename (the rest of the
    old file is read, then the new file from its start), truncation in place (reading
    restarts at the top), a partial last line (held until its newline arrives) and the
    file being absent for a while. Files rotated out between two calls are not read.
    """

    def __init__(self, path: str | os.PathLike[str], *, from_start: bool = False) -> None:
        """Open ``path`` if it exists, positioned at its end unless ``from_start``.

        Args:
            path: The log file.
            from_start: Read what the file already holds (for a log whose writer we
                started); otherwise only lines appended from now on are returned. A
                file that appears later is always read from its start.
        """
        self.path = os.fspath(path)
        self._fd: int | None = None
        self._ident: tuple[int, int] | None = None
        self._pos = 0
        self._splitter = LineSplitter()
        self.opened = False
        """True once the file has been opened (it exists, or existed)."""
        self.existed_at_start = self._open(at_end=not from_start)

    def read_lines(self) -> list[str]:
        """Return the complete lines appended since the previous call.

        Raises:
            PermissionError: The file exists but cannot be opened or read.
        """
        if self._fd is None:
            self._open(at_end=False)
            if self._fd is None:
                return []
        lines = self._read_available()
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return lines  # mid-rotation or deleted: keep reading the file we hold
        if (st.st_dev, st.st_ino) != self._ident:
            lines.extend(self._splitter.flush())  # the old file is finished
            self.close()
            self._splitter = LineSplitter()
            self._open(at_end=False)
            if self._fd is not None:
                lines.extend(self._read_available())
        return lines

    def close(self) -> None:
        """Close the file; a later :meth:`read_lines` reopens it from its start."""
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
        self._fd = None
        self._ident = None

    def _open(self, *, at_end: bool) -> bool:
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return False
        st = os.fstat(fd)
        self._fd = fd
        self._ident = (st.st_dev, st.st_ino)
        self._pos = st.st_size if at_end else 0
        self.opened = True
        return True

    def _read_available(self) -> list[str]:
        assert self._fd is not None
        if os.fstat(self._fd).st_size < self._pos:
            # Truncated in place (copytruncate, or `> file`): start again at the top.
            self._pos = 0
            self._splitter = LineSplitter()
        lines: list[str] = []
        budget = _MAX_READ_PER_CALL
        while budget > 0:
            chunk = os.pread(self._fd, min(budget, 1024 * 1024), self._pos)
            if not chunk:
                break
            self._pos += len(chunk)
            budget -= len(chunk)
            lines.extend(self._splitter.feed(chunk))
        return lines


class StreamPump:
    """Copies a byte stream to a sink on a daemon thread and hands each line to a parser.

    Every byte read is written to ``sink`` unchanged and flushed at once, so the
    process's own output (its stderr, say) reaches the user as before. Lines longer
    than :data:`MAX_LINE_BYTES` are forwarded but not parsed. The thread ends at end
    of file; a read error ends it the same way. A sink that fails is dropped (logged
    once) and parsing goes on.
    """

    def __init__(
        self,
        stream: IO[bytes],
        on_line: Callable[[str], None],
        sink: IO[bytes] | None = None,
        *,
        name: str = "perfsleuth-stream-pump",
    ) -> None:
        """Start the thread at once, so the writer never blocks on a full pipe.

        Args:
            stream: Binary stream to read, e.g. ``Popen.stderr``; closed at end of file.
            on_line: Called on the pump thread with each complete line, without its
                line ending. Exceptions it raises are logged and the line skipped.
            sink: Where the bytes are copied (e.g. ``sys.stderr.buffer`` or a log file
                opened in binary mode); None discards them.
            name: Thread name, for debugging.
        """
        self._stream = stream
        self._on_line = on_line
        self._sink = sink
        self.lines_read = 0
        self.error: str | None = None
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    @property
    def running(self) -> bool:
        """True until the stream has ended."""
        return self._thread.is_alive()

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the stream to end; return True if it has."""
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def _run(self) -> None:
        splitter = LineSplitter()
        try:
            while True:
                # read1 returns what the pipe holds now (up to the size) instead of
                # waiting to fill the buffer, so lines are seen and forwarded promptly.
                chunk = _read_some(self._stream)
                if not chunk:
                    break
                self._forward(chunk)
                for line in splitter.feed(chunk):
                    self._parse(line)
        except (OSError, ValueError) as exc:  # ValueError: the stream was closed under us
            self.error = f"{type(exc).__name__}: {exc}"
            log.debug("stream pump stopped: %s", self.error)
        for line in splitter.flush():
            self._parse(line)
        with contextlib.suppress(OSError, ValueError):
            self._stream.close()

    def _forward(self, chunk: bytes) -> None:
        sink = self._sink
        if sink is None:
            return
        try:
            sink.write(chunk)
            sink.flush()
        except (OSError, ValueError) as exc:
            log.warning("stopped copying the target's output: %s", exc)
            self._sink = None

    def _parse(self, line: str) -> None:
        self.lines_read += 1
        try:
            self._on_line(line)
        except Exception:  # one bad line must not end the pump and lose the output
            log.exception("parsing a line failed: %.200r", line)


def _read_some(stream: IO[bytes]) -> bytes:
    read1 = getattr(stream, "read1", None)
    if read1 is not None:
        data: bytes = read1(65536)
        return data
    return stream.read(65536) or b""
