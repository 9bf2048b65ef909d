"""Several driver processes sharing one schedule (`--workers N`), merged exactly.

Used by `tracker.recording.runner` when a scenario asks for more than one worker. Each worker is
a spawned process with its own event loop and HTTP client running `Driver` on its share
of the schedule (every n-th arrival, every n-th user, a disjoint shard of `unique`
datasets). Workers send their 1 s windows (histograms HdrHistogram-encoded) to the
parent, which merges window *i* once every worker has sent it — histograms add exactly,
so percentiles are those of one big driver. Workers ignore SIGINT (a terminal sends it
to the whole process group); the parent tells them to stop.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import queue as queue_mod
import signal
import threading
import time
from collections.abc import Callable
from multiprocessing.synchronize import Event as MpEvent
from typing import Any

from tracker.driver.engine import Driver, DriverResult
from tracker.driver.loop import run as run_loop
from tracker.errors import RunFailedError
from tracker.records.window import Window
from tracker.scenario import Scenario

_READY_TIMEOUT_S = 60.0
_STOP_POLL_S = 0.05


def _worker_main(
    scenario: Scenario,
    worker: int,
    workers: int,
    out: Any,
    go: MpEvent,
    stop: MpEvent,
    start_at: Any,
    loop_name: str,
) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        driver = Driver(
            scenario, lambda w: out.put(("window", worker, w.to_wire())), shard=(worker, workers)
        )
        out.put(("ready", worker, None))
        if not go.wait(_READY_TIMEOUT_S):
            return
        result = run_loop(_worker_run(driver, float(start_at.value), stop), loop_name)
        out.put(
            (
                "done",
                worker,
                {
                    "interrupted": result.interrupted,
                    "abandoned": result.abandoned,
                    "exhausted": list(result.exhausted),
                },
            )
        )
    except BaseException as exc:  # noqa: BLE001 - reported to the parent, which fails the run
        out.put(("error", worker, f"{type(exc).__name__}: {exc}"))


async def _worker_run(driver: Driver, t0: float, stop: MpEvent) -> DriverResult:
    stopped = asyncio.Event()

    async def watch() -> None:
        while not stop.is_set():
            await asyncio.sleep(_STOP_POLL_S)
        stopped.set()

    watcher = asyncio.create_task(watch())
    try:
        return await driver.run(stopped, t0=t0)
    finally:
        watcher.cancel()


class WorkerPool:
    """N spawned driver processes; `start()` waits until each is ready to go."""

    def __init__(self, scenario: Scenario, workers: int, loop_name: str = "asyncio") -> None:
        ctx = multiprocessing.get_context("spawn")
        self._n = workers
        self._queue: Any = ctx.Queue()
        self._go = ctx.Event()
        self._stop = ctx.Event()
        self._start_at: Any = ctx.Value("d", 0.0)
        self._procs = [
            ctx.Process(
                target=_worker_main,
                args=(
                    scenario,
                    k,
                    workers,
                    self._queue,
                    self._go,
                    self._stop,
                    self._start_at,
                    loop_name,
                ),
                name=f"perfsleuth-worker-{k}",
                daemon=True,
            )
            for k in range(workers)
        ]

    def start(self) -> None:
        """Start the workers and wait until all are ready (or one fails)."""
        for proc in self._procs:
            proc.start()
        ready = 0
        deadline = time.monotonic() + _READY_TIMEOUT_S
        while ready < self._n:
            try:
                kind, worker, payload = self._queue.get(
                    timeout=max(deadline - time.monotonic(), 0.1)
                )
            except queue_mod.Empty:
                self.close()
                raise RunFailedError(
                    f"driver workers did not start within {_READY_TIMEOUT_S:.0f}s"
                ) from None
            if kind == "error":
                self.close()
                raise RunFailedError(f"driver worker {worker} failed to start: {payload}")
            ready += kind == "ready"

    def stop(self) -> None:
        self._stop.set()

    async def run(
        self, t0: float, on_window: Callable[[Window], None], stop: asyncio.Event
    ) -> DriverResult:
        """Let the workers go at `t0`; merge their windows until all are done."""
        loop = asyncio.get_running_loop()
        inbox: asyncio.Queue[tuple[str, int, Any]] = asyncio.Queue()
        reading = threading.Event()
        reading.set()

        def read() -> None:
            while reading.is_set():
                try:
                    message = self._queue.get(timeout=0.2)
                except (queue_mod.Empty, EOFError, OSError):
                    continue
                loop.call_soon_threadsafe(inbox.put_nowait, message)

        reader = threading.Thread(target=read, name="perfsleuth-worker-inbox", daemon=True)
        reader.start()
        self._start_at.value = t0
        self._go.set()
        merger = _Merger(self._n, on_window)
        results: list[dict[str, Any]] = []
        errors: list[str] = []
        stopper = asyncio.create_task(stop.wait())
        try:
            while len(results) + len(errors) < self._n:
                if stopper.done():
                    self._stop.set()
                getter = asyncio.create_task(inbox.get())
                # Once stopped, wait for the workers' last messages only (no busy loop).
                waiting = {getter} if stopper.done() else {getter, stopper}
                done, _ = await asyncio.wait(
                    waiting, timeout=1.0, return_when=asyncio.FIRST_COMPLETED
                )
                if getter not in done:
                    getter.cancel()
                    if not any(p.is_alive() for p in self._procs) and inbox.empty():
                        errors.append("a driver worker exited without reporting")
                        break
                    continue
                kind, worker, payload = getter.result()
                if kind == "window":
                    merger.add(worker, Window.from_wire(payload))
                elif kind == "done":
                    merger.finished(worker)
                    results.append(payload)
                elif kind == "error":
                    merger.finished(worker)
                    errors.append(f"worker {worker}: {payload}")
        finally:
            stopper.cancel()
            reading.clear()
            merger.flush()
        if errors:
            raise RunFailedError("driver worker failed: " + "; ".join(errors))
        return DriverResult(
            t0,
            time.monotonic(),
            any(r["interrupted"] for r in results) or stop.is_set(),
            sum(r["abandoned"] for r in results),
            tuple(sorted({name for r in results for name in r["exhausted"]})),
        )

    def close(self) -> None:
        """Stop and reap every worker (terminate those that do not stop by themselves)."""
        self._stop.set()
        self._go.set()
        for proc in self._procs:
            if proc.pid is None:
                continue
            proc.join(timeout=5)
            if proc.is_alive():
                proc.terminate()
                proc.join(timeout=5)


class _Merger:
    """Adds window i of every worker and emits windows in order once all have sent them.

    Each worker sends its windows in order through one queue, so window i is complete
    when every worker has sent i (or a later one) or has finished.
    """

    def __init__(self, workers: int, on_window: Callable[[Window], None]) -> None:
        self._on_window = on_window
        self._seen = [-1] * workers
        self._done = [False] * workers
        self._pending: dict[int, Window] = {}
        self._next = 0

    def add(self, worker: int, window: Window) -> None:
        self._seen[worker] = max(self._seen[worker], window.index)
        held = self._pending.get(window.index)
        if held is None:
            self._pending[window.index] = window
        else:
            held.absorb(window)
            held.duration_s = max(held.duration_s, window.duration_s)
        self._emit_ready()

    def finished(self, worker: int) -> None:
        self._done[worker] = True
        self._emit_ready()

    def _complete(self, index: int) -> bool:
        return all(seen >= index or done for seen, done in zip(self._seen, self._done, strict=True))

    def _emit_ready(self) -> None:
        while self._next in self._pending and self._complete(self._next):
            window = self._pending.pop(self._next)
            self._next += 1
            self._on_window(window)

    def flush(self) -> None:
        for index in sorted(self._pending):
            self._on_window(self._pending[index])
        self._pending.clear()
