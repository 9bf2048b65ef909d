"""Running py-spy: one stack snapshot (``dump --json``) or one recorded window (``record``).

Used by ``probes.stacks.probe`` (recorded windows for the profile and GIL share, a snapshot
per window for the idle share) and ``probes.stacks.gc_estimate`` (native windows, for the GC
estimate). py-spy has no streaming output: ``record`` writes its file only when it ends,
so each window is one short-lived py-spy process; only ``dump --json`` says which
threads are idle. Errors become :class:`PySpyError` with a one-line reason.
"""

from __future__ import annotations

import contextlib
import enum
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

from probes.stacks.profile import CollapsedStacks, frame_label, parse_collapsed

# RUST_BACKTRACE=1 in the caller's environment makes py-spy print (and capture) a
# backtrace with every error; it only makes the first line harder to find.
_ENV_OVERRIDES = {"RUST_BACKTRACE": "0", "RUST_LIB_BACKTRACE": "0"}

_RECORD_SUMMARY = re.compile(r"Samples: (\d+) Errors: (\d+)")


class Failure(enum.Enum):
    """Why py-spy failed, as far as the caller needs to know."""

    MISSING = "missing"  # no py-spy binary
    PERMISSION = "permission"  # cannot ptrace / read the target's memory
    GONE = "gone"  # the target exited
    NOT_PYTHON = "not_python"  # no interpreter found (yet: a just-started process has none)
    OTHER = "other"  # anything else, e.g. a torn read in non-blocking mode


class PySpyError(Exception):
    """py-spy could not sample; ``reason`` is one line fit for ``probes_unavailable``."""

    def __init__(self, kind: Failure, reason: str) -> None:
        super().__init__(reason)
        self.kind = kind
        self.reason = reason


@dataclass(frozen=True, slots=True)
class ThreadStack:
    """One Python thread in a snapshot.

    Attributes:
        pid: Process the thread belongs to.
        name: Python thread name, None when py-spy could not read it.
        active: False when py-spy judged the thread idle (sleeping, waiting on I/O or a lock).
        owns_gil: True for the thread holding the GIL at that instant.
        stack: Collapsed stack, root first (see ``probes.stacks.profile``).
    """

    pid: int
    name: str | None
    active: bool
    owns_gil: bool
    stack: str


@dataclass(frozen=True, slots=True)
class RecordedWindow:
    """What one ``py-spy record`` run saw.

    Attributes:
        stacks: Collapsed stacks with their sample counts.
        samples: Thread samples py-spy kept (with ``--gil``: instants the GIL was held).
        intervals: Instants sampled without error (0 when the run was cut short).
        errors: Instants py-spy failed to read.
        complete: False when py-spy stopped early (the target exited, or we stopped it).
    """

    stacks: CollapsedStacks
    samples: int
    intervals: int
    errors: int
    complete: bool


def find_py_spy(explicit: str | None = None) -> str | None:
    """Locate the py-spy binary: ``explicit``, next to this Python, then on PATH."""
    if explicit:
        return explicit if os.access(explicit, os.X_OK) else None
    # A venv's bin/ is often not on PATH when perfsleuth is run by its full path.
    sibling = Path(sys.executable).with_name("py-spy")
    if os.access(sibling, os.X_OK):
        return str(sibling)
    return shutil.which("py-spy")


