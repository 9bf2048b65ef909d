"""Disk probes: host block-device throughput and the target tree's storage I/O.

Used by ``probes.sampler`` through ``default_probes()``.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Collection
from typing import Any, ClassVar

import psutil

MIB = 1024 * 1024

_SYS_BLOCK = "/sys/block"
_SYS_VIRTUAL_BLOCK = "/sys/devices/virtual/block"
# Used only when /sys is not mounted: virtual devices and partitions by name.
_VIRTUAL_NAME = re.compile(r"^(loop|ram|zram|dm-|md|sr|fd|nbd)")
_PARTITION_NAME = re.compile(r"^((sd|vd|xvd|hd)[a-z]+\d+|(nvme\d+n\d+|mmcblk\d+)p\d+)$")

# The kernel adds a reaped child's I/O totals to its parent's /proc/<pid>/io.
# We discount them from the parent for this long after the child vanishes; a
# parent that never reaps (or auto-reaps) would otherwise lose real I/O forever.
_REAP_DISCOUNT_TTL_S = 3.0
# psutil's create_time rests on the whole-second boot time; see probes.cpu.
_CREATE_TIME_SLACK_S = 2.0

ProcKey = tuple[int, float]


def physical_disks(names: Collection[str]) -> list[str]:
    """Keep whole physical disks: no partitions, loop, ram, zram, device-mapper or md.

    Counting partitions or stacked virtual devices too would count the same I/O twice.

    Args:
        names: Device names as in /proc/diskstats.

    Returns:
        The physical disk names, sorted.
    """
    try:
        whole = set(os.listdir(_SYS_BLOCK))
        virtual = (
            set(os.listdir(_SYS_VIRTUAL_BLOCK)) if os.path.isdir(_SYS_VIRTUAL_BLOCK) else set()
        )
    except OSError:
        return sorted(
            n for n in names if not _VIRTUAL_NAME.match(n) and not _PARTITION_NAME.match(n)
        )
    return sorted(n for n in names if n in whole and n not in virtual)


class DiskProbe:
    """Samples host-wide ``disk.*`` rates over the physical disks.

    Marks itself unavailable when the host exposes no physical disk counters
    (common in containers, where /proc/diskstats may list only loop devices).
    """

    name = "disk"
    METRICS: ClassVar[dict[str, tuple[str, str]]] = {
        "disk.read_iops": ("1/s", "completed reads on the host's physical disks"),
        "disk.write_iops": ("1/s", "completed writes on the host's physical disks"),
        "disk.read_mb_per_s": ("MiB/s", "bytes read from the host's physical disks"),
        "disk.write_mb_per_s": ("MiB/s", "bytes written to the host's physical disks"),
        "disk.await_ms": (
            "ms",
            "mean time a completed disk request took, queueing included (iostat's await)",
        ),
        "disk.util_pct": (
            "%",
            "busy time of the busiest physical disk (iostat's %util), 0-100",
        ),
        "disk.<DEV>_read_iops": ("1/s", "completed reads on disk DEV"),
        "disk.<DEV>_write_iops": ("1/s", "completed writes on disk DEV"),
        "disk.<DEV>_read_mb_per_s": ("MiB/s", "bytes read from disk DEV"),
        "disk.<DEV>_write_mb_per_s": ("MiB/s", "bytes written to disk DEV"),
        "disk.<DEV>_await_ms": ("ms", "mean time a completed request on disk DEV took"),
        "disk.<DEV>_util_pct": ("%", "busy time of disk DEV, 0-100"),
    }

    def __init__(self, disks: Collection[str] | None = None) -> None:
        """Create the probe.

        Args:
            disks: Device names to watch; default: every physical disk found.
        """
        self.unavailable: str | None = None
        self._disks = list(disks) if disks is not None else None
        self._prev_now: float | None = None
        self._prev: dict[str, Any] = {}

    @property
    def disks(self) -> list[str]:
        """The device names being summed (known after the first sample)."""
        return list(self._disks or ())

    def sample(self, now: float, procs: list[psutil.Process]) -> dict[str, float]:
        """Return disk rates since the previous call (nothing on the first call).

        Args:
            now: ``time.monotonic()`` of this sample.
            procs: Ignored: these are host metrics.

        Returns:
            Metrics named as in :attr:`METRICS`.
        """
        counters = psutil.disk_io_counters(perdisk=True) or {}
        if self._disks is None:
            self._disks = physical_disks(counters)
        if not self._disks:
            self.unavailable = (
                "no physical disk in /proc/diskstats (only loop/ram/virtual devices, "
                "common in containers): host disk.* metrics omitted"
            )
            return {}
        cur = {name: counters[name] for name in self._disks if name in counters}
        metrics: dict[str, float] = {}
        if self._prev_now is not None and now > self._prev_now:
            metrics = self._rates(cur, now - self._prev_now)
        self._prev = cur
        self._prev_now = now
        return metrics

    def _rates(self, cur: dict[str, Any], dt: float) -> dict[str, float]:
        metrics: dict[str, float] = {}
        reads = writes = rbytes = wbytes = io_ms = 0
        busiest = 0.0
        for name, c in cur.items():
            p = self._prev.get(name)
            if p is None or c.read_count < p.read_count or c.write_count < p.write_count:
                continue  # new disk or counter reset: rebaseline
            d_reads = c.read_count - p.read_count
            d_writes = c.write_count - p.write_count
            d_rbytes = max(0, c.read_bytes - p.read_bytes)
            d_wbytes = max(0, c.write_bytes - p.write_bytes)
            # read_time / write_time: total ms requests spent from issue to completion.
            d_io_ms = max(0, c.read_time - p.read_time) + max(0, c.write_time - p.write_time)
            # busy_time: ms the device had requests in flight (the kernel's io_ticks).
            util = min(100.0, 100.0 * max(0, c.busy_time - p.busy_time) / 1000.0 / dt)
            reads += d_reads
            writes += d_writes
            rbytes += d_rbytes
            wbytes += d_wbytes
            io_ms += d_io_ms
            busiest = max(busiest, util)
            metrics[f"disk.{name}_read_iops"] = d_reads / dt
            metrics[f"disk.{name}_write_iops"] = d_writes / dt
            metrics[f"disk.{name}_read_mb_per_s"] = d_rbytes / MIB / dt
            metrics[f"disk.{name}_write_mb_per_s"] = d_wbytes / MIB / dt
            metrics[f"disk.{name}_util_pct"] = util
            if d_reads + d_writes:
                metrics[f"disk.{name}_await_ms"] = d_io_ms / (d_reads + d_writes)
        metrics.update(
            {
                "disk.read_iops": reads / dt,
                "disk.write_iops": writes / dt,
                "disk.read_mb_per_s": rbytes / MIB / dt,
                "disk.write_mb_per_s": wbytes / MIB / dt,
                "disk.util_pct": busiest,
            }
        )
        if reads + writes:
            # No request completed, no await: a gap, not a zero that would read as fast.
            metrics["disk.await_ms"] = io_ms / (reads + writes)
        return metrics


class ProcessIOProbe:
    """Samples the target tree's storage I/O (``proc.io_*``) from /proc/<pid>/io.

    These are bytes that reached (or would reach) the block layer, so page-cache
    hits are excluded and buffered writes count when dirtied, not when flushed.
    Marks itself unavailable when no process of the tree can be read.
    """

    name = "proc_io"
    METRICS: ClassVar[dict[str, tuple[str, str]]] = {
        "proc.io_read_mb_per_s": ("MiB/s", "storage reads by the target tree"),
        "proc.io_write_mb_per_s": ("MiB/s", "storage writes by the target tree"),
        "proc.io_read_syscalls_per_s": (
            "1/s",
            "read-like system calls of the target tree (read, pread, recv...; sockets too)",
        ),
        "proc.io_write_syscalls_per_s": (
            "1/s",
            "write-like system calls of the target tree (write, pwrite, send...; sockets too)",
        ),
    }

    def __init__(self) -> None:
        """Create a probe with no baseline; the first sample returns nothing."""
        self.unavailable: str | None = None
        self._prev_now: float | None = None
        self._prev_wall = 0.0
        # key -> (read bytes, write bytes, read calls, write calls, ppid)
        self._prev: dict[ProcKey, tuple[int, int, int, int, int]] = {}
        # Parent key -> [read bytes, write bytes, read calls, write calls, expiry] still to
        # discount for reaped children.
        self._owed: dict[ProcKey, list[float]] = {}

    def sample(self, now: float, procs: list[psutil.Process]) -> dict[str, float]:
        """Return the tree's I/O rates since the previous call.

        Args:
            now: ``time.monotonic()`` of this sample.
            procs: Target tree; empty means no target, so nothing is returned.

        Returns:
            Metrics named as in :attr:`METRICS`.
        """
        cur: dict[ProcKey, tuple[int, int, int, int, int]] = {}
        denied = 0
        for proc in procs:
            try:
                with proc.oneshot():
                    io = proc.io_counters()
                    ppid = proc.ppid()
                cur[(proc.pid, proc.create_time())] = (
                    io.read_bytes,
                    io.write_bytes,
                    io.read_count,
                    io.write_count,
                    ppid,
                )
            except psutil.AccessDenied:
                denied += 1
            except psutil.Error:
                continue
        if procs and denied == len(procs):
            self.unavailable = (
                f"permission denied reading /proc/{procs[0].pid}/io: "
                "run perfsleuth as root or as the target's user"
            )
            return {}
        metrics: dict[str, float] = {}
        if self._prev_now is not None and now > self._prev_now and procs:
            metrics = self._rates(cur, now - self._prev_now, now)
        self._prev = cur
        self._prev_now = now
        self._prev_wall = time.time()
        return metrics

    def _rates(
        self, cur: dict[ProcKey, tuple[int, int, int, int, int]], dt: float, now: float
    ) -> dict[str, float]:
        by_pid = {key[0]: key for key in cur}
        for key, (*counts, ppid) in self._prev.items():
            parent = by_pid.get(ppid)
            if key not in cur and parent is not None:
                debt = self._owed.setdefault(parent, [0.0] * (_COUNTERS + 1))
                for i in range(_COUNTERS):
                    debt[i] += counts[i]
                debt[_COUNTERS] = now + _REAP_DISCOUNT_TTL_S
        totals = [0.0] * _COUNTERS
        for key, (*counts, _) in cur.items():
            prev = self._prev.get(key)
            if prev is None:
                if key[1] < self._prev_wall - _CREATE_TIME_SLACK_S:
                    continue  # old process seen for the first time: baseline only
                prev = (0, 0, 0, 0, 0)  # born since the last sample: counters started at 0
            owed = self._owed.get(key)
            for i in range(_COUNTERS):
                delta = float(max(0, counts[i] - prev[i]))
                if owed is not None:
                    taken = min(delta, owed[i])
                    delta -= taken
                    owed[i] -= taken
                totals[i] += delta
        self._owed = {
            k: v
            for k, v in self._owed.items()
            if k in cur and v[_COUNTERS] > now and any(v[:_COUNTERS])
        }
        return {
            "proc.io_read_mb_per_s": totals[0] / MIB / dt,
            "proc.io_write_mb_per_s": totals[1] / MIB / dt,
            "proc.io_read_syscalls_per_s": totals[2] / dt,
            "proc.io_write_syscalls_per_s": totals[3] / dt,
        }


# Counters kept per process: read bytes, write bytes, read calls, write calls.
_COUNTERS = 4
