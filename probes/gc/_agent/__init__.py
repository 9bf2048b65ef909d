"""The in-process Python GC agent (``sitecustomize`` + ``perfsleuth_gc_agent``).

Not imported as a package by the servers it runs in: ``probes.gc.python`` puts this
directory on their PYTHONPATH, where both modules are top-level. ``probes.gc.python``
imports ``probes.gc._agent.perfsleuth_gc_agent`` for the wire format.
"""

from pathlib import Path

AGENT_DIR = str(Path(__file__).resolve().parent)
"""The directory to put first on a launched server's PYTHONPATH."""
