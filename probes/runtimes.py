"""Which garbage-collector probe a target gets, by what its runtime is and how it started.

Used by the tracker when it launches or attaches to a target. A launched Python program
gets the in-process GC agent (exact pauses); a launched Go program runs with
``GODEBUG=gctrace=1`` and its stderr passes through the Go probe; a JVM is read from the
unified GC log the user names, else through ``jstat`` when a JDK is present.
"""

from __future__ import annotations

import mmap
import os
import re
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import IO, cast

import psutil

from probes.gc.go import GoGcProbe
from probes.gc.jvm import JvmGcProbe
from probes.gc.python import PythonGcProbe
from probes.sampler import Probe
from probes.stacks.gc_estimate import GcEstimateProbe
from probes.stacks.probe import StackProbe
from probes.target import Target

# Go writes this marker at the start of its build-info section in every binary
# (go1.13+), so a Go program is recognised without running it.
_GO_BUILDINFO_MAGIC = b"\xff Go buildinf:"


def program_path(argv0: str) -> str | None:
    """The file `argv0` runs, as the shell would find it; None if there is none."""
    found = shutil.which(argv0)
    return os.path.realpath(found) if found else None


def is_go_program(path: str) -> bool:
    """True for an executable built by the Go toolchain."""
    try:
        with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
            return data.find(_GO_BUILDINFO_MAGIC) >= 0
    except (OSError, ValueError):
        return False


def is_python_program(path: str) -> bool:
    """True for a Python interpreter, or a script whose #! line runs one (uvicorn, ...)."""
    if os.path.basename(path).startswith(("python", "pypy")):
        return True
    try:
        with open(path, "rb") as f:
            first = f.readline(256)
    except OSError:
        return False
    return first.startswith(b"#!") and b"python" in first


def _with_gctrace(env: dict[str, str]) -> str:
    existing = env.get("GODEBUG", "")
    return f"{existing},gctrace=1" if existing else "gctrace=1"


_GCTRACE_LINE = re.compile(rb"^gc \d+ @")


class WithoutGctrace:
    """A sink that passes a Go program's stderr on without the gctrace lines we asked for.

    They are perfsleuth's instrumentation, not the program's output: one line per GC
    cycle would bury the program's own messages and the progress lines.
    """

    def __init__(self, sink: IO[bytes]) -> None:
        self._sink = sink
        self._partial = b""

    def write(self, data: bytes) -> int:
        lines = (self._partial + data).split(b"\n")
        self._partial = lines.pop()
        if len(self._partial) > 65536:  # no newline for that long: not a trace line
            lines.append(self._partial)
            self._partial = b""
        kept = [line + b"\n" for line in lines if not _GCTRACE_LINE.match(line)]
        if kept:
            self._sink.write(b"".join(kept))
        return len(data)

    def flush(self) -> None:
        self._sink.flush()


@dataclass
class Launch:
    """A launched target and the GC probes fitted to it."""

    target: Target
    probes: list[Probe] = field(default_factory=list)


