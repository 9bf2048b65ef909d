"""Run a load test (or an attach) under the live screen: the app in the main thread, the
run in a worker thread, and `q` / Ctrl-C / SIGTERM as a stop request the run honours.

Textual's terminal driver installs its own signal handlers, which Python allows only in
the main thread, so the run moves off it; the runner then takes its stop requests
through `RunControl` instead of signal handlers.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from tracker.runner import RunControl
from tracker.tui.live import LiveApp, LiveFeed
from tracker.tui.state import LiveState

T = TypeVar("T")

#: The GIL switch interval while the screen runs (Python's default is 5 ms).
SWITCH_INTERVAL_S = 0.0001
#: How much nicer (lower priority) the screen's thread is than the run's: on a shared
#: core the kernel then runs a driver thread that wakes for a send before the redraw
#: (nice 10 still leaves the screen ~10% of a busy core, plenty for a 1 s refresh). Not
#: 19: a redraw preempted while it holds the GIL keeps the driver waiting for it, and
#: lag p99 measured 1.34x of --no-tui at 19 against 1.12x at 10 (RESULTS.md §11).
SCREEN_NICE = 10


def _lower_priority(tid: int) -> int | None:
    """Make thread `tid` SCREEN_NICE nicer; its nice value before, or None if refused."""
    try:
        before = os.getpriority(os.PRIO_PROCESS, tid)
        os.setpriority(os.PRIO_PROCESS, tid, min(before + SCREEN_NICE, 19))
    except OSError:
        return None
    return before


def _restore_priority(tid: int, before: int | None) -> None:
    if before is None:
        return
    # Raising a priority back needs CAP_SYS_NICE (or RLIMIT_NICE): without it the rest of
    # the command (printing the summary) just runs nicer.
    with contextlib.suppress(OSError):
        os.setpriority(os.PRIO_PROCESS, tid, before)


def run_live(
    state: LiveState,
    work: Callable[[LiveFeed, RunControl], T],
    *,
    headless: bool = False,
    size: tuple[int, int] | None = None,
    plain: Callable[[], T] | None = None,
    refresh_s: float = 1.0,
) -> T:
    """`work(feed, control)` in a worker thread while the live screen shows `feed`.

    Returns what `work` returned, or raises what it raised. Leaving the screen early
    (a second `q`) still lets the run finish storing itself before this returns. If the
    screen fails before the run starts, `plain()` (the run without the screen) is used.
    """
    control = RunControl()
    outcome: dict[str, Any] = {}

    screen_tid = threading.get_native_id()
    priority: dict[str, int | None] = {}

    def body() -> None:
        # Lowered from here, not before the screen starts this thread: a thread inherits
        # its creator's nice value, and an unprivileged one cannot raise it back.
        priority["before"] = _lower_priority(screen_tid)
        try:
            outcome["result"] = work(LiveFeed(app), control)
        except BaseException as exc:  # noqa: BLE001  (re-raised in the main thread)
            outcome["error"] = exc
        finally:
            app.exit()  # posts a message: safe from this thread

    worker = threading.Thread(target=body, name="perfsleuth-run", daemon=True)
    # The worker starts once the app is mounted: posting to it is safe from then on.
    app = LiveApp(state, on_quit=control.request_stop, on_ready=worker.start, refresh_s=refresh_s)

    def on_signal(_signum: int, _frame: object) -> None:
        control.request_stop()  # `kill`, CI cancelling a job: stop and store, as Ctrl-C

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    # The screen's redraw is pure Python on this thread, ~20 ms each second. A driver
    # timer that fires meanwhile waits for the GIL until the interpreter's switch interval
    # forces a hand-over: up to 5 ms by default, up to 0.1 ms with this.
    switch = sys.getswitchinterval()
    sys.setswitchinterval(SWITCH_INTERVAL_S)
    try:
        app.run(headless=headless, size=size)
    finally:
        sys.setswitchinterval(switch)
        _restore_priority(screen_tid, priority.get("before"))
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        if worker.is_alive():
            control.request_stop()  # left the screen early: the run still ends, stored
            worker.join()
    if worker.ident is None and plain is not None:
        # The screen failed before it could start the run (a terminal Textual cannot
        # drive): the run still happens, with plain progress lines.
        print(
            "perfsleuth: the live screen could not start; plain progress instead", file=sys.stderr
        )
        return plain()
    if "error" in outcome:
        raise outcome["error"]
    if "result" not in outcome:
        raise RuntimeError("the live screen ended before the run started")
    return outcome["result"]  # type: ignore[no-any-return]
