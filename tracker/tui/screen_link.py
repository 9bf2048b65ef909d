"""Run a load test (or an attach) under the live screen, which draws from a process of its
own (`tracker.tui.screen_process`) while the run goes on in this one as with `--no-tui`.

The run never waits for the screen: `ScreenFeed` queues what the runner reports and a
thread of its own sends it. `q` / Ctrl-C on the screen come back as a stop request the run
honours (`RunControl`), as do SIGINT and SIGTERM sent to perfsleuth.
"""

from __future__ import annotations

import contextlib
import io
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any, TypeVar

from probes.stacks.profile import FunctionTime
from tracker.recording.control import RunControl
from tracker.records import FindingRecord
from tracker.records.window import Window
from tracker.tui.state import LiveState, WindowPoints

T = TypeVar("T")

#: How long the screen may take to show (importing Textual on a cold disk) before the run
#: goes ahead with plain progress lines instead.
START_TIMEOUT_S = 30.0
#: How long the screen may take to leave once the run is stored.
EXIT_TIMEOUT_S = 10.0

_Message = tuple[Any, ...]


class ScreenFeed:
    """The runner's live view (`tracker.recording.progress.ProgressView`) for the screen's process.

    Called on the run's threads, the driver's event loop among them: it only queues. A
    thread of its own works out what the screen keeps of each window (`WindowPoints`: a
    few percentiles) and sends it; once the screen is gone (the user left it early) what
    is queued is dropped.
    """

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self._second = -1
        self._jobs: queue.SimpleQueue[Callable[[], _Message] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._send, name="perfsleuth-screen-feed")
        self._thread.daemon = True
        self._thread.start()

    def window(self, window: Window, probes: dict[str, float]) -> None:
        readings = dict(probes)
        self._jobs.put(lambda: ("window", WindowPoints.of(window), readings))

    def probes(self, t_s: float, probes: dict[str, float]) -> None:
        """An attach's readings: one a second reaches the screen (its refresh rate)."""
        if int(t_s) > self._second:
            self._second = int(t_s)
            readings = dict(probes)
            self._jobs.put(lambda: ("probes", t_s, readings))

    def note(self, message: str) -> None:
        self._jobs.put(lambda: ("note", message))

    def finding(self, finding: FindingRecord) -> None:
        self._jobs.put(lambda: ("finding", finding))

    def stacks(self, end_s: float, duration_s: float, top: list[FunctionTime]) -> None:
        self._jobs.put(lambda: ("stacks", end_s, duration_s, list(top)))

    def close(self) -> None:
        """Send what is queued, then tell the screen the run is stored."""
        self._jobs.put(lambda: ("end",))
        self._jobs.put(None)
        self._thread.join(timeout=EXIT_TIMEOUT_S)

    def _send(self) -> None:
        gone = False
        while (job := self._jobs.get()) is not None:
            if gone:
                continue
            try:
                self._conn.send(job())
            except OSError:
                gone = True
            except Exception:  # noqa: BLE001 - one message the screen cannot take
                continue  # (it could not be encoded) is not worth stopping the others


def _start_screen(
    state: LiveState, refresh_s: float, headless: bool, size: tuple[int, int] | None
) -> tuple[subprocess.Popen[bytes], Connection] | None:
    """The screen's process on this terminal, once it shows; None if it could not start."""
    ours, theirs = socket.socketpair()
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "tracker.tui.screen_process", str(theirs.fileno())],
            pass_fds=(theirs.fileno(),),
        )
    except OSError:
        ours.close()
        return None
    finally:
        theirs.close()
    conn = Connection(ours.detach())
    try:
        conn.send(("init", state, refresh_s, headless, size))
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if conn.poll(0.1):
                if conn.recv()[0] == "ready":
                    return proc, conn
            elif proc.poll() is not None:
                break
    except Exception:  # noqa: BLE001 - whatever kept it from showing, the run goes on without
        pass
    conn.close()
    _reap(proc)
    return None


def _receive(conn: Connection, control: RunControl, final: dict[str, LiveState]) -> None:
    """The screen's requests, until it leaves: `q` stops the run; its state comes last."""
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            return
        if message[0] == "stop":
            control.request_stop()
        elif message[0] == "state":
            final["state"] = message[1]


def _reap(proc: subprocess.Popen[bytes]) -> None:
    try:
        proc.wait(timeout=EXIT_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        proc.terminate()
        try:
            proc.wait(timeout=5.0)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def run_live(
    state: LiveState,
    work: Callable[[ScreenFeed, RunControl], T],
    *,
    headless: bool = False,
    size: tuple[int, int] | None = None,
    plain: Callable[[], T] | None = None,
    refresh_s: float = 1.0,
) -> T:
    """`work(feed, control)` in this thread while the screen's process shows `feed`.

    Returns what `work` returned, or raises what it raised; `state` ends as the screen
    last showed it. Leaving the screen early (a second `q`) lets the run finish storing
    itself. If the screen cannot start, `plain()` (the run without the screen) is used.
    """
    screen = _start_screen(state, refresh_s, headless, size)
    if screen is None:
        if plain is None:
            raise RuntimeError("the live screen could not start")
        print(
            "perfsleuth: the live screen could not start; plain progress instead", file=sys.stderr
        )
        return plain()
    proc, conn = screen
    control = RunControl()
    final: dict[str, LiveState] = {}
    receiver = threading.Thread(
        target=_receive, args=(conn, control, final), name="perfsleuth-screen-keys", daemon=True
    )
    receiver.start()
    feed = ScreenFeed(conn)

    def on_signal(_signum: int, _frame: object) -> None:
        control.request_stop()  # `kill`, CI cancelling a job: stop and store, as Ctrl-C

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    # What the run's own code prints while the screen draws would scribble over it: it is
    # held and written once the screen has left the terminal.
    held = io.StringIO()
    try:
        with contextlib.redirect_stdout(held), contextlib.redirect_stderr(held):
            return work(feed, control)
    finally:
        feed.close()
        _reap(proc)
        receiver.join(timeout=EXIT_TIMEOUT_S)
        conn.close()
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        if "state" in final:
            vars(state).update(vars(final["state"]))
        if held.getvalue():
            sys.stderr.write(held.getvalue())
