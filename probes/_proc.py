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


def read_host_stat(path: str = f"{PROC_ROOT}/stat") -> HostStat:
    """Read CPU time, context switch and run-queue counters from /proc/stat.

    Args:
        path: File to read; only tests pass something else.

    Returns:
        The counters; ``busy_ticks``/``total_ticks`` are summed over all CPUs.
    """
    busy = total = ctxt = running = blocked = 0
    with open(path, encoding="ascii") as f:
        for line in f:
            key, _, rest = line.partition(" ")
            if key == "cpu":
                # user nice system idle iowait irq softirq steal; guest time is
                # already included in user/nice, so adding it would double count.
                ticks = [int(v) for v in rest.split()[:8]]
                total = sum(ticks)
                busy = total - ticks[3] - ticks[4]
            elif key == "ctxt":
                ctxt = int(rest)
            elif key == "procs_running":
                running = int(rest)
            elif key == "procs_blocked":
                blocked = int(rest)
    return HostStat(busy, total, ctxt, running, blocked)


def read_thread_ctx_switches(pid: int) -> dict[int, tuple[int, int]]:
    """Read voluntary and involuntary context switches of every thread of a process.

    /proc/<pid>/status only reports the main thread (so does psutil's
    ``num_ctx_switches``), which misses worker threads, hence the per-task walk.

    Args:
        pid: Process id.

    Returns:
        ``{tid: (voluntary, involuntary)}``; empty if the process is gone.
        Threads that exit during the walk are left out.
    """
    task_dir = f"{PROC_ROOT}/{pid}/task"
    try:
        tids = os.listdir(task_dir)
    except (FileNotFoundError, ProcessLookupError):
        return {}
    result: dict[int, tuple[int, int]] = {}
    for tid in tids:
        voluntary = involuntary = -1
        try:
            with open(f"{task_dir}/{tid}/status", encoding="utf-8", errors="replace") as f:
                for line in f:
                    if line.startswith("voluntary_ctxt_switches:"):
                        voluntary = int(line.split()[1])
                    elif line.startswith("nonvoluntary_ctxt_switches:"):
                        involuntary = int(line.split()[1])
                        break
        except (FileNotFoundError, ProcessLookupError):
            continue
        if voluntary >= 0 and involuntary >= 0:
            result[int(tid)] = (voluntary, involuntary)
    return result


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
