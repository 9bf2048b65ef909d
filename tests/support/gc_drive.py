"""Bounded loopback load for the GC test servers (tests/support/gc_servers), and a poll."""

from __future__ import annotations

import http.client
import time
from collections.abc import Callable


def wait_until(predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


def drive(port: int, seconds: float, on_tick: Callable[[], None], tick_s: float = 0.25) -> int:
    """GET / on one keep-alive connection for ``seconds``; call ``on_tick`` every ``tick_s``."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    sent = 0
    start = time.monotonic()
    next_tick = start + tick_s
    try:
        while time.monotonic() - start < seconds:
            conn.request("GET", "/")
            response = conn.getresponse()
            assert response.status == 200
            assert response.read().startswith(b"ok ")
            sent += 1
            if time.monotonic() >= next_tick:
                on_tick()
                next_tick += tick_s
    finally:
        conn.close()
    return sent
