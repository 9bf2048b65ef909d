"""The async load driver: schedules, request execution, SSE/LLM timing, 1 s windows."""

from tracker.driver.engine import Driver, DriverResult

__all__ = ["Driver", "DriverResult"]
