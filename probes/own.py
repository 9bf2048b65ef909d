"""Self probe: the CPU and memory of the process running the probes, and its children.

Used by ``probes.sampler`` through ``default_probes()``. In perfsleuth that process is the
load driver (with its worker processes and any py-spy it started), so a driver that
runs out of CPU shows next to the server's numbers instead of being blamed on the
server. A launched target is a child too; it is left out (its processes are the
``procs`` every probe is given).
"""

from __future__ import annotations

import os
import time
from typing import ClassVar

import psutil

MIB = 1024 * 1024

ProcKey = tuple[int, float]

_TREE_MAX_AGE_S = 2.0


class SelfProbe:
    """Samples ``driver.*``: this process tree minus the target's processes."""

    name = "self"
    METRICS: ClassVar[dict[str, tuple[str, str]]] = {
        "driver.cpu_pct": (
            "%",
            "CPU used by perfsleuth itself (driver, its workers, probes); 100 = one core",
        ),
        "driver.rss_mb": ("MiB", "resident memory of perfsleuth itself and its workers"),
    }

    def __init__(self, pid: int | None = None) -> None:
        """Create the probe; `pid` is the process to watch (default: this one)."""
        self.unavailable: str | None = None
        self._root = psutil.Process(pid if pid is not None else os.getpid())
        self._prev_now: float | None = None
        self._prev_wall = 0.0
        self._prev_cpu: dict[ProcKey, float] = {}
        self._tree: list[psutil.Process] = []
        self._tree_at = -float("inf")

    def sample(self, now: float, procs: list[psutil.Process]) -> dict[str, float]:
        """Return this tree's RSS, and its CPU since the previous call.

        Args:
            now: ``time.monotonic()`` of this sample.
            procs: The target's processes, left out of the count.

        Returns:
            Metrics named as in :attr:`METRICS`.
        """
        target = {p.pid for p in procs}
        if now - self._tree_at >= _TREE_MAX_AGE_S:
            # Listing descendants reads every process on the host; perfsleuth's own
            # children (workers, py-spy) are long-lived, so the list is refreshed rarely.
            try:
                self._tree = [self._root, *self._root.children(recursive=True)]
            except psutil.Error as exc:
                self.unavailable = f"cannot read perfsleuth's own process: {exc}"
                return {}
            self._tree_at = now
        tree = self._tree
        cur: dict[ProcKey, float] = {}
        rss = 0
        for proc in tree:
            if proc.pid in target:
                continue
            try:
                with proc.oneshot():
                    times = proc.cpu_times()
                    rss += proc.memory_info().rss
                    cur[(proc.pid, proc.create_time())] = times.user + times.system
            except psutil.Error:
                continue
        metrics = {"driver.rss_mb": rss / MIB}
        if self._prev_now is not None and now > self._prev_now:
            used = 0.0
            for key, cpu in cur.items():
                prev = self._prev_cpu.get(key)
                if prev is None and key[1] < self._prev_wall - 2.0:
                    continue  # seen for the first time but old: baseline only
                used += max(0.0, cpu - (prev or 0.0))
            metrics["driver.cpu_pct"] = 100.0 * used / (now - self._prev_now)
        self._prev_cpu = cur
        self._prev_now = now
        self._prev_wall = time.time()
        return metrics
