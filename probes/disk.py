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
            dt = now - self._prev_now
            reads = writes = rbytes = wbytes = 0
            for name, c in cur.items():
                p = self._prev.get(name)
                if p is None or c.read_count < p.read_count or c.write_count < p.write_count:
                    continue  # new disk or counter reset: rebaseline
                reads += c.read_count - p.read_count
                writes += c.write_count - p.write_count
                rbytes += max(0, c.read_bytes - p.read_bytes)
                wbytes += max(0, c.write_bytes - p.write_bytes)
            metrics = {
                "disk.read_iops": reads / dt,
                "disk.write_iops": writes / dt,
                "disk.read_mb_per_s": rbytes / MIB / dt,
                "disk.write_mb_per_s": wbytes / MIB / dt,
            }
        self._prev = cur
        self._prev_now = now
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
    }

    def __init__(self) -> None:
        """Create a probe with no baseline; the first sample returns nothing."""
        self.unavailable: str | None = None
        self._prev_now: float | None = None
        self._prev_wall = 0.0
        self._prev: dict[ProcKey, tuple[int, int, int]] = {}  # key -> (read, write, ppid)
        # Parent key -> [read, write, expiry] still to discount for reaped children.
        self._owed: dict[ProcKey, list[float]] = {}

    def sample(self, now: float, procs: list[psutil.Process]) -> dict[str, float]:
        """Return the tree's I/O rates since the previous call.

        Args:
            now: ``time.monotonic()`` of this sample.
            procs: Target tree; empty means no target, so nothing is returned.

        Returns:
            Metrics named as in :attr:`METRICS`.
        """
        cur: dict[ProcKey, tuple[int, int, int]] = {}
        denied = 0
        for proc in procs:
            try:
                with proc.oneshot():
                    io = proc.io_counters()
                    ppid = proc.ppid()
                cur[(proc.pid, proc.create_time())] = (io.read_bytes, io.write_bytes, ppid)
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
        self, cur: dict[ProcKey, tuple[int, int, int]], dt: float, now: float
    ) -> dict[str, float]:
        by_pid = {key[0]: key for key in cur}
        for key, (rd, wr, ppid) in self._prev.items():
            parent = by_pid.get(ppid)
            if key not in cur and parent is not None:
                debt = self._owed.setdefault(parent, [0.0, 0.0, 0.0])
                debt[0] += rd
                debt[1] += wr
                debt[2] = now + _REAP_DISCOUNT_TTL_S
        read_total = write_total = 0.0
        for key, (rd, wr, _) in cur.items():
            prev = self._prev.get(key)
            if prev is None:
                if key[1] < self._prev_wall - _CREATE_TIME_SLACK_S:
                    continue  # old process seen for the first time: baseline only
                prev = (0, 0, 0)  # born since the last sample: its counters started at 0
            d_read = float(max(0, rd - prev[0]))
            d_write = float(max(0, wr - prev[1]))
            owed = self._owed.get(key)
            if owed is not None:
                take_r, take_w = min(d_read, owed[0]), min(d_write, owed[1])
                d_read -= take_r
                d_write -= take_w
                owed[0] -= take_r
                owed[1] -= take_w
            read_total += d_read
            write_total += d_write
        self._owed = {
            k: v for k, v in self._owed.items() if k in cur and v[2] > now and (v[0] or v[1])
        }
        return {
            "proc.io_read_mb_per_s": read_total / MIB / dt,
            "proc.io_write_mb_per_s": write_total / MIB / dt,
        }
