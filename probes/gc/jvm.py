"""JVM GC pause probe: reads unified GC log pause lines, or polls ``jstat`` without a log.

Used by the tracker when the target is a JVM (``gc.*`` metrics, shared with
``probes.gc.go``). Two sources, in order of preference:

* a unified GC log (``-Xlog:gc`` or ``-Xlog:gc*``, JDK 9+) the user names: exact pause
  times, one per ``GC(n) Pause ...`` line, tailed as it grows;
* ``jstat -gcutil <pid>`` when no log is given and a JDK is present: GC time per second
  from the cumulative GCT column, with no per-pause figures.
"""

from __future__ import annotations

import contextlib
import glob
import logging
import os
import re
import shutil
import subprocess
import threading
import weakref
from typing import ClassVar, Final

import psutil

from probes.gc.common import GC_METRICS, FileTail, GcPause, PauseWindow

log = logging.getLogger(__name__)

# "GC(3) Pause Young (Normal) (G1 Evacuation Pause) 24M->4M(256M) 3.456ms", after any
# decorations. Only completed pauses end in a duration: G1's "[gc,start] GC(3) Pause
# Young ..." line does not, and concurrent phases ("GC(4) Concurrent Mark Cycle 12ms")
# do not start with "Pause". Shenandoah's and ZGC's pause lines carry no heap figures.
_PAUSE_LINE = re.compile(
    r"\bGC\(\d+\)\s+Pause\s.*?"
    r"(?:\s(?P<before>\d+(?:\.\d+)?)[BKMG]->(?P<after>\d+(?:\.\d+)?)(?P<unit>[BKMG])"
    r"\(\d+(?:\.\d+)?[BKMG]\))?"
    r"\s+(?P<ms>\d+(?:[.,]\d+)?)ms\s*$"
)
_MIB_PER_UNIT: Final = {"B": 1 / (1024 * 1024), "K": 1 / 1024, "M": 1.0, "G": 1024.0}

# A launched JVM creates its log at start-up; a log still missing this long after the
# first live sample was misnamed.
_LOG_APPEAR_GRACE_S: Final = 30.0
# How long to look for a JVM among the target's processes before giving up.
_FIND_JVM_GRACE_S: Final = 10.0

# jstat is itself a JVM. These flags (measured here on JDK 17) keep its cost at about
# 0.6% of one core at a 250 ms interval, against 1.5% with defaults; -UsePerfData also
# keeps it out of the hsperfdata directory, so it never shows up as a JVM to watch.
_JSTAT_JVM_FLAGS: Final = (
    "-J-XX:+UseSerialGC",
    "-J-XX:TieredStopAtLevel=1",
    "-J-Xmx16m",
    "-J-XX:-UsePerfData",
)
# jstat keeps running after its reader is gone (Java's PrintStream swallows EPIPE), so it
# runs under a shell that kills it when its stdin closes: on close(), or when perfsleuth
# dies in any way. The shell drops its copies of the pipes so that jstat's exit is seen
# as end of file.
_JSTAT_WATCHDOG: Final = '"$@" & pid=$!; exec >/dev/null 2>&1; read _; kill "$pid"'


def parse_pause_line(line: str) -> GcPause | None:
    """Parse one unified GC log line; None unless it reports a completed pause.

    Args:
        line: A log line, with any decorations (``[0.1s][info][gc]``, time, pid...).

    Returns:
        The pause, with ``heap_after_mb`` when the line has a ``before->after(total)``
        heap transition.

    Example:
        >>> parse_pause_line("[0.1s][info][gc] GC(3) Pause Remark 24M->4M(256M) 3.456ms")
        GcPause(pause_ms=3.456, heap_after_mb=4.0)
    """
    match = _PAUSE_LINE.search(line)
    if match is None:
        return None
    pause_ms = float(match["ms"].replace(",", "."))
    after = match["after"]
    heap_after = float(after) * _MIB_PER_UNIT[match["unit"]] if after is not None else None
    return GcPause(pause_ms, heap_after)


