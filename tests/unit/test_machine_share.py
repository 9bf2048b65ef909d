"""The readers-writer lock the suite's parallel workers share the machine with."""

from __future__ import annotations

import fcntl
import threading
import time
from pathlib import Path

from support.machine_share import machine_held


def _hold(
    directory: Path, alone: bool, events: list[str], name: str, release: threading.Event
) -> None:
    with machine_held(directory, alone=alone):
        events.append(f"{name} in")
        release.wait(10)
        events.append(f"{name} out")


def _start(*args: object) -> threading.Thread:
    thread = threading.Thread(target=_hold, args=args)
    thread.start()
    return thread


def _wait_for(events: list[str], event: str) -> None:
    deadline = time.monotonic() + 10
    while event not in events:
        assert time.monotonic() < deadline, f"never saw {event!r}: {events}"
        time.sleep(0.01)


def _wait_until_turnstile_held(directory: Path) -> None:
    deadline = time.monotonic() + 10
    while True:
        with open(directory / "turnstile", "a") as turnstile:
            try:
                fcntl.flock(turnstile, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return
            fcntl.flock(turnstile, fcntl.LOCK_UN)
        assert time.monotonic() < deadline, "the alone taker never took the turnstile"
        time.sleep(0.01)


def test_shared_holders_overlap(tmp_path: Path) -> None:
    events: list[str] = []
    release_a, go = threading.Event(), threading.Event()
    go.set()
    first = _start(tmp_path, False, events, "a", release_a)
    _wait_for(events, "a in")
    second = _start(tmp_path, False, events, "b", go)
    second.join(10)
    release_a.set()
    first.join(10)
    assert events == ["a in", "b in", "b out", "a out"]


def test_alone_waits_for_shared_and_later_shared_wait_for_alone(tmp_path: Path) -> None:
    events: list[str] = []
    release_shared, go = threading.Event(), threading.Event()
    go.set()
    shared = _start(tmp_path, False, events, "shared", release_shared)
    _wait_for(events, "shared in")
    alone = _start(tmp_path, True, events, "alone", go)
    _wait_until_turnstile_held(tmp_path)  # by the alone taker, waiting for the lock
    late = _start(tmp_path, False, events, "late", go)
    time.sleep(0.2)  # nothing may move while the shared holder stays in
    assert events == ["shared in"]
    release_shared.set()
    for thread in (shared, alone, late):
        thread.join(10)
    # Alone runs only once the shared holder is out, and the late shared taker, which
    # came while alone waited, runs only after it (no starving the alone test).
    assert events == ["shared in", "shared out", "alone in", "alone out", "late in", "late out"]
