"""perfsleuth's in-process GC agent: times every collection and streams it to the probe.

Runs inside a Python server that perfsleuth launched: ``sitecustomize`` in this directory
imports it as a top-level module and calls :func:`install`. ``probes.gc.python`` imports
it too, for the wire format only; importing it has no side effects.

It must stay cheap and invisible in the user's server, hence CPython 3.8+ syntax, the
standard library only, no thread, and the C module ``_socket`` rather than ``socket``
(which costs up to ~30 ms to import cold, in every Python process of the tree).

Wire format (one Unix datagram): :data:`HEADER` (magic, version, pid, collections
dropped so far by this process) then zero or more :data:`RECORD`\\ s. A datagram without
records is the "hello" a process sends when the agent starts in it.
"""

from __future__ import annotations

import _socket
import atexit
import gc
import os
import struct
import time

ENV_SOCKET = "PERFSLEUTH_GC_SOCKET"
"""Environment variable naming the probe's socket; without it the agent stays off."""

MAGIC = b"PSGC"
VERSION = 1
HEADER = struct.Struct("<4sB3xIQ")
"""magic, version, pid, collections this process could not deliver so far (cumulative)."""
RECORD = struct.Struct("<ddQQB")
"""end (time.monotonic() s), pause (s), collected, uncollectable, generation."""

MAX_RECORDS = 400
"""Records per datagram (13 KB), far below the socket's send buffer."""
FLUSH_INTERVAL_S = 0.05
"""How long short pauses are gathered before the collection that ends next sends them."""
IMMEDIATE_PAUSE_S = 0.005
"""Pauses this long are sent at once: they matter, and one send is cheap beside them.

A send costs 10-60 µs (measured on a 2-vCPU VM: the syscall after a collection has
chilled the caches, and waking the probe's reader), so this keeps it under ~1% of the
pause; shorter pauses share one send per batch."""

_agent: _Agent | None = None
_hooks_registered = False


class _Agent:
    """Per-process recorder; a forked child replaces its copy with a fresh one.

    No thread and no lock: CPython runs one collection at a time and its "collecting"
    flag, set around the callbacks, keeps another from starting meanwhile, so this
    callback does not run twice at once, even with many threads. Short pauses wait in
    ``pending`` and leave with the next collection that ends FLUSH_INTERVAL_S after the
    oldest of them, or with the next long pause, or at exit.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self.pid = os.getpid()
        self.sock = _new_socket()
        self.pending: list[bytes] = []
        self.oldest = 0.0
        self.dropped = 0
        self.started = 0.0
        self.running = True

    def callback(self, phase: str, info: dict[str, int]) -> None:
        """gc.callbacks hook: "start" and "stop" bracket each collection."""
        if not self.running:
            return
        if phase == "start":
            self.started = time.perf_counter()
            return
        pause = time.perf_counter() - self.started
        try:
            end = time.monotonic()
            pending = self.pending
            pending.append(
                RECORD.pack(
                    end, pause, info["collected"], info["uncollectable"], info["generation"]
                )
            )
            if len(pending) == 1:
                self.oldest = end
            if (
                pause >= IMMEDIATE_PAUSE_S
                or end - self.oldest >= FLUSH_INTERVAL_S
                or len(pending) >= MAX_RECORDS
            ):
                self.flush()
        except Exception:  # noqa: BLE001  (an error in a gc callback would spam the server's stderr)
            self.stop()

    def flush(self) -> None:
        """Send the pending records in one datagram (the callback; exit)."""
        # Swap first: were a collection to run inside this method (at exit), its record
        # would land in one list or the other, never be lost nor sent twice.
        batch, self.pending = self.pending, []
        if batch:
            self.send(batch)

    def send(self, records: list[bytes]) -> None:
        """Send one datagram; never blocks: a full or absent probe costs the records."""
        payload = HEADER.pack(MAGIC, VERSION, self.pid, self.dropped) + b"".join(records)
        try:
            self.sock.sendto(payload, self.path)
        except (FileNotFoundError, ConnectionRefusedError):
            self.stop()  # the probe closed its socket for good: stop measuring
        except OSError:  # EAGAIN: the probe's queue is full
            self.dropped += len(records)

    def stop(self) -> None:
        """Stop recording in this process; the server runs on unaffected.

        The callback stays in gc.callbacks as a no-op: CPython walks that list by index
        while calling it, so removing an entry mid-collection would make the server's
        own next callback miss a phase.
        """
        self.running = False
        self.pending = []


def _new_socket() -> _socket.socket:
    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_DGRAM)
    sock.setblocking(False)
    return sock


def install(path: str) -> None:
    """Record every collection of this process (and of its forked children) to ``path``.

    Idempotent. A forked child gets its own socket, pid and queue, so it reports as
    itself and never re-sends records its parent had queued.

    Args:
        path: The probe's Unix datagram socket.
    """
    global _agent, _hooks_registered
    if _agent is not None:
        return
    _agent = _Agent(path)
    gc.callbacks.insert(0, _agent.callback)  # first: its timing then wraps the others'
    if not _hooks_registered:  # a forked child inherits these registrations
        _hooks_registered = True
        atexit.register(_flush_at_exit)
        os.register_at_fork(after_in_child=_after_fork_in_child)
    _agent.send([])  # hello: this process is instrumented, even if it never collects


def _flush_at_exit() -> None:
    agent = _agent
    if agent is not None and agent.running:
        agent.flush()


def _after_fork_in_child() -> None:
    global _agent
    parent = _agent
    if parent is None or not parent.running:
        return
    parent.running = False
    parent.sock.close()
    _agent = _Agent(parent.path)
    # Same place in the list as the parent's, so the order the server chose for its own
    # callbacks around ours still holds.
    callbacks = gc.callbacks
    if parent.callback in callbacks:
        callbacks[callbacks.index(parent.callback)] = _agent.callback
    else:
        callbacks.insert(0, _agent.callback)
    _agent.send([])
