"""The async load driver: schedules, request execution, SSE/LLM timing, 1 s windows.

Import the parts from their modules (`tracker.driver.engine.Driver`, ...); this package
re-exports nothing so that `tracker.scenario` can use `tracker.driver.template` without
an import cycle.
"""
