"""The switchable real faults (CPU hogs, GC churn, fsync'd writes) and GC pause statistics.

``llm_server.py`` creates ``Faults`` and ``GcStats`` and switches on a fault from the command
line; ``api`` switches faults at runtime and reports both in /admin/state.
"""

from __future__ import annotations

import gc
import math
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from typing import Any

from .config import Json
from .engine import Engine

_HOG_CODE = """
import os, sys
parent = int(sys.argv[2])
x = 1
while os.getppid() == parent:  # ends by itself should the server die without reaping it
    for i in range(200000):
        x = (x * 1103515245 + i) & 0xFFFFFFFF
"""


class CpuHogs:
    """Busy child processes (cpu_count * strength) competing with the engine for CPUs."""

    def __init__(self, strength: float) -> None:
        argv = [sys.executable, "-c", _HOG_CODE, "llm_server-cpu-hog", str(os.getpid())]
        # No inherited stdio: a parent reading our output must still see EOF when we exit.
        null = subprocess.DEVNULL
        self.procs = [
            subprocess.Popen(argv, stdin=null, stdout=null, stderr=null)
            for _ in range(max(1, round((os.cpu_count() or 1) * strength)))
        ]

    def stop(self) -> None:
        for p in self.procs:
            p.terminate()
        for p in self.procs:
            try:
                p.wait(timeout=3)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


class GcChurn:
    """A large live heap of containers plus a thread churning reference cycles through it.

    The cycles live just long enough to reach the oldest generation, so the collector keeps
    running full collections over the whole heap; those pauses hold the GIL and stall the
    engine and HTTP threads alike. Strength scales both the heap and the churn rate.
    """

    def __init__(self, strength: float) -> None:
        self._heap_size = int(500_000 * strength)
        self._bursts = max(1, round(10 * strength))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="gc-churn", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        heap: list[list[Any]] = [[i, None] for i in range(self._heap_size)]
        recent: deque[list[Any]] = deque(maxlen=64)
        while not self._stop.is_set():
            for _ in range(self._bursts):
                batch: list[Any] = []
                for i in range(1000):
                    a: list[Any] = [i]
                    a.append([a])
                    batch.append(a)
                recent.append(batch)
            # Without these gaps the churn would mostly just compete for the GIL; the
            # slowdown should come from collector pauses.
            self._stop.wait(0.02)
        heap.clear()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        gc.collect()


