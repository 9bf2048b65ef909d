"""The async load engine: runs a load model and cuts results into 1 s windows.

Used by `tracker.recording.runner`. The load models (`tracker.driver.loads`) decide *when* a
request is intended; the engine renders it, caps concurrency (`max_inflight`), sends it,
and records the outcome. Windows are keyed by completion time and handed to `on_window`
once their second has passed; everything runs on one event-loop thread, so a result
measured before a tick always lands in a window that has not been emitted yet.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass

from tracker.driver.loads import run_closed, run_open, sleep_until
from tracker.driver.prepared import RenderError, RequestMix, WireRequest
from tracker.driver.request import Outcome, execute
from tracker.driver.session import run_session
from tracker.driver.tasks import TaskEnd
from tracker.records.window import (
    INFLIGHT_WAIT,
    ITL,
    LATENCY,
    LATENCY_UNCORRECTED,
    LOOP_LAG,
    SCHEDULE_LAG,
    SESSION,
    TASK,
    TASK_POLL,
    TASK_POLLS,
    TASK_QUEUE,
    TASK_SUBMIT,
    TASKS_FAILED,
    TASKS_OK,
    TOKENS_COUNTED,
    TOKENS_FROM_USAGE,
    TPOT,
    TTFT,
    Window,
    per_request,
)
from tracker.scenario import Scenario
from tracker.scenario.flags import connection_limit
from tracker.transport import Client, Origin, Pool

WindowCallback = Callable[[Window], None]

# Connections per driver process: beyond this, requests wait for a free connection (the
# wait counts in corrected latency); each worker process has its own. Fewer where the
# open-file limit allows fewer (`connection_limit`): a socket the process cannot open
# would be counted as the server refusing a connection, and starve the probes of files.
MAX_CONNECTIONS = 1024
# How often the event loop's lag is probed (a timer of this length, measured).
_LOOP_PROBE_S = 0.05


@dataclass(frozen=True)
class DriverResult:
    """How the load phase ended."""

    started_mono: float
    ended_mono: float
    interrupted: bool
    abandoned: int  # requests still in flight when the run was stopped
    exhausted: tuple[str, ...] = ()  # requests whose `unique` dataset ran out


class Driver:
    """Drives one scenario's load and reports per-second windows."""

    def __init__(
        self, scenario: Scenario, on_window: WindowCallback, *, shard: tuple[int, int] = (0, 1)
    ) -> None:
        self._scenario = scenario
        self._on_window = on_window
        self._mix = RequestMix(scenario, shard=shard)
        self.share = shard
        self._per_name = len(scenario.requests) > 1
        self._goodput = scenario.goodput
        self._windows: dict[int, Window] = {}
        self._next_emit = 0
        self._inflight: set[asyncio.Task[None]] = set()
        cap = scenario.load.max_inflight
        self._cap = cap
        self._drop = scenario.load.on_full == "drop"
        self._slots = asyncio.Semaphore(cap) if cap is not None and not self._drop else None
        self._pool: Pool | None = None
        self._session = scenario.session
        self._session_rng = random.Random(scenario.load.seed)
        self.t0 = 0.0
        self.end = 0.0
        self.exhausted = False

    @property
    def inflight(self) -> set[asyncio.Task[None]]:
        """Requests sent and not yet answered."""
        return self._inflight

    async def run(self, stop: asyncio.Event, t0: float | None = None) -> DriverResult:
        """Drive the load until its duration ends or `stop` is set."""
        load = self._scenario.load
        self.t0 = t0 if t0 is not None else time.monotonic()
        self.end = self.t0 + load.duration_s
        timeout = max(r.timeout_s for r in self._scenario.requests)
        connections = min(MAX_CONNECTIONS, connection_limit())
        async with Client(max_connections=connections) as client:
            self._pool = client.pool(Origin.of(self._scenario.base_url))
            ticker = asyncio.create_task(self._tick())
            watcher = asyncio.create_task(self._watch_loop())
            model = run_open if load.model == "open" else run_closed
            work = asyncio.create_task(model(load, self))
            stopper = asyncio.create_task(stop.wait())
            await asyncio.wait({work, stopper}, return_when=asyncio.FIRST_COMPLETED)
            if not stop.is_set():
                await self._drain(stopper, deadline=time.monotonic() + timeout + 1.0)
            interrupted = stop.is_set()
            abandoned = len(self._inflight)
            work.cancel()
            stopper.cancel()
            for task in list(self._inflight):
                task.cancel()
            await asyncio.gather(work, stopper, *self._inflight, return_exceptions=True)
            ticker.cancel()
            watcher.cancel()
            await asyncio.gather(ticker, watcher, return_exceptions=True)
        ended = time.monotonic()
        self._emit_until(ended, final=True)
        return DriverResult(
            self.t0, ended, interrupted, abandoned, tuple(self._mix.exhausted_names())
        )

    async def _drain(self, stopper: asyncio.Task[bool], deadline: float) -> None:
        """Let in-flight requests finish (each has its own deadline) unless stopped."""
        while self._inflight and not stopper.done():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            await asyncio.wait(
                {*self._inflight, stopper}, timeout=remaining, return_when=asyncio.FIRST_COMPLETED
            )

    # -- the Launcher interface used by the load models ---------------------------------

    def record_lag(self, intended: float, now: float) -> None:
        self._window_at(now).hist(SCHEDULE_LAG).record_ms((now - intended) * 1000.0)

    def dispatch(self, intended: float, now: float) -> asyncio.Task[None] | None:
        if self._drop and self._cap is not None and len(self._inflight) >= self._cap:
            self._window_at(now).dropped += 1
            return None
        if self._session is not None:
            if self.exhausted:
                return None
            rng = random.Random(self._session_rng.random())
            task = asyncio.create_task(run_session(self, self._session, self._mix, intended, rng))
            self._inflight.add(task)
            task.add_done_callback(self._inflight.discard)
            return task
        try:
            wire = self._mix.next_wire()
        except RenderError:
            window = self._window_at(now)
            window.sent += 1
            window.completed += 1
            window.add_error("template")
            return None
        if wire is None:
            self.exhausted = True
            return None
        self._window_at(now).sent += 1
        task = asyncio.create_task(self._one(wire, intended, now))
        self._inflight.add(task)
        task.add_done_callback(self._inflight.discard)
        return task

    async def _one(self, wire: WireRequest, intended: float, dispatched: float) -> None:
        outcome, waited_ms = await self.send(wire, intended, capture=False)
        self.record(outcome, waited_ms, None)

    # -- the SessionHost interface used by sessions -------------------------------------

    async def send(
        self, wire: WireRequest, intended: float, *, capture: bool, inband_errors: bool = True
    ) -> tuple[Outcome, float | None]:
        assert self._pool is not None
        if self._slots is None:
            out = await execute(
                self._pool, wire, intended, capture=capture, inband_errors=inband_errors
            )
            return out, None
        asked = time.monotonic()
        async with self._slots:
            waited_ms = (time.monotonic() - asked) * 1000.0
            out = await execute(
                self._pool, wire, intended, capture=capture, inband_errors=inband_errors
            )
            return out, waited_ms

    def note_sent(self, now: float) -> None:
        self._window_at(now).sent += 1

    def note_error(self, now: float, error_class: str) -> None:
        window = self._window_at(now)
        window.sent += 1
        window.completed += 1
        window.add_error(error_class)

    def session_done(self, ok: bool, intended: float) -> None:
        now = time.monotonic()
        window = self._window_at(now)
        window.bump("sessions_ok" if ok else "sessions_failed")
        if ok:
            window.hist(SESSION).record_ms((now - intended) * 1000.0)

    def task_submitted(self, out: Outcome) -> None:
        if out.error is None:
            window = self._window_at(out.ended)
            window.hist(TASK_SUBMIT).record_ms((out.ended - out.sent) * 1000.0)

    def task_polled(self, out: Outcome | None) -> None:
        window = self._window_at(time.monotonic() if out is None else out.ended)
        window.bump(TASK_POLLS)
        if out is not None and out.error is None:
            window.hist(TASK_POLL).record_ms((out.ended - out.sent) * 1000.0)

    def task_done(self, end: TaskEnd, intended: float, sent: float) -> None:
        window = self._window_at(end.ended)
        window.completed += 1
        if end.error is not None:
            window.add_error(end.error)
            window.bump(TASKS_FAILED)
            return
        window.ok += 1
        window.bump(TASKS_OK)
        latency_ms = (end.ended - intended) * 1000.0
        window.hist(LATENCY).record_ms(latency_ms)
        window.hist(TASK).record_ms(latency_ms)
        window.hist(LATENCY_UNCORRECTED).record_ms((end.ended - sent) * 1000.0)
        if end.queue_ms is not None:
            window.hist(TASK_QUEUE).record_ms(end.queue_ms)
        if self._goodput is not None and self._goodput.is_good(None, None, latency_ms):
            window.good += 1

    # -- windows -----------------------------------------------------------------------

    def _window_at(self, t: float) -> Window:
        index = max(int(t - self.t0), self._next_emit)
        window = self._windows.get(index)
        if window is None:
            window = Window(
                index=index,
                start_s=float(index),
                warmup=index < self._scenario.load.warmup_s,
            )
            self._windows[index] = window
        return window

    def record(self, out: Outcome, waited_ms: float | None, turn: int | None) -> None:
        window = self._window_at(out.ended)
        window.completed += 1
        if waited_ms is not None:
            window.hist(INFLIGHT_WAIT).record_ms(waited_ms)
        if self._per_name:
            window.count_request(out.name, ok=out.error is None)
        if out.error is not None:
            window.add_error(out.error)
            return
        window.ok += 1
        latency_ms = (out.ended - out.intended) * 1000.0
        window.hist(LATENCY).record_ms(latency_ms)
        if self._per_name:
            window.hist(per_request(LATENCY, out.name)).record_ms(latency_ms)
        e2e_ms = (out.ended - out.sent) * 1000.0
        window.hist(LATENCY_UNCORRECTED).record_ms(e2e_ms)
        if out.output_tokens:
            window.output_tokens += out.output_tokens
            # Which responses' token counts came from the server's `usage` and which were
            # counted as content chunks, so the report can say what the figure rests on.
            window.bump(TOKENS_FROM_USAGE if out.tokens_from_usage else TOKENS_COUNTED)
        ttft_ms: float | None = None
        tpot_ms: float | None = None
        if out.first_chunk is not None:
            ttft_ms = (out.first_chunk - out.sent) * 1000.0
            window.hist(TTFT).record_ms(ttft_ms)
            if turn is not None:
                window.hist(per_request(TTFT, f"turn{turn}")).record_ms(ttft_ms)
            if self._per_name:
                window.hist(per_request(TTFT, out.name)).record_ms(ttft_ms)
            itl = window.hist(ITL)
            for prev, cur in itertools.pairwise(out.chunk_times):
                itl.record_ms((cur - prev) * 1000.0)
            tokens = out.output_tokens or len(out.chunk_times)
            if tokens > 1:
                tpot_ms = (e2e_ms - ttft_ms) / (tokens - 1)
                window.hist(TPOT).record_ms(tpot_ms)
        if self._goodput is not None and self._goodput.is_good(ttft_ms, tpot_ms, e2e_ms):
            window.good += 1

    async def _watch_loop(self) -> None:
        """Record how late a short timer fires: the event loop's own lag.

        In the open model the schedule lag shows a busy loop; in the closed model there
        is no schedule, and this is what shows a driver that cannot keep up.
        """
        while True:
            started = time.monotonic()
            await asyncio.sleep(_LOOP_PROBE_S)
            now = time.monotonic()
            late_ms = (now - started - _LOOP_PROBE_S) * 1000.0
            self._window_at(now).hist(LOOP_LAG).record_ms(max(late_ms, 0.0))

    async def _tick(self) -> None:
        k = 1
        while True:
            await sleep_until(self.t0 + k)
            self._emit_until(time.monotonic(), final=False)
            k = max(k + 1, int(time.monotonic() - self.t0) + 1)

    def _emit_until(self, now: float, *, final: bool) -> None:
        """Hand over every window whose second has ended (all of them when `final`)."""
        elapsed = now - self.t0
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
