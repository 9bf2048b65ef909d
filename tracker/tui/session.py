"""Run a load test (or an attach) under the live screen: the app in the main thread, the
run in a worker thread, and `q` / Ctrl-C / SIGTERM as a stop request the run honours.

Textual's terminal driver installs its own signal handlers, which Python allows only in
the main thread, so the run moves off it; the runner then takes its stop requests
through `RunControl` instead of signal handlers.
"""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from tracker.runner import RunControl
from tracker.tui.live import LiveApp, LiveFeed
from tracker.tui.state import LiveState

T = TypeVar("T")


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

    def body() -> None:
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
    try:
        app.run(headless=headless, size=size)
    finally:
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
