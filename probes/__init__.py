"""perfsleuth probes: watch a process tree and the host while load runs.

Used by the tracker (run loop, store, reports, TUI). Depends only on the standard
library and psutil, so it stays cheap to import and usable on its own::

    from probes import Sampler, Target

    with Target.launch(["python", "-m", "http.server"]) as target:
        with Sampler(target, 0.25, on_sample=print):
            ...
"""

from __future__ import annotations

import re

from probes.cpu import CpuProbe
from probes.disk import DiskProbe, ProcessIOProbe
from probes.gc.go import GoGcProbe
from probes.gc.jvm import JvmGcProbe
from probes.gc.python import PythonGcProbe
from probes.gpu import GpuProbe
from probes.memory import MemoryProbe
from probes.own import SelfProbe
from probes.pressure import PressureProbe
from probes.sampler import Probe, ProbeSample, Sampler, default_probes
from probes.stacks.gc_estimate import GcEstimateProbe
from probes.stacks.probe import StackProbe
from probes.target import ProbeError, Target

_PROBE_CLASSES = (
    CpuProbe,
    MemoryProbe,
    PressureProbe,
    DiskProbe,
    ProcessIOProbe,
    GpuProbe,
    SelfProbe,
    PythonGcProbe,
    JvmGcProbe,
    GoGcProbe,
    StackProbe,
    GcEstimateProbe,
)

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

# Metric families whose names carry a core, a pid or a disk: "cpu.core<N>_pct".
_PLACEHOLDERS = {"<N>": r"\d+", "<PID>": r"\d+", "<DEV>": r"[a-z][a-z0-9]*"}


def _family_pattern(name: str) -> re.Pattern[str]:
    pattern = re.escape(name)
    for placeholder, regex in _PLACEHOLDERS.items():
        pattern = pattern.replace(placeholder, regex)
    return re.compile(pattern)


_FAMILIES = [(_family_pattern(name), name) for name in UNITS if "<" in name]


def family_of(name: str) -> str | None:
    """The documented name a metric belongs to: itself, or its family ("cpu.core<N>_pct")."""
    if name in UNITS:
        return name
    for pattern, family in _FAMILIES:
        if pattern.fullmatch(name):
            return family
    return None


def unit_of(name: str) -> str:
    """The unit of a metric (families included); "" for a name no probe documents."""
    family = family_of(name)
    return UNITS[family] if family is not None else ""


__all__ = [
    "METRICS",
    "UNITS",
    "CpuProbe",
    "DiskProbe",
    "GcEstimateProbe",
    "GoGcProbe",
    "GpuProbe",
    "JvmGcProbe",
    "MemoryProbe",
    "PressureProbe",
    "Probe",
    "ProbeError",
    "ProbeSample",
    "ProcessIOProbe",
    "PythonGcProbe",
    "Sampler",
    "SelfProbe",
    "StackProbe",
    "Target",
    "default_probes",
    "family_of",
    "unit_of",
]
