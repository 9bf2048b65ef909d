"""Memory probe: resident memory of the target tree and host memory pressure.

Used by ``probes.sampler`` through ``default_probes()``.
"""

from __future__ import annotations

from typing import ClassVar

import psutil

MIB = 1024 * 1024


class MemoryProbe:
    """Samples ``mem.*`` gauges (no state between calls)."""

    name = "memory"
    METRICS: ClassVar[dict[str, tuple[str, str]]] = {
        "mem.rss_mb": (
            "MiB",
            "resident memory of the target tree (shared pages counted once per process)",
        ),
        "mem.host_used_pct": ("%", "host memory in use (total - available), 0-100"),
    }

    def __init__(self) -> None:
        """Create the probe."""
        self.unavailable: str | None = None

    def sample(self, now: float, procs: list[psutil.Process]) -> dict[str, float]:
        """Return current memory gauges.

        Args:
            now: ``time.monotonic()`` of this sample (unused: gauges only).
            procs: Target tree; empty means no target, so ``mem.rss_mb`` is omitted.

        Returns:
            Metrics named as in :attr:`METRICS`.
        """
        metrics = {"mem.host_used_pct": psutil.virtual_memory().percent}
        if procs:
            rss = 0
            for proc in procs:
                try:
                    rss += proc.memory_info().rss
                except psutil.Error:
                    continue  # exited between listing and reading
            metrics["mem.rss_mb"] = rss / MIB
        return metrics
