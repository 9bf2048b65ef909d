"""The run lifecycle: one stored run from its row to its finish.

- `recording`: `Recording`, the lifecycle `run` and `attach` share (run row, store writer,
  probe sampling, status when the target dies, the run document, the finished row).
- `runner`: `execute_run`, a scenario's load driven under a recording (`run`, `demo`).
- `attach`: `execute_attach`, probes only (`attach`).
- `control`, `live_watch`, `progress`: stopping from another thread, the live detector,
  plain progress lines; `slo`: judging the run document against `[slo]` thresholds;
  `environment`: the machine fingerprint stored with each run.

It does not resolve baselines or compare runs (`tracker.regressions`), nor parse flags
(`tracker.cli`). Names are imported on first use: the modules pull in the driver and
the probes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tracker._lazy import lazy_exports

if TYPE_CHECKING:
    from tracker.recording.attach import execute_attach
    from tracker.recording.control import RunControl
    from tracker.recording.progress import ProgressView, StacksView
    from tracker.recording.recording import Recording, RunIdentity, RunResult
    from tracker.recording.runner import TimedAction, execute_run

_HOMES = {
    "execute_attach": "attach",
    "RunControl": "control",
    "ProgressView": "progress",
    "StacksView": "progress",
    "Recording": "recording",
    "RunIdentity": "recording",
    "RunResult": "recording",
    "TimedAction": "runner",
    "execute_run": "runner",
}
__all__ = [
    "ProgressView",
    "Recording",
    "RunControl",
    "RunIdentity",
    "RunResult",
    "StacksView",
    "TimedAction",
    "execute_attach",
    "execute_run",
]

__getattr__ = lazy_exports(__name__, _HOMES)
