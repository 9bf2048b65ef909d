"""The async load driver: arrival schedules and load models, request execution on
perfsleuth's transport, SSE/LLM timing, sessions and task APIs, one HDR window a second.

`Driver` (engine) runs a scenario in this process; `WorkerPool` (workers) shares it out
to driver processes; `loop` picks and runs the event loop (uvloop where it exists).
Names are imported from their modules on first use: the driver depends on the scenario
package, never the other way round, and importing a scenario must not load the driver.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tracker._lazy import lazy_exports

if TYPE_CHECKING:
    from tracker.driver.engine import Driver, DriverResult
    from tracker.driver.loop import event_loop_name, run
    from tracker.driver.request import Outcome
    from tracker.driver.workers import WorkerPool

_HOMES = {
    "Driver": "engine",
    "DriverResult": "engine",
    "event_loop_name": "loop",
    "run": "loop",
    "Outcome": "request",
    "WorkerPool": "workers",
}
__all__ = ["Driver", "DriverResult", "Outcome", "WorkerPool", "event_loop_name", "run"]

__getattr__ = lazy_exports(__name__, _HOMES)
