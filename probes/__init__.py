"""perfsleuth probes: watch a process tree and the host while load runs.

Used by the tracker (run loop, store, reports, TUI). Depends only on the standard
library and psutil, so it stays cheap to import and usable on its own::

    from probes import Sampler, Target

    with Target.launch(["python", "-m", "http.server"]) as target:
        with Sampler(target, 0.25, on_sample=print):
            ...
"""

from __future__ import annotations

from probes.cpu import CpuProbe
from probes.disk import DiskProbe, ProcessIOProbe
from probes.memory import MemoryProbe
from probes.sampler import Probe, ProbeSample, Sampler, default_probes
from probes.target import ProbeError, Target

_PROBE_CLASSES = (CpuProbe, MemoryProbe, DiskProbe, ProcessIOProbe)

UNITS: dict[str, str] = {
    name: unit for cls in _PROBE_CLASSES for name, (unit, _) in cls.METRICS.items()
}
"""Metric name -> unit alone ("%", "1/s", "MiB", "MiB/s", "count")."""

METRICS: dict[str, str] = {
    name: f"{unit}: {description}"
    for cls in _PROBE_CLASSES
    for name, (unit, description) in cls.METRICS.items()
}
"""Metric name -> "<unit>: <one-line description>" for every metric the default probes emit."""

__all__ = [
    "METRICS",
    "UNITS",
    "CpuProbe",
    "DiskProbe",
    "MemoryProbe",
    "Probe",
    "ProbeError",
    "ProbeSample",
    "ProcessIOProbe",
    "Sampler",
    "Target",
    "default_probes",
]