class JvmGcProbe:
    """Samples ``gc.*`` metrics of a JVM from its unified GC log, or from ``jstat``.

    With ``log_path`` every ``GC(n) Pause ...`` line counts as one stop-the-world pause,
    attributed to the sample in which the line was read. Without it, ``jstat`` polls
    the JVM's cumulative GC time: ``gc.pause_ms_per_s`` and ``gc.collections_per_s``
    only, from counter deltas. Call :meth:`close` when done (it stops ``jstat``).
    """

    name = "gc_jvm"
    METRICS: ClassVar[dict[str, tuple[str, str]]] = GC_METRICS

    def __init__(
        self,
        log_path: str | None = None,
        pid: int | None = None,
        *,
        from_start: bool = False,
        jstat_interval_s: float = 0.25,
        jstat_path: str | None = None,
    ) -> None:
        """Configure the probe; ``jstat`` starts on the first sample with a live target.

        Args:
            log_path: The JVM's unified GC log (``-Xlog:gc:file=PATH``). None uses jstat.
            pid: The JVM for jstat; None picks the first JVM in the target tree.
            from_start: Read the log from its start (perfsleuth launched the JVM);
                otherwise only lines written from now on count.
            jstat_interval_s: jstat's polling interval; match the sampler's.
            jstat_path: The jstat program; default: the target JDK's own, then
                ``$JAVA_HOME/bin/jstat``, then ``jstat`` on PATH.
        """
        self.unavailable: str | None = None
        self.log_path = log_path
        self.pid = pid
        self._window = PauseWindow()
        self._tail: FileTail | None = None
        self._first_live: float | None = None
        self._jstat_interval_ms = max(1, round(jstat_interval_s * 1000))
        self._jstat_path = jstat_path
        self._jstat: _Jstat | None = None
        self._jstat_pid: int | None = None
        self._prev_row: _JstatRow | None = None
        self._prev_now: float | None = None
        if log_path is not None:
            self._open_log(log_path, from_start)

    @property
    def source(self) -> str:
        """Where pauses come from: ``"log"`` or ``"jstat"``."""
        return "log" if self.log_path is not None else "jstat"

    @property
    def jstat_command(self) -> list[str] | None:
        """The jstat command line in use (for logs and diagnostics), or None."""
        return list(self._jstat.argv) if self._jstat is not None else None

    @property
    def total_pause_ms(self) -> float:
        """Sum of every pause read from the log so far (including unreported ones)."""
        return self._window.total_pause_ms

    def sample(self, now: float, procs: list[psutil.Process]) -> dict[str, float]:
        """Read what the log (or jstat) reported since the previous call.

        Args:
            now: ``time.monotonic()`` of this sample.
            procs: Target tree; empty means no live target, so nothing is reported.

        Returns:
            Metrics named as in :attr:`METRICS`.
        """
        if self.log_path is not None:
            return self._sample_log(now, procs)
        return self._sample_jstat(now, procs)

    def close(self) -> None:
        """Release the log file and stop jstat. Idempotent."""
        if self._tail is not None:
            self._tail.close()
        if self._jstat is not None:
            self._jstat.stop()

    def _open_log(self, path: str, from_start: bool) -> None:
        try:
            self._tail = FileTail(path, from_start=from_start)
        except PermissionError:
            self.unavailable = f"cannot read GC log {path}: permission denied: run as its owner"
            return
        if not self._tail.existed_at_start and not from_start:
            self.unavailable = (
                f"GC log {path} does not exist: pass the file named in the JVM's "
                "-Xlog:gc:file=... option"
            )

    def _sample_log(self, now: float, procs: list[psutil.Process]) -> dict[str, float]:
        assert self._tail is not None
        try:
            lines = self._tail.read_lines()
        except PermissionError:
            self.unavailable = f"cannot read GC log {self._tail.path}: permission denied"
            return {}
        except OSError as exc:  # e.g. EIO, or a path that became a directory
            self.unavailable = f"reading GC log {self._tail.path} failed: {exc.strerror or exc}"
            return {}
        for line in lines:
            pause = parse_pause_line(line)
            if pause is not None:
                self._window.record(pause)
        if procs and self._first_live is None:
            self._first_live = now
        if (
            procs
            and self._first_live is not None
            and now - self._first_live > _LOG_APPEAR_GRACE_S
            and not self._tail.opened
        ):
            self.unavailable = (
                f"GC log {self._tail.path} has not appeared after {_LOG_APPEAR_GRACE_S:.0f} s: "
                "check the JVM's -Xlog:gc:file=... path"
            )
            return {}
        return self._window.metrics(now, live=bool(procs))

    def _sample_jstat(self, now: float, procs: list[psutil.Process]) -> dict[str, float]:
        if not procs:
            self._prev_row = None
            return {}
        if self._first_live is None:
            self._first_live = now
        jstat = self._jstat
        if jstat is None or jstat.ended:
            jstat = self._start_jstat(now, procs)
            if jstat is None:
                return {}
        row = jstat.latest
        if row is None:
            return {}
        prev, prev_now = self._prev_row, self._prev_now
        self._prev_row, self._prev_now = row, now
        if prev is None or prev_now is None or now <= prev_now:
            return {}
        d_gct = row.gc_time_s - prev.gc_time_s
        d_count = row.collections - prev.collections
        if d_gct < 0 or d_count < 0:
            return {}  # counters restarted: a new JVM under the same pid
        dt = now - prev_now
        return {"gc.pause_ms_per_s": 1000.0 * d_gct / dt, "gc.collections_per_s": d_count / dt}

    def _start_jstat(self, now: float, procs: list[psutil.Process]) -> _Jstat | None:
        ended = self._jstat
        if ended is not None:
            ended.stop()  # reap its watchdog shell, which would wait for close()
            if ended.rows == 0:
                self.unavailable = ended.failure()
                return None
        pid = self.pid if self.pid is not None else _find_jvm(procs)
        if pid is None:
            if self._first_live is not None and now - self._first_live > _FIND_JVM_GRACE_S:
                self.unavailable = (
                    "no JVM in the target tree (no java process with perf data): "
                    "attach to the JVM's pid or pass its -Xlog:gc log file"
                )
            return None
        if ended is not None and pid == self._jstat_pid:
            return None  # that JVM is gone; wait for the target tree to change
        program = self._jstat_path or _find_jstat(pid)
        if program is not None and not _is_executable(program):
            self.unavailable = f"jstat {program} is not an executable file: pass a JDK's bin/jstat"
            return None
        if program is None:
            self.unavailable = (
                "no GC log given and no jstat found (target's JDK, JAVA_HOME, PATH): "
                "install a JDK (apt: openjdk-17-jdk-headless) or pass the -Xlog:gc log file"
            )
            return None
        try:
            self._jstat = _Jstat(program, pid, self._jstat_interval_ms)
        except OSError as exc:
            self.unavailable = f"cannot run {program}: {exc.strerror or exc}"
            return None
        self._jstat_pid = pid
        self._prev_row = None
        return self._jstat


