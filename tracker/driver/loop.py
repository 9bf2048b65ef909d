"""Which asyncio event loop the driver runs on: uvloop where installed, else asyncio's.

Used by `tracker.recording.runner` and the worker processes. uvloop roughly halves the event
loop's cost per request (benchmarks/RESULTS.md §5); $PERFSLEUTH_EVENT_LOOP=asyncio
forces the standard loop, e.g. to rule uvloop out when a result looks odd.
"""

from __future__ import annotations

import asyncio
import gc
import importlib.util
import os
from collections.abc import Callable, Coroutine, Mapping
from typing import Any, TypeVar

from tracker.errors import UsageError

ENV_VAR = "PERFSLEUTH_EVENT_LOOP"
CHOICES = ("auto", "uvloop", "asyncio")

T = TypeVar("T")


def event_loop_name(environ: Mapping[str, str] | None = None) -> str:
    """The loop a run will use: "uvloop" or "asyncio".

    Raises:
        UsageError: $PERFSLEUTH_EVENT_LOOP names no loop, or asks for uvloop where it
            is not installed.
    """
    env = os.environ if environ is None else environ
    wanted = env.get(ENV_VAR, "auto").strip().lower() or "auto"
    if wanted not in CHOICES:
        raise UsageError(f"${ENV_VAR}={wanted!r} is not one of {', '.join(CHOICES)}")
    installed = importlib.util.find_spec("uvloop") is not None
    if wanted == "uvloop" and not installed:
        raise UsageError(
            f"${ENV_VAR}=uvloop but uvloop is not installed; pip install uvloop, or unset it"
        )
    if wanted == "asyncio" or not installed:
        return "asyncio"
    return "uvloop"


def _factory(name: str) -> Callable[[], asyncio.AbstractEventLoop] | None:
    if name == "uvloop":
        import uvloop

        return uvloop.new_event_loop
    return None


def run(coro: Coroutine[Any, Any, T], name: str) -> T:
    """Run `coro` to completion on a new event loop of kind `name` (see event_loop_name).

    The objects alive when it starts (imports, the store, the scenario) are frozen out of
    the garbage collector's reach until it ends. A full collection holds the GIL while it
    walks every tracked object: when the live screen's widgets shared the process that
    took 70-95 ms (`benchmarks/tui_overhead.py`), and every send due meanwhile went that
    late. Frozen, it walks only what the run itself made. (perfsleuth's own advice to a
    Python server whose GC pauses it finds, taken by its driver.)
    """
    gc.freeze()
    try:
        with asyncio.Runner(loop_factory=_factory(name)) as runner:
            return runner.run(coro)
    finally:
        gc.unfreeze()