def launch_with_gc_probes(
    argv: Sequence[str],
    *,
    gc_log: str | None = None,
    stderr_sink: IO[bytes] | None = None,
    interval_s: float = 0.25,
    output: IO[bytes] | None = None,
) -> Launch:
    """Launch `argv` with what its runtime needs for GC pauses to be measured.

    Args:
        argv: The command.
        gc_log: A JVM unified GC log the command writes (``-Xlog:gc:file=PATH``).
        stderr_sink: Where a Go program's stderr goes on to, unchanged (it passes
            through perfsleuth to be read); None drops it.
        interval_s: The sampling interval (jstat polls at the same pace).
        output: Where the command's stdout and stderr go instead of the terminal (e.g. a
            log file while a full-screen view owns the terminal); it also replaces
            ``stderr_sink``.

    Raises:
        ProbeError: the command cannot be started.
    """
    path = program_path(argv[0]) if argv else None
    env: dict[str, str] = {}
    probes: list[Probe] = []
    python = PythonGcProbe() if path is not None and is_python_program(path) else None
    if python is not None:
        env.update(python.launch_env())
        probes.append(python)
    go = path is not None and is_go_program(path)
    read_end = write_end = -1
    quiet = "gctrace" not in os.environ.get("GODEBUG", "")  # the user did not ask for it
    if go:
        env["GODEBUG"] = _with_gctrace(dict(os.environ))
        read_end, write_end = os.pipe()
    try:
        target = Target.launch(argv, env=env, stdout=output, stderr=write_end if go else output)
    except BaseException:
        close_probes(probes)
        if go:
            os.close(read_end)
        raise
    finally:
        if go:
            os.close(write_end)  # the child holds its copy; EOF comes when it exits
    if go:
        sink = output if output is not None else stderr_sink
        if sink is not None and quiet:
            sink = cast(IO[bytes], WithoutGctrace(sink))
        probes.append(GoGcProbe.from_stream(os.fdopen(read_end, "rb"), sink=sink))
    if gc_log is not None:
        probes.append(JvmGcProbe(log_path=gc_log, from_start=True))
    return Launch(target, probes)


def attach_gc_probes(
    target: Target, *, gc_log: str | None = None, interval_s: float = 0.25
) -> list[Probe]:
    """GC probes for a running target: the JVM's log or jstat; none for other runtimes.

    (Attached Python targets get a py-spy estimate from the stack probe instead: an
    agent cannot be loaded into a running interpreter.)
    """
    if gc_log is not None:
        return [JvmGcProbe(log_path=gc_log)]
    if any(_is_jvm(proc) for proc in target.processes()):
        return [JvmGcProbe(jstat_interval_s=interval_s)]
    return []


def is_python_process(proc: psutil.Process) -> bool:
    """True when the process runs a Python interpreter (whatever its script is called)."""
    try:
        return os.path.basename(proc.exe()).startswith(("python", "pypy"))
    except psutil.Error:
        return False


def stack_probes(target: Target, *, launched: bool) -> list[Probe]:
    """py-spy probes for a Python target's root process: stacks, GIL and idle shares.

    An attached target also gets the py-spy estimate of its GC time (a launched one has
    the exact agent instead). Other runtimes get none.
    """
    procs = target.processes()
    if not procs or not is_python_process(procs[0]):
        return []
    probes: list[Probe] = [StackProbe(procs[0].pid)]
    if not launched:
        probes.append(GcEstimateProbe(procs[0].pid))
    return probes


def _is_jvm(proc: psutil.Process) -> bool:
    try:
        return proc.name() == "java"
    except psutil.Error:
        return False


def close_probes(probes: Sequence[Probe]) -> None:
    """Release what these probes hold (sockets, pipes, jstat); closing twice is harmless."""
    for probe in probes:
        close = getattr(probe, "close", None)
        if close is not None:
            close()


def attached_probes(
    target: Target, *, gc_log: str | None = None, interval_s: float = 0.25, stacks: bool = True
) -> list[Probe]:
    """The probes fitted to a running target: its GC (a JVM's log or jstat) and, for a
    Python one (unless not `stacks`), py-spy's stacks and GC estimate."""
    return [
        *attach_gc_probes(target, gc_log=gc_log, interval_s=interval_s),
        *(stack_probes(target, launched=False) if stacks else []),
    ]


def launched_probes(
    launch: Launch, *, interval_s: float = 0.25, stacks: bool = True
) -> list[Probe]:
    """The probes fitted to a launched target, once it runs: those `launch_with_gc_probes`
    fitted (else a JVM's jstat), and (unless not `stacks`) py-spy's stacks for a Python
    one."""
    probes = list(launch.probes)
    if not probes:
        probes.extend(attach_gc_probes(launch.target, interval_s=interval_s))
    if stacks:
        probes.extend(stack_probes(launch.target, launched=True))
    return probes