class _JstatRow:
    __slots__ = ("collections", "gc_time_s")

    def __init__(self, gc_time_s: float, collections: float) -> None:
        self.gc_time_s = gc_time_s
        self.collections = collections


class _Jstat:
    """A running ``jstat -gcutil PID INTERVALms`` and the latest totals it printed."""

    def __init__(self, program: str, pid: int, interval_ms: int) -> None:
        argv = [program, *_JSTAT_JVM_FLAGS, "-gcutil", str(pid), f"{interval_ms}ms"]
        self.argv = argv
        self.pid = pid
        self._proc = subprocess.Popen(
            ["sh", "-c", _JSTAT_WATCHDOG, "sh", *argv],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,  # a Ctrl-C meant for perfsleuth must not kill it early
        )
        self.latest: _JstatRow | None = None
        self.rows = 0
        self.stderr = ""
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._read, name="perfsleuth-jstat", daemon=True)
        self._thread.start()
        # Stops jstat even if the probe is dropped without close().
        self._finalizer = weakref.finalize(self, _stop_watchdog, self._proc)

    @property
    def ended(self) -> bool:
        """True once jstat has exited (its JVM died, or it could not attach)."""
        return self._done.is_set()

    def failure(self) -> str:
        """One line saying why jstat produced nothing."""
        detail = ""
        for line in self.stderr.splitlines():
            line = line.strip()
            if line.startswith("Caused by:"):
                detail = line.removeprefix("Caused by:").strip()
                break
            if line and not detail:
                detail = line
        return (
            f"jstat could not read JVM {self.pid} ({detail or 'no output'}): is it a JVM of "
            "this user with -XX:+UsePerfData (the default)? Or pass its -Xlog:gc log file"
        )

    def stop(self) -> None:
        """Close the watchdog's stdin (which kills jstat) and reap it."""
        self._finalizer()
        self._thread.join(timeout=2.0)

    def _read(self) -> None:
        proc = self._proc
        assert proc.stdout is not None
        assert proc.stderr is not None
        columns: dict[str, int] = {}
        try:
            for raw in proc.stdout:
                fields = raw.decode("ascii", errors="replace").split()
                if "GCT" in fields:
                    columns = {name: i for i, name in enumerate(fields)}
                    continue
                row = _parse_row(fields, columns)
                if row is not None:
                    self.latest = row
                    self.rows += 1
            self.stderr = proc.stderr.read(8192).decode("utf-8", errors="replace")
        except (OSError, ValueError) as exc:
            log.debug("jstat reader stopped: %s", exc)
        finally:
            for pipe in (proc.stdout, proc.stderr):
                with contextlib.suppress(OSError):
                    pipe.close()
            self._done.set()


