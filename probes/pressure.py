"""Pressure stall information (PSI): how much time the host's tasks lost waiting.

Used by ``probes.sampler`` through ``default_probes()``. Reads /proc/pressure/{cpu,
memory,io} (Linux 4.20+, CONFIG_PSI). Each file's ``total=`` counter is the cumulative
stall time in microseconds, so the share of an interval spent stalled is exact from two
readings; the kernel's own avg10/avg60 are decaying averages that would smear a
one-second fault over the next minute.
"""

from __future__ import annotations

from typing import ClassVar

import psutil

from probes._proc import read_proc_file

_PSI_ROOT = "/proc/pressure"
_RESOURCES = {"cpu": "cpu", "memory": "mem", "io": "disk"}


def read_pressure(resource: str, root: str = _PSI_ROOT) -> dict[str, int]:
    """Cumulative stall microseconds of one resource: {"some": µs, "full": µs}.

    Raises:
        OSError: PSI is not available (older kernel, disabled, or not permitted).
    """
    out: dict[str, int] = {}
    for line in read_proc_file(f"{root}/{resource}", 512).decode("ascii").splitlines():
        kind, _, fields = line.partition(" ")
        for field in fields.split():
            if field.startswith("total="):
                out[kind] = int(field[6:])
    return out


class PressureProbe:
    """Samples ``cpu.psi_*``, ``mem.psi_*`` and ``disk.psi_*`` (host-wide).

    "some" is the share of time at least one task was stalled on the resource; "full"
    the share when all non-idle tasks were (CPU "full" is only meaningful inside
    cgroups and is left out).
    """

    name = "pressure"
    METRICS: ClassVar[dict[str, tuple[str, str]]] = {
        "cpu.psi_some_pct": (
            "%",
            "share of time some runnable task waited for a CPU (host PSI)",
        ),
        "mem.psi_some_pct": ("%", "share of time some task stalled on memory (reclaim, swap-in)"),
        "mem.psi_full_pct": ("%", "share of time every non-idle task stalled on memory"),
        "disk.psi_some_pct": ("%", "share of time some task waited for block I/O (host PSI)"),
        "disk.psi_full_pct": ("%", "share of time every non-idle task waited for block I/O"),
    }

    def __init__(self, root: str = _PSI_ROOT) -> None:
        """Create the probe; `root` is for tests that point it at other files."""
        self.unavailable: str | None = None
        self._root = root
        self._prev_now: float | None = None
        self._prev: dict[str, dict[str, int]] = {}

    def sample(self, now: float, procs: list[psutil.Process]) -> dict[str, float]:
        """Return stall shares since the previous call (nothing on the first call).

        Args:
            now: ``time.monotonic()`` of this sample.
            procs: Ignored: PSI here is host-wide.

        Returns:
            Metrics named as in :attr:`METRICS`.
        """
        try:
            cur = {resource: read_pressure(resource, self._root) for resource in _RESOURCES}
        except OSError as exc:
            self.unavailable = (
                f"pressure stall information unavailable ({self._root}: "
                f"{exc.strerror or exc}): needs Linux 4.20+ with PSI enabled (psi=1)"
            )
            return {}
        metrics: dict[str, float] = {}
        if self._prev_now is not None and now > self._prev_now:
            dt_us = (now - self._prev_now) * 1e6
            for resource, prefix in _RESOURCES.items():
                for kind, total in cur[resource].items():
                    if resource == "cpu" and kind == "full":
                        continue
                    before = self._prev.get(resource, {}).get(kind)
                    if before is None or total < before:
                        continue
                    share = 100.0 * (total - before) / dt_us
                    metrics[f"{prefix}.psi_{kind}_pct"] = min(100.0, share)
        self._prev = cur
        self._prev_now = now
        return metrics
