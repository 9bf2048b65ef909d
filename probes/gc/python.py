"""Exact GC pauses of a launched Python target, streamed by perfsleuth's in-process agent.

Used by the tracker's run loop when it launches the target: it creates a
:class:`PythonGcProbe`, adds :meth:`PythonGcProbe.launch_env` to the command's
environment, hands the probe to ``probes.Sampler`` and closes it after the run.

The agent (``probes/gc/_agent``, loaded by ``sitecustomize`` in every Python process of
the tree, forked workers included) times each collection with ``gc.callbacks`` and sends
it over a Unix datagram socket this probe binds. A reader thread drains the socket at
once, because the kernel queues only ``net.unix.max_dgram_qlen`` (default 10) datagrams
per socket and the agent drops (and counts) what does not fit rather than wait.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import tempfile
import threading
from collections.abc import Mapping
from types import TracebackType
from typing import ClassVar, NamedTuple

import psutil

from probes.gc._agent import AGENT_DIR
from probes.gc._agent import perfsleuth_gc_agent as wire
from probes.gc.common import GC_METRICS

# Whole datagrams kept between two samples; beyond it (a sampler that stopped calling)
# datagrams are counted as dropped instead of growing memory without bound.
_INBOX_LIMIT = 100_000
# A pid that left the tree is forgotten once it has been silent this long.
_FORGET_PID_S = 10.0
_RCVBUF_BYTES = 1 << 20
_MAX_DATAGRAM = wire.HEADER.size + wire.MAX_RECORDS * wire.RECORD.size
_GENERATIONS = 3


class Collection(NamedTuple):
    """One collection as the agent measured it."""

    pid: int
    end: float
    """``time.monotonic()`` when it ended (the host-wide clock the sampler uses too)."""
    pause_s: float
    collected: int
    uncollectable: int
    generation: int


class PythonGcProbe:
    """Samples ``gc.*`` metrics from the agent inside a launched Python target.

    Create it before launching (it binds its socket at once), launch with
    :meth:`launch_env` added to the environment, and :meth:`close` it afterwards.

    A collection counts in the interval in which it ended. Pauses of 5 ms or more are
    sent the moment they end; shorter ones travel in batches that leave with the first
    collection ending 50 ms after the oldest of them, so they usually arrive up to ~50 ms
    late and then count in the next interval (never twice). A process that stops
    collecting keeps its last batch until it collects again or exits normally;
    ``os._exit`` loses it.
    Collections that ended before the first sample are not reported.
    """

    name = "gc_python"
    METRICS: ClassVar[dict[str, tuple[str, str]]] = {
        # Shared with the JVM and Go probes: one name, one description.
        "gc.pause_ms_per_s": GC_METRICS["gc.pause_ms_per_s"],
        "gc.pause_max_ms": GC_METRICS["gc.pause_max_ms"],
        "gc.collections_per_s": GC_METRICS["gc.collections_per_s"],
        "gc.gen0_pause_ms_per_s": ("ms/s", "time in generation-0 (youngest) collections"),
        "gc.gen1_pause_ms_per_s": ("ms/s", "time in generation-1 collections"),
        "gc.gen2_pause_ms_per_s": ("ms/s", "time in generation-2 (full) collections"),
        "gc.gen2_collections_per_s": ("1/s", "generation-2 (full) collections"),
        "gc.collected_per_s": ("1/s", "unreachable objects the collector found and freed"),
        "gc.uncollectable_per_s": (
            "1/s",
            "unreachable objects the collector could not free (left in gc.garbage)",
        ),
        "gc.processes": ("count", "target processes whose GC agent is reporting"),
        "gc.dropped_per_s": (
            "1/s",
            "collections measured but lost on the way (probe's queue full): pause "
            "metrics miss them",
        ),
    }

    def __init__(self, *, agent_timeout_s: float = 10.0) -> None:
        """Bind the socket the agent reports to and start reading it.

        Args:
            agent_timeout_s: Once the target runs, how long to wait for a first
                report before declaring the probe unavailable (the target is not
                CPython 3.8+, or it dropped the environment :meth:`launch_env` set).

        A socket that cannot be created (a TMPDIR too long for a Unix socket path, or
        not writable) leaves the probe :attr:`unavailable`, saying why, and
        :meth:`launch_env` empty.
        """
        self.unavailable: str | None = None
        self.agent_timeout_s = agent_timeout_s
        self._closing = threading.Event()
        self._lock = threading.Lock()
        self._inbox: list[bytes] = []
        self._inbox_overflow = 0

        self._prev_now: float | None = None
        self._origin = 0.0
        self._held: list[Collection] = []
        self._heard: dict[int, float] = {}  # pid -> when its last datagram was read
        self._dropped_by_pid: dict[int, int] = {}
        self._waiting_since: float | None = None
        self._ever_heard = False  # once an agent spoke, silence means no Python is left

        self._dir = ""
        self.socket_path = ""
        self._sock: socket.socket | None = None
        try:
            self._dir = tempfile.mkdtemp(prefix="perfsleuth-gc-")
            self.socket_path = os.path.join(self._dir, "gc.sock")
            self._sock = _bound_socket(self.socket_path)
        except OSError as exc:
            if self._dir:
                shutil.rmtree(self._dir, ignore_errors=True)
            self.unavailable = (
                f"cannot create the GC agent's socket {self.socket_path or tempfile.gettempdir()}"
                f": {exc.strerror or exc}: gc.* metrics omitted (set TMPDIR to a short, "
                "writable directory: Unix socket paths are limited to 107 bytes)"
            )
            return
        self._reader = threading.Thread(
            target=self._read, args=(self._sock,), name="perfsleuth-gc-reader", daemon=True
        )
        self._reader.start()

    def launch_env(self, base: Mapping[str, str] | None = None) -> dict[str, str]:
        """Variables to add to a launched target's environment to load the agent.

        Args:
            base: The environment the target would otherwise get (default
                ``os.environ``); its PYTHONPATH is kept, after the agent's directory.

        Returns:
            ``PYTHONPATH`` and ``PERFSLEUTH_GC_SOCKET``; nothing when the probe has no
            socket (see :attr:`unavailable`): the target then runs without the agent.
        """
        if self._sock is None:
            return {}
        env = os.environ if base is None else base
        existing = env.get("PYTHONPATH")
        path = AGENT_DIR + os.pathsep + existing if existing else AGENT_DIR
        return {"PYTHONPATH": path, wire.ENV_SOCKET: self.socket_path}

    def sample(self, now: float, procs: list[psutil.Process]) -> dict[str, float]:
        """Return the collections that ended since the previous call, as rates.

        Args:
            now: ``time.monotonic()`` of this sample.
            procs: Target tree; empty means no target, so nothing is reported.

        Returns:
            Metrics named as in :attr:`METRICS`; ``gc.processes`` alone on the first
            call and until an agent has reported.
        """
        if self.unavailable is not None:
            return {}
        collections, dropped = self._take(now)
        if not procs:
            self._prev_now = None
            self._held.clear()
            return {}
        live = {p.pid for p in procs}
        self._forget_silent(now, live)
        metrics = {"gc.processes": float(len(live & self._heard.keys()))}
        if not self._ever_heard:
            self._prev_now = None
            self._held.clear()
            if self._waiting_since is None:
                self._waiting_since = now
            elif now - self._waiting_since >= self.agent_timeout_s:
                self._give_up()
                return {}
            return metrics
        arrived = self._held + collections
        self._held = [c for c in arrived if c.end > now]
        prev, self._prev_now = self._prev_now, now
        if prev is None:
            self._origin = now  # the series starts here: earlier collections are in no interval
            return metrics
        if now <= prev:
            return metrics
        # A late short pause (batched by the agent) counts in the interval it arrives in.
        due = [c for c in arrived if self._origin < c.end <= now]
        metrics.update(_rates(due, dropped, now - prev))
        return metrics

    def close(self) -> None:
        """Stop reading and remove the socket; idempotent. Agents then stop measuring."""
        if self._closing.is_set():
            return
        self._closing.set()
        if self._sock is None:
            return  # never bound: nothing to release
        with contextlib.suppress(OSError), socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
            s.setblocking(False)
            s.sendto(b"", self.socket_path)  # wakes the reader now rather than at its timeout
        self._reader.join(timeout=2.0)
        self._sock.close()
        shutil.rmtree(self._dir, ignore_errors=True)

    def __enter__(self) -> PythonGcProbe:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _read(self, sock: socket.socket) -> None:
        sock.settimeout(1.0)
        while not self._closing.is_set():
            try:
                data = sock.recv(_MAX_DATAGRAM)
            except TimeoutError:
                continue
            except OSError:
                return  # closed under us
            if not data:
                continue
            with self._lock:
                if len(self._inbox) < _INBOX_LIMIT:
                    self._inbox.append(data)
                else:
                    self._inbox_overflow += _record_count(data)

    def _take(self, now: float) -> tuple[list[Collection], int]:
        """Parse what the reader gathered; return collections and newly dropped ones."""
        with self._lock:
            inbox, self._inbox = self._inbox, []
            dropped, self._inbox_overflow = self._inbox_overflow, 0
        collections: list[Collection] = []
        for data in inbox:
            if len(data) < wire.HEADER.size:
                continue
            magic, version, pid, pid_dropped = wire.HEADER.unpack_from(data)
            if magic != wire.MAGIC or version != wire.VERSION:
                continue
            self._heard[pid] = now
            self._ever_heard = True
            # Datagrams may arrive out of order, so the count can step back: keep the max.
            seen = self._dropped_by_pid.get(pid, 0)
            if pid_dropped > seen:
                dropped += pid_dropped - seen
                self._dropped_by_pid[pid] = pid_dropped
            body = memoryview(data)[wire.HEADER.size :]
            body = body[: len(body) - len(body) % wire.RECORD.size]
            for end, pause, collected, uncollectable, generation in wire.RECORD.iter_unpack(body):
                collections.append(
                    Collection(pid, end, pause, collected, uncollectable, generation)
                )
        return collections, dropped

    def _forget_silent(self, now: float, live: set[int]) -> None:
        for pid, heard in list(self._heard.items()):
            if pid not in live and now - heard > _FORGET_PID_S:
                del self._heard[pid]
                self._dropped_by_pid.pop(pid, None)

    def _give_up(self) -> None:
        self.unavailable = (
            f"no Python GC agent reported within {self.agent_timeout_s:g} s: the target is "
            "not CPython 3.8+, or it drops PYTHONPATH/PERFSLEUTH_GC_SOCKET (python -E/-I, "
            "its own PYTHONPATH)"
        )
        self.close()


def _bound_socket(path: str) -> socket.socket:
    """A Unix datagram socket bound to ``path``.

    Raises:
        OSError: It could not be created or bound (e.g. the path is too long).
    """
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        sock.bind(path)
        # Bytes are not the limit (max_dgram_qlen is), but a burst of full batches is.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, _RCVBUF_BYTES)
    except OSError:
        sock.close()
        raise
    return sock


def _record_count(data: bytes) -> int:
    return max(0, (len(data) - wire.HEADER.size) // wire.RECORD.size)


def _rates(due: list[Collection], dropped: int, dt: float) -> dict[str, float]:
    pause_s = [0.0] * _GENERATIONS
    count = [0] * _GENERATIONS
    longest = collected = uncollectable = 0.0
    for c in due:
        gen = min(max(c.generation, 0), _GENERATIONS - 1)
        pause_s[gen] += c.pause_s
        count[gen] += 1
        longest = max(longest, c.pause_s)
        collected += c.collected
        uncollectable += c.uncollectable
    return {
        "gc.pause_ms_per_s": 1000.0 * sum(pause_s) / dt,
        "gc.pause_max_ms": 1000.0 * longest,
        "gc.collections_per_s": sum(count) / dt,
        "gc.gen0_pause_ms_per_s": 1000.0 * pause_s[0] / dt,
        "gc.gen1_pause_ms_per_s": 1000.0 * pause_s[1] / dt,
        "gc.gen2_pause_ms_per_s": 1000.0 * pause_s[2] / dt,
        "gc.gen2_collections_per_s": count[2] / dt,
        "gc.collected_per_s": collected / dt,
        "gc.uncollectable_per_s": uncollectable / dt,
        "gc.dropped_per_s": dropped / dt,
    }
