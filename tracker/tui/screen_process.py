"""The live screen's own process: `python -m tracker.tui.screen_process FD`.

`tracker.tui.screen_link.run_live` starts it on the terminal and feeds it over the socket FD;
the run stays in perfsleuth's process, exactly as with `--no-tui`. Textual's redraw then
never holds the GIL the driver needs (what that buys, measured against the screen drawn
in-process: benchmarks/RESULTS.md §11). The process runs SCREEN_NICE nicer, so that on a shared core
the kernel favours the run whenever it picks; a redraw already running is not preempted
by a send falling due, which waits for it to yield or for the next tick (§11.0).

Messages, parent to screen: ("init", LiveState, refresh_s, headless, size) first, then
("window", WindowPoints, probes), ("probes", t_s, probes), ("note", text), ("finding", record),
("stacks", end_s, duration_s, top), and ("end",) once the run is stored. Screen to parent:
("ready",) once it shows, ("stop",) for `q` / Ctrl-C, and ("state", LiveState) as it leaves.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import time
from multiprocessing.connection import Connection
from typing import Any

#: How much nicer the screen's process is than perfsleuth's. Not 19 or SCHED_IDLE: the
#: screen must stay responsive (keys, a redraw a second) while a contention fault or the
#: target saturates the machine; nice 10 still leaves it ~10% of a busy core.
SCREEN_NICE = 10


#: How long the app may take to leave once perfsleuth said "end" or went away.
_EXIT_GRACE_S = 10.0


def _terminal_gone(_signum: int, _frame: object) -> None:
    os._exit(1)


def _feed(conn: Connection, app: Any) -> None:
    """Post what the parent sends to the app until the run ends or the parent goes."""
    from tracker.tui.live import LiveFeed

    feed = LiveFeed(app)
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            break
        kind, args = message[0], message[1:]
        if kind == "end":
            break
        if kind == "window":
            feed.points(*args)
        elif kind == "probes":
            feed.probes(*args)
        elif kind == "note":
            feed.note(*args)
        elif kind == "finding":
            feed.finding(*args)
        elif kind == "stacks":
            feed.stacks(*args)
    app.exit()  # posts a message: safe from this thread (a no-op once the app left)
    # On a terminal that hung up the app cannot leave (restoring the terminal fails and
    # its input thread spins on EIO): with perfsleuth gone, nothing is left to wait for.
    time.sleep(_EXIT_GRACE_S)
    os._exit(1)


def main(fd: int) -> int:
    # A terminal's Ctrl-C before the screen takes the keyboard, or a SIGINT / SIGTERM sent
    # to the whole group (CI cancelling a job), is perfsleuth's to handle: it stops and
    # stores the run, then tells this process to end, which then leaves the terminal as it
    # found it (killed outright, it would leave it in raw mode on the alternate screen).
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, signal.SIG_IGN)
    # The terminal hung up: nothing to draw on or to restore. Also under nohup, which
    # left SIGHUP ignored; perfsleuth goes on with its plain progress.
    signal.signal(signal.SIGHUP, _terminal_gone)
    with contextlib.suppress(OSError):
        os.nice(SCREEN_NICE)
    conn = Connection(fd)
    try:
        kind, state, refresh_s, headless, size = conn.recv()
    except (EOFError, OSError):
        return 2  # perfsleuth went before it could say what to show
    if kind != "init":
        return 2

    from tracker.tui.live import LiveApp

    lock = threading.Lock()

    def send(*message: object) -> None:
        with lock, contextlib.suppress(OSError):
            conn.send(message)

    def ready() -> None:
        threading.Thread(target=_feed, args=(conn, app), name="screen-feed", daemon=True).start()
        send("ready")

    app = LiveApp(state, on_quit=lambda: send("stop"), on_ready=ready, refresh_s=refresh_s)
    try:
        app.run(headless=headless, size=size)
    except Exception as exc:  # noqa: BLE001 - one line; perfsleuth goes on without the screen
        print(f"perfsleuth: the live screen failed: {exc}", file=sys.__stderr__)
        return 1
    finally:
        send("state", app.state)
    return 0 if app.return_code in (None, 0) else 1


if __name__ == "__main__":
    sys.exit(main(int(sys.argv[1])))
