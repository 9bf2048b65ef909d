"""Small readers for /proc files that psutil does not expose the way the probes need.

Used by ``probes.cpu`` (host counters from /proc/stat, per-thread context switches)
and ``probes.target`` (exit status of a zombie). Linux only.
"""

from __future__ import annotations

import os
import signal
from typing import NamedTuple

PROC_ROOT = "/proc"

# /proc/<pid>/stat field 52 (1-based) is the exit status; after splitting off
# "pid (comm) " the state is field 3, hence the offset.
_STAT_EXIT_CODE_INDEX = 52 - 3


class HostStat(NamedTuple):
    """Host-wide counters from /proc/stat."""

    busy_ticks: int
    total_ticks: int
    ctxt: int
    procs_running: int
    procs_blocked: int
    # (busy, total) ticks of each core, in /proc/stat's order (cpu0, cpu1, ...).
    cores: tuple[tuple[int, int], ...] = ()


class ThreadStat(NamedTuple):
    """Scheduler counters of one thread."""

    voluntary: int  # context switches it asked for (blocking)
    involuntary: int  # times it was preempted
    run_delay_ns: int  # time spent runnable, waiting for a CPU; -1 without schedstat


def _busy_total(rest: str) -> tuple[int, int]:
    # user nice system idle iowait irq softirq steal; guest time is already included
    # in user/nice, so adding it would double count.
    ticks = [int(v) for v in rest.split()[:8]]
    total = sum(ticks)
    return total - ticks[3] - ticks[4], total


def read_host_stat(path: str = f"{PROC_ROOT}/stat") -> HostStat:
    """Read CPU time, context switch and run-queue counters from /proc/stat.

    Args:
        path: File to read; only tests pass something else.

    Returns:
        The counters; ``busy_ticks``/``total_ticks`` are summed over all CPUs.
    """
    busy = total = ctxt = running = blocked = 0
    cores: list[tuple[int, int]] = []
    with open(path, encoding="ascii") as f:
        for line in f:
            key, _, rest = line.partition(" ")
            if key == "cpu":
                busy, total = _busy_total(rest)
            elif key.startswith("cpu"):
                cores.append(_busy_total(rest))
            elif key == "ctxt":
                ctxt = int(rest)
            elif key == "procs_running":
                running = int(rest)
            elif key == "procs_blocked":
                blocked = int(rest)
    return HostStat(busy, total, ctxt, running, blocked, tuple(cores))


def read_proc_file(path: str, size: int = 8192) -> bytes:
    """A /proc file's content, read without Python's buffered file objects.

    The probes read hundreds of small /proc files per tick (two per thread of the
    target); `open()` builds a buffered reader each time and costs about three times
    as much as the read itself.

    Raises:
        OSError: the file cannot be opened (e.g. the process or thread exited).
    """
    fd = os.open(path, os.O_RDONLY)
    try:
        data = os.read(fd, size)
        if len(data) < size:
            return data
        chunks = [data]
        while chunk := os.read(fd, size):
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def read_meminfo() -> dict[str, int]:
    """/proc/meminfo in bytes: MemTotal, MemAvailable, SwapTotal, SwapFree, ..."""
    out: dict[str, int] = {}
    for line in read_proc_file(f"{PROC_ROOT}/meminfo").splitlines():
        name, _, rest = line.partition(b":")
        fields = rest.split()
        if fields:
            out[name.decode()] = int(fields[0]) * (1024 if len(fields) > 1 else 1)
    return out


def read_thread_stats(pid: int) -> dict[int, ThreadStat]:
    """Read the context switches and run delay of every thread of a process.

    /proc/<pid>/status only reports the main thread (so does psutil's
    ``num_ctx_switches``), which misses worker threads, hence the per-task walk; the
    run delay comes from each task's schedstat (absent on kernels built without
    CONFIG_SCHEDSTATS, then -1).

    Args:
        pid: Process id.

    Returns:
        ``{tid: ThreadStat}``; empty if the process is gone. Threads that exit during
        the walk are left out.
    """
    task_dir = f"{PROC_ROOT}/{pid}/task"
    try:
        tids = os.listdir(task_dir)
    except (FileNotFoundError, ProcessLookupError):
        return {}
    result: dict[int, ThreadStat] = {}
    for tid in tids:
        try:
            status = read_proc_file(f"{task_dir}/{tid}/status")
        except OSError:
            continue  # the thread exited during the walk
        voluntary = _status_field(status, b"\nvoluntary_ctxt_switches:")
        involuntary = _status_field(status, b"\nnonvoluntary_ctxt_switches:")
        if voluntary < 0 or involuntary < 0:
            continue
        run_delay = -1
        try:
            fields = read_proc_file(f"{task_dir}/{tid}/schedstat", 256).split()
            if len(fields) >= 2:
                run_delay = int(fields[1])
        except OSError:
            pass
        result[int(tid)] = ThreadStat(voluntary, involuntary, run_delay)
    return result


def _status_field(status: bytes, key: bytes) -> int:
    start = status.find(key)
    if start < 0:
        return -1
    start += len(key)
    end = status.find(b"\n", start)
    return int(status[start : end if end >= 0 else len(status)])


def read_page_faults(pid: int) -> tuple[int, int] | None:
    """Minor and major page faults of a process (all its threads), or None if gone.

    From /proc/<pid>/stat fields 10 and 12 (1-based), which psutil does not expose.
    """
    try:
        data = read_proc_file(f"{PROC_ROOT}/{pid}/stat", 1024)
    except OSError:
        return None
    # After "pid (comm) " the state is field 3, so minflt (10) and majflt (12) sit at
    # offsets 7 and 9; comm may hold spaces and parentheses, hence the rfind.
    fields = data[data.rfind(b")") + 2 :].split()
    if len(fields) < 10:
        return None
    return int(fields[7]), int(fields[9])


def read_exit_status(pid: int) -> int | None:
    """Read the raw wait status of a zombie from /proc/<pid>/stat.

    Args:
        pid: Process id of a process that has exited but not been reaped yet.

    Returns:
        The wait status as ``os.waitpid`` would return it, or None if the process
        is gone or the kernel does not expose the field (before Linux 3.5, or not
        allowed to ptrace it).
    """
    try:
        with open(f"{PROC_ROOT}/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    fields = data[data.rfind(b")") + 2 :].split()
    if len(fields) <= _STAT_EXIT_CODE_INDEX:
        return None
    return int(fields[_STAT_EXIT_CODE_INDEX])


def describe_wait_status(status: int) -> str:
    """Turn a raw wait status into "exited with code N" / "killed by signal NAME".

    Args:
        status: Raw status as returned by ``os.waitpid``.

    Returns:
        A short human-readable phrase.
    """
    if os.WIFSIGNALED(status):
        return f"killed by signal {signal_name(os.WTERMSIG(status))}"
    return f"exited with code {os.WEXITSTATUS(status)}"


def signal_name(signum: int) -> str:
    """Name a signal number, e.g. 15 -> "SIGTERM", falling back to the number."""
    try:
        return signal.Signals(signum).name
    except ValueError:
        return str(signum)