class IoWriter:
    """fsync'd writes on every engine step, into a bounded file overwritten in turn.

    Each fsync waits for the device. Strength 1.0 is as many write + fsync pairs per step
    as take ``STEP_WAIT_MS`` (8 ms) on this device at its fastest: timed over a few pairs
    when the fault starts, and re-derived after each step from the fastest pair seen so
    far, so a calibration that fell on a busy disk (write-back of a fresh install) is
    corrected within a step or two. Doubling the strength doubles the pairs. The count only
    grows toward that target: a disk that gets slower mid-run (another process flooding
    it) makes the steps slower, as it would a real server's. A fixed count per step
    instead (48 pairs, ~8 ms at the 0.17 ms an fsync this VM's disk took at first) halved
    the fault when the same disk later answered in 0.087 ms, and the demo found no
    degradation 4 runs in a row.
    """

    CHUNK, FILE_LIMIT = 16 * 1024, 4 * 1024 * 1024
    STEP_WAIT_MS, MAX_WRITES = 8.0, 1024

    def __init__(self, strength: float) -> None:
        self.strength = strength
        self.dir = tempfile.mkdtemp(prefix="llm_server_io_")
        self.path = os.path.join(self.dir, "kv_spill.bin")
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        self._buf = os.urandom(self.CHUNK)
        self._offset = 0
        self.writes: int | None = None  # per step, once calibrated
        self.fsync_ms: float | None = None
        self._fastest_ms = math.inf
        self._lock = threading.Lock()  # the engine may be mid-step when the fault stops

    def _calibrate(self, n: int = 5) -> None:
        # Written out once first, so every later write is an overwrite: extending a file
        # also commits metadata on fsync.
        os.pwrite(self._fd, self._buf * (self.FILE_LIMIT // self.CHUNK), 0)
        os.fsync(self._fd)
        for _ in range(n):
            self._write()
        self._set_count()

    def _set_count(self) -> None:
        # The fastest pair: a profiler pausing the process (py-spy) or a GIL wait only
        # ever adds time.
        self.fsync_ms = round(self._fastest_ms, 3)
        per_unit = self.STEP_WAIT_MS / max(self._fastest_ms, 1e-3)
        self.writes = max(1, min(self.MAX_WRITES, round(self.strength * per_unit)))

    def _write(self) -> None:
        t0 = time.perf_counter()
        os.pwrite(self._fd, self._buf, self._offset)
        os.fsync(self._fd)
        self._fastest_ms = min(self._fastest_ms, (time.perf_counter() - t0) * 1000)
        self._offset = (self._offset + self.CHUNK) % self.FILE_LIMIT

    def step(self) -> None:
        with self._lock:
            if self._fd < 0:
                return
            if self.writes is None:
                self._calibrate()
            for _ in range(self.writes or 0):
                self._write()
            self._set_count()

    def stop(self) -> None:
        with self._lock:
            os.close(self._fd)
            self._fd = -1
        shutil.rmtree(self.dir, ignore_errors=True)


class Faults:
    """One active fault at a time; switching fully cleans up the previous one."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.name, self.strength = "none", 1.0
        self.pending: Json | None = None
        self._active: CpuHogs | GcChurn | IoWriter | None = None
        self._lock = threading.Lock()
        self._timer: threading.Timer | None = None

    def schedule(self, name: str, strength: float, delay: float) -> None:
        if delay <= 0:
            self.set(name, strength)
            return
        self.pending = {"fault": name, "strength": strength, "at": time.time() + delay}
        self._timer = threading.Timer(delay, self.set, (name, strength), {"from_timer": True})
        self._timer.daemon = True
        self._timer.start()

    def set(self, name: str, strength: float = 1.0, *, from_timer: bool = False) -> None:
        with self._lock:
            if from_timer and self.pending is None:
                return  # an explicit choice was made in the meantime and wins
            if self._timer is not None:
                self._timer.cancel()
            self._timer = self.pending = None
            self.engine.step_hook = None
            if self._active is not None:
                self._active.stop()
                self._active = None
            if name == "cpu":
                self._active = CpuHogs(strength)
            elif name == "gc":
                self._active = GcChurn(strength)
            elif name == "io":
                self._active = writer = IoWriter(strength)
                self.engine.step_hook = writer.step
            self.name, self.strength = name, strength

    def state(self) -> Json:
        active = self._active
        return {
            "fault": self.name,
            "fault_strength": self.strength,
            "fault_pending": self.pending,
            "hog_pids": [p.pid for p in active.procs] if isinstance(active, CpuHogs) else [],
            "io_file": active.path if isinstance(active, IoWriter) else None,
            "io_writes_per_step": active.writes if isinstance(active, IoWriter) else None,
        }


class GcStats:
    """Collector pauses measured through gc.callbacks, shown in /admin/state."""

    def __init__(self) -> None:
        self.collections = [0, 0, 0]
        self.pause_ms = self.max_pause_ms = self._t0 = 0.0
        gc.callbacks.append(self._callback)

    def _callback(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._t0 = time.perf_counter()
            return
        ms = (time.perf_counter() - self._t0) * 1000.0
        self.collections[info["generation"]] += 1
        self.pause_ms += ms
        self.max_pause_ms = max(self.max_pause_ms, ms)

    def state(self) -> Json:
        return {
            "collections": list(self.collections),
            "pause_ms_total": round(self.pause_ms, 3),
            "max_pause_ms": round(self.max_pause_ms, 3),
        }
