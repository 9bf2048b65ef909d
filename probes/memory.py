"""Memory probe: the target tree's resident memory and page faults, host memory and swap.

Used by ``probes.sampler`` through ``default_probes()``. Memory pressure (PSI) is in
``probes.pressure``; garbage-collector pauses in the ``probes.gc`` probes.
"""

from __future__ import annotations

import time
from typing import ClassVar

import psutil

from probes._proc import read_meminfo, read_page_faults

MIB = 1024 * 1024

ProcKey = tuple[int, float]
"""(pid, create_time): survives pid reuse, unlike the bare pid."""

# psutil's create_time rests on the whole-second boot time; see probes.cpu.
_CREATE_TIME_SLACK_S = 2.0


class MemoryProbe:
    """Samples ``mem.*`` gauges and page-fault rates.

    USS / PSS / swap need the kernel to walk the process's page tables
    (/proc/<pid>/smaps_rollup): cheap for a small server (~0.1 ms) but proportional to
    its mapped memory, so they are read at most every ``full_every_s`` seconds and
    repeated in between.
    """

    name = "memory"
    METRICS: ClassVar[dict[str, tuple[str, str]]] = {
        "mem.rss_mb": (
            "MiB",
            "resident memory of the target tree (shared pages counted once per process)",
        ),
        "mem.uss_mb": ("MiB", "memory only the target tree's processes use (freed if they exit)"),
        "mem.pss_mb": ("MiB", "proportional set size of the tree: shared pages split fairly"),
        "mem.swap_mb": ("MiB", "the target tree's memory swapped out"),
        "mem.minor_faults_per_s": (
            "1/s",
            "page faults of the target tree served without I/O (first touch, copy-on-write)",
        ),
        "mem.major_faults_per_s": (
            "1/s",
            "page faults of the target tree that waited for disk (swap-in, mapped files)",
        ),
        "mem.host_used_pct": ("%", "host memory in use (total - available), 0-100"),
        "mem.host_swap_used_mb": ("MiB", "swap in use on the host"),
    }

    def __init__(self, full_every_s: float = 2.0) -> None:
        """Create the probe.

        Args:
            full_every_s: Seconds between USS / PSS / swap readings.
        """
        self.unavailable: str | None = None
        self._full_every_s = full_every_s
        self._full_at = -float("inf")
        self._full: dict[str, float] = {}
        self._prev_now: float | None = None
        self._prev_wall = 0.0
        self._prev_faults: dict[ProcKey, tuple[int, int]] = {}
        self.smaps_denied = False  # USS / PSS / swap cannot be read: not allowed
        # Parts that cannot run while the rest does: {part: one-line reason}.
        self.partly_unavailable: dict[str, str] = {}

    def sample(self, now: float, procs: list[psutil.Process]) -> dict[str, float]:
        """Return memory gauges and fault rates since the previous call.

        Args:
            now: ``time.monotonic()`` of this sample.
            procs: Target tree; empty means no target, so tree metrics are omitted.

        Returns:
            Metrics named as in :attr:`METRICS`.
        """
        metrics = _host_memory()
        if procs:
            metrics.update(self._tree(now, procs))
        else:
            self._prev_faults.clear()
            self._full.clear()
            self._full_at = -float("inf")
        self._prev_now = now
        self._prev_wall = time.time()
        return metrics

    def _tree(self, now: float, procs: list[psutil.Process]) -> dict[str, float]:
        full_due = now - self._full_at >= self._full_every_s and not self.smaps_denied
        rss = uss = pss = swap = 0
        minor = major = 0
        faults: dict[ProcKey, tuple[int, int]] = {}
        dt = now - self._prev_now if self._prev_now is not None else 0.0
        for proc in procs:
            try:
                if full_due:
                    try:
                        full = proc.memory_full_info()
                    except psutil.AccessDenied:
                        # smaps needs ptrace rights over the target (another user's
                        # process without root); RSS still comes from statm.
                        self.smaps_denied = True
                        self.partly_unavailable["uss_pss"] = (
                            f"permission denied reading /proc/{proc.pid}/smaps_rollup: "
                            "mem.uss_mb, mem.pss_mb and mem.swap_mb omitted; run perfsleuth "
                            "as root or as the target's user"
                        )
                        full_due = False
                    else:
                        uss += full.uss
                        pss += full.pss
                        swap += full.swap
                if not full_due:
                    rss += proc.memory_info().rss
                else:
                    rss += full.rss
                key = (proc.pid, proc.create_time())
            except psutil.Error:
                continue  # exited (or hidden) between listing and reading
            counts = read_page_faults(proc.pid)
            if counts is None:
                continue
            faults[key] = counts
            prev = self._prev_faults.get(key)
            if prev is None:
                if key[1] < self._prev_wall - _CREATE_TIME_SLACK_S:
                    continue  # old process seen for the first time: baseline only
                prev = (0, 0)  # born since the last sample: its counters started at 0
            minor += max(0, counts[0] - prev[0])
            major += max(0, counts[1] - prev[1])
        had_baseline = bool(self._prev_faults)
        self._prev_faults = faults
        if full_due:
            self._full_at = now
            self._full = {
                "mem.uss_mb": uss / MIB,
                "mem.pss_mb": pss / MIB,
                "mem.swap_mb": swap / MIB,
            }
        metrics = {"mem.rss_mb": rss / MIB, **self._full}
        if had_baseline and dt > 0:
            metrics["mem.minor_faults_per_s"] = minor / dt
            metrics["mem.major_faults_per_s"] = major / dt
        return metrics


def _host_memory() -> dict[str, float]:
    # One read of /proc/meminfo; psutil's virtual_memory() and swap_memory() read it
    # twice and /proc/vmstat besides, three times the cost at 4 Hz.
    info = read_meminfo()
    total = info.get("MemTotal", 0)
    available = info.get("MemAvailable", info.get("MemFree", 0))
    swap_used = info.get("SwapTotal", 0) - info.get("SwapFree", 0)
    return {
        "mem.host_used_pct": 100.0 * (total - available) / total if total else 0.0,
        "mem.host_swap_used_mb": max(swap_used, 0) / MIB,
    }