def _parse_row(fields: list[str], columns: dict[str, int]) -> _JstatRow | None:
    """GCT and the sum of the count columns (YGC, FGC, and CGC on JDK 9+) of one row."""
    if not columns or len(fields) != len(columns):
        return None
    try:
        gct = float(fields[columns["GCT"]])
    except ValueError:
        return None
    count = 0.0
    for name in ("YGC", "FGC", "CGC"):
        i = columns.get(name)
        if i is None:
            continue
        with contextlib.suppress(ValueError):  # "-" where a collector does not exist (ZGC)
            count += float(fields[i])
    return _JstatRow(gct, count)


def _stop_watchdog(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(OSError, ValueError):
        if proc.stdin is not None:
            proc.stdin.close()
    try:
        proc.wait(timeout=2.0)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=2.0)


def _find_jvm(procs: list[psutil.Process]) -> int | None:
    """The first process of the tree that publishes JVM perf data, else one named java."""
    perf_pids = set()
    for path in glob.glob("/tmp/hsperfdata_*/*"):
        name = os.path.basename(path)
        if name.isdigit():
            perf_pids.add(int(name))
    for proc in procs:
        if proc.pid in perf_pids:
            return proc.pid
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            if proc.name() == "java":
                return proc.pid
    return None


def _find_jstat(pid: int) -> str | None:
    """jstat from the target's own JDK (same version), else JAVA_HOME's, else PATH's."""
    candidates: list[str] = []
    with contextlib.suppress(psutil.Error, OSError):
        exe = psutil.Process(pid).exe()
        if exe:
            candidates.append(os.path.join(os.path.dirname(os.path.realpath(exe)), "jstat"))
    java_home = os.environ.get("JAVA_HOME")
    if java_home:
        candidates.append(os.path.join(java_home, "bin", "jstat"))
    for path in candidates:
        if _is_executable(path):
            return path
    return shutil.which("jstat")


def _is_executable(path: str) -> bool:
    return os.path.isfile(path) and os.access(path, os.X_OK)