class PySpy:
    """Runs py-spy against one process; :meth:`kill` ends whatever runs are in flight.

    Runs may overlap (a snapshot during a recording); another thread may call
    :meth:`kill` to stop them.
    """

    def __init__(self, binary: str, pid: int) -> None:
        """Prepare to sample ``pid``.

        Args:
            binary: Path of the py-spy executable (see :func:`find_py_spy`).
            pid: Target process.
        """
        self.binary = binary
        self.pid = pid
        self._env = {**os.environ, **_ENV_OVERRIDES}
        self._lock = threading.Lock()
        self._procs: set[subprocess.Popen[bytes]] = set()
        self._killed = False

    def dump(self, *, native: bool = False, timeout: float = 10.0) -> list[ThreadStack]:
        """Take one snapshot of every Python thread.

        Args:
            native: Include C frames (``--native``). py-spy then has to pause the target
                while it reads the stacks; otherwise ``--nonblocking`` leaves it running.
            timeout: Seconds before the py-spy run is abandoned.

        Raises:
            PySpyError: py-spy failed; see its ``kind``.
        """
        args = ["dump", "--json", "--native" if native else "--nonblocking"]
        out, _ = self._run(args, timeout)
        try:
            traces = json.loads(out)
        except ValueError:
            raise PySpyError(
                Failure.OTHER, "py-spy dump printed something that is not JSON"
            ) from None
        return [_thread_stack(trace) for trace in traces]

    def record(
        self,
        *,
        seconds: int,
        rate_hz: int,
        native: bool = False,
        gil_only: bool = False,
        during: Callable[[], None] | None = None,
        timeout: float | None = None,
    ) -> RecordedWindow:
        """Record for ``seconds`` at ``rate_hz`` and return the collapsed stacks.

        Args:
            seconds: Whole seconds to record (py-spy takes no fractions).
            rate_hz: Samples per second.
            native: Include C frames; pauses the target at each sample.
            gil_only: Keep only the thread holding the GIL (``--gil``): one trace per
                instant at most, and py-spy skips reading every thread's OS state.
            during: Called once while py-spy records, e.g. to take a snapshot.
            timeout: Seconds before the run is abandoned; default ``seconds`` + 30.

        Raises:
            PySpyError: py-spy failed before writing its output.
        """
        with tempfile.TemporaryDirectory(prefix="perfsleuth-pyspy-") as tmp:
            path = Path(tmp) / "window.txt"
            args = ["record", "--format", "raw", "--output", str(path)]
            args += ["--duration", str(seconds), "--rate", str(rate_hz)]
            args += ["--native"] if native else ["--nonblocking"]
            if gil_only:
                args.append("--gil")
            out, _ = self._run(
                args, timeout if timeout is not None else seconds + 30.0, during=during
            )
            if not path.exists():
                raise PySpyError(Failure.OTHER, "py-spy record wrote no output file")
            stacks = parse_collapsed(path.read_text(errors="replace"))
        summary = _RECORD_SUMMARY.search(out)
        samples = int(summary.group(1)) if summary else sum(stacks.values())
        errors = int(summary.group(2)) if summary else 0
        # py-spy counts an instant before checking the duration, so a full run of
        # seconds * rate instants processes one fewer (checked against py-spy 0.4.3).
        complete = "Stopped sampling" not in out
        intervals = max(0, seconds * rate_hz - 1 - errors) if complete else 0
        return RecordedWindow(stacks, samples, intervals, errors, complete)

    def kill(self) -> None:
        """Stop the py-spy runs in flight, if any; later runs fail with GONE."""
        with self._lock:
            self._killed = True
            procs = list(self._procs)
        for proc in procs:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    # SIGINT lets a blocking py-spy detach from the target cleanly.
                    proc.send_signal(signal.SIGINT)

    def _run(
        self, args: list[str], timeout: float, during: Callable[[], None] | None = None
    ) -> tuple[str, str]:
        cmd = [self.binary, *args, "--pid", str(self.pid)]
        with self._lock:
            if self._killed:
                raise PySpyError(Failure.GONE, "sampling stopped")
            try:
                proc = subprocess.Popen(
                    cmd,
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    env=self._env,
                )
            except OSError as exc:
                raise PySpyError(
                    Failure.MISSING, f"cannot run py-spy ({self.binary}): {exc.strerror}"
                ) from None
            self._procs.add(proc)
        try:
            if during is not None:
                during()
            out_b, err_b = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            raise PySpyError(Failure.OTHER, f"py-spy {args[0]} took over {timeout:.0f}s") from None
        finally:
            with self._lock:
                self._procs.discard(proc)
        out = out_b.decode(errors="replace")
        err = err_b.decode(errors="replace")
        if proc.returncode != 0:
            raise self._classify(err or out)
        return out, err

    def _classify(self, message: str) -> PySpyError:
        text = " ".join(message.split())
        lowered = text.lower()
        pid = self.pid
        if self._killed:
            return PySpyError(Failure.GONE, "sampling stopped")
        if "permission denied" in lowered or "operation not permitted" in lowered:
            return PySpyError(
                Failure.PERMISSION,
                f"py-spy may not read pid {pid}'s memory (ptrace): run perfsleuth as root "
                "or as the target's user, with kernel.yama.ptrace_scope <= 1 "
                "(in a container: --cap-add SYS_PTRACE)",
            )
        if "failed to find python version" in lowered or "failed to find python interp" in lowered:
            return PySpyError(
                Failure.NOT_PYTHON, f"pid {pid} is not a Python process py-spy can read"
            )
        if not _process_exists(pid) or "no such file or directory" in lowered:
            return PySpyError(Failure.GONE, f"process {pid} exited")
        first = next((ln for ln in message.splitlines() if ln.strip()), "no message")
        return PySpyError(Failure.OTHER, f"py-spy failed: {first.strip()[:200]}")


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie still "exists" for kill(); its memory is gone, so treat it as exited.
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rpartition(b")")[2].split()[0] != b"Z"
    except OSError:
        return False


def _thread_stack(trace: dict[str, Any]) -> ThreadStack:
    labels = [
        frame_label(
            str(frame.get("name") or "?"),
            str(frame.get("short_filename") or frame.get("filename") or ""),
            int(frame.get("line") or 0),
        )
        for frame in reversed(trace.get("frames") or [])  # py-spy lists the leaf first
    ]
    return ThreadStack(
        pid=int(trace.get("pid") or 0),
        name=trace.get("thread_name"),
        active=bool(trace.get("active", True)),
        owns_gil=bool(trace.get("owns_gil", False)),
        stack=";".join(labels),
    )


class PySpyWorker:
    """What a probe running py-spy windows on its own thread has in common.

    Subclasses validate their arguments, call ``super().__init__`` and implement
    :meth:`_run`, the loop of windows, which must end once ``_stop`` is set; the first
    :meth:`_start` (from ``sample``) starts it, :meth:`close` ends it.
    """

    thread_label = "py-spy"

    def __init__(self, pid: int, py_spy: str | None) -> None:
        self.pid = pid
        self.unavailable: str | None = None
        binary = find_py_spy(py_spy)
        if binary is None:
            self.unavailable = "py-spy not found: install it (pip install py-spy)"
        self._spy = PySpy(binary or "py-spy", pid)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._run, name=f"perfsleuth-{self.thread_label}-{self.pid}", daemon=True
            )
            self._thread.start()

    def _run(self) -> None:
        raise NotImplementedError

    def close(self, timeout: float = 5.0) -> None:
        """Stop sampling (py-spy is interrupted and detaches) and wait for the thread."""
        self._stop.set()
        self._spy.kill()
        if self._thread is not None:
            self._thread.join(timeout)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
