"""The async load engine: issues requests on schedule and cuts results into 1 s windows.

Used by `tracker.runner`. Open model: request i is *intended* at t0 + i/rate and its
corrected latency counts from that instant, however late the driver sends it (the
lateness is kept as schedule lag). Closed model: N users each send, wait for the
answer, and send again; there is no schedule, so both latencies coincide.

Windows are keyed by completion time and handed to `on_window` once their second has
passed; everything runs on one event loop thread, so a result measured before a tick
always lands in a window that has not been emitted yet.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import httpx

from tracker.driver.request import Outcome, execute
from tracker.metrics import (
    ITL,
    LATENCY,
    LATENCY_UNCORRECTED,
    SCHEDULE_LAG,
    TPOT,
    TTFT,
    Window,
)
from tracker.scenario import Scenario

WindowCallback = Callable[[Window], None]


@dataclass(frozen=True)
class DriverResult:
    """How the load phase ended."""

    started_mono: float
    ended_mono: float
    interrupted: bool
    abandoned: int  # requests still in flight when the run was stopped


class Driver:
    """Drives one scenario's load and reports per-second windows."""

    def __init__(self, scenario: Scenario, on_window: WindowCallback) -> None:
        self._scenario = scenario
        self._on_window = on_window
        self._windows: dict[int, Window] = {}
        self._next_emit = 0
        self._inflight: set[asyncio.Task[None]] = set()
        self._t0 = 0.0
        self._end = 0.0

    @property
    def started_mono(self) -> float:
        """time.monotonic() at the start of the load (0 before `run`)."""
        return self._t0

    async def run(self, stop: asyncio.Event, t0: float | None = None) -> DriverResult:
        """Drive the load until its duration ends or `stop` is set."""
        load = self._scenario.load
        self._t0 = t0 if t0 is not None else time.monotonic()
        self._end = self._t0 + load.duration_s
        limits = httpx.Limits(max_connections=1024, max_keepalive_connections=1024)
        timeout = httpx.Timeout(self._scenario.request.timeout_s)
        async with httpx.AsyncClient(
            base_url=self._scenario.base_url, limits=limits, timeout=timeout
        ) as client:
            ticker = asyncio.create_task(self._tick())
            if load.model == "open":
                work = asyncio.create_task(self._open(client))
            else:
                work = asyncio.create_task(self._closed(client))
            stopper = asyncio.create_task(stop.wait())
            await asyncio.wait({work, stopper}, return_when=asyncio.FIRST_COMPLETED)
            if not stop.is_set():
                # Let in-flight requests finish (each has a total deadline), unless stopped.
                pending = {*self._inflight, stopper}
                deadline = time.monotonic() + self._scenario.request.timeout_s + 1.0
                while len(pending) > 1 and not stop.is_set():
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        break
                    await asyncio.wait(
                        pending, timeout=remaining, return_when=asyncio.FIRST_COMPLETED
                    )
                    pending = {*self._inflight, stopper}
            interrupted = stop.is_set()
            abandoned = len(self._inflight)
            work.cancel()
            stopper.cancel()
            for task in list(self._inflight):
                task.cancel()
            await asyncio.gather(work, stopper, *self._inflight, return_exceptions=True)
            ticker.cancel()
            await asyncio.gather(ticker, return_exceptions=True)
        ended = time.monotonic()
        self._emit_until(ended, final=True)
        return DriverResult(self._t0, ended, interrupted, abandoned)

    # -- load models -------------------------------------------------------------------

    async def _open(self, client: httpx.AsyncClient) -> None:
        rate = self._scenario.load.rate
        assert rate is not None
        interval = 1.0 / rate
        i = 0
        while True:
            intended = self._t0 + i * interval
            if intended >= self._end:
                return
            delay = intended - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            now = time.monotonic()
            window = self._window_at(now)
            window.sent += 1
            window.hist(SCHEDULE_LAG).record_ms((now - intended) * 1000.0)
            task = asyncio.create_task(self._one(client, intended))
            self._inflight.add(task)
            task.add_done_callback(self._inflight.discard)
            i += 1

    async def _closed(self, client: httpx.AsyncClient) -> None:
        users = self._scenario.load.users or 1
        await asyncio.gather(*(self._user(client) for _ in range(users)))

    async def _user(self, client: httpx.AsyncClient) -> None:
        while True:
            now = time.monotonic()
            if now >= self._end:
                return
            self._window_at(now).sent += 1
            task = asyncio.create_task(self._one(client, now))
            self._inflight.add(task)
            task.add_done_callback(self._inflight.discard)
            await asyncio.shield(task)

    async def _one(self, client: httpx.AsyncClient, intended: float) -> None:
        outcome = await execute(client, self._scenario.request, intended)
        self._record(outcome)

    # -- windows -----------------------------------------------------------------------

    def _window_at(self, t: float) -> Window:
        index = max(int(t - self._t0), self._next_emit)
        window = self._windows.get(index)
        if window is None:
            window = Window(
                index=index,
                start_s=float(index),
                warmup=index < self._scenario.load.warmup_s,
            )
            self._windows[index] = window
        return window

    def _record(self, out: Outcome) -> None:
        window = self._window_at(out.ended)
        window.completed += 1
        if out.error is not None:
            window.add_error(out.error)
            return
        window.ok += 1
        window.hist(LATENCY).record_ms((out.ended - out.intended) * 1000.0)
        e2e_ms = (out.ended - out.sent) * 1000.0
        window.hist(LATENCY_UNCORRECTED).record_ms(e2e_ms)
        if out.output_tokens:
            window.output_tokens += out.output_tokens
        if out.first_chunk is None:
            return
        ttft_ms = (out.first_chunk - out.sent) * 1000.0
        window.hist(TTFT).record_ms(ttft_ms)
        itl = window.hist(ITL)
        times = out.chunk_times
        for prev, cur in itertools.pairwise(times):
            itl.record_ms((cur - prev) * 1000.0)
        tokens = out.output_tokens or len(times)
        if tokens > 1:
            window.hist(TPOT).record_ms((e2e_ms - ttft_ms) / (tokens - 1))

    async def _tick(self) -> None:
        k = 1
        while True:
            delay = self._t0 + k - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            self._emit_until(time.monotonic(), final=False)
            k = max(k + 1, int(time.monotonic() - self._t0) + 1)

    def _emit_until(self, now: float, *, final: bool) -> None:
        """Hand over every window whose second has ended (all of them when `final`)."""
        elapsed = now - self._t0
        last = math.ceil(elapsed) if final else int(elapsed)
        if final and self._windows:
            last = max(last, max(self._windows) + 1)
        while self._next_emit < last:
            index = self._next_emit
            window = self._windows.pop(index, None) or Window(
                index=index, start_s=float(index), warmup=index < self._scenario.load.warmup_s
            )
            if final and index + 1 > elapsed:
                window.duration_s = max(elapsed - index, 0.001)
            self._next_emit += 1
            self._on_window(window)
