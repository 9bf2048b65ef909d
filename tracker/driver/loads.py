"""The load models as coroutines: open (arrival schedule) and closed (users).

Used by `tracker.driver.engine.Driver`, which supplies `Launcher` — the one way a load
model sends a request. Open model: request i is intended at its arrival offset and its
corrected latency counts from then, however late it is sent. Closed model: each user
sends, waits, thinks; with pacing, iteration k of a user is intended at
`start + k * pace` (a per-user schedule, so lateness is counted as wrk2 would).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Iterator
from typing import Protocol

from tracker.driver.schedule import (
    RateProfile,
    ThinkTime,
    UserProfile,
    poisson_arrivals,
    uniform_arrivals,
)
from tracker.scenario import LoadSpec

# The user supervisor adjusts the number of users this often (ramping closed model).
_USER_TICK_S = 0.1


class Launcher(Protocol):
    """What a load model needs from the driver."""

    t0: float
    end: float
    exhausted: bool  # every request's `unique` dataset has run out
    share: tuple[int, int]  # (this worker, workers): which part of the schedule is ours

    def dispatch(self, intended: float, now: float) -> asyncio.Task[None] | None:
        """Start one request intended at `intended`.

        None when no task was started: the request was dropped (a full `--max-inflight`
        with `on_full = drop`) or, when `exhausted` is set, nothing is left to send.
        """

    def record_lag(self, intended: float, now: float) -> None:
        """Note how late the schedule was kept."""


def rate_profile(load: LoadSpec) -> RateProfile:
    if load.stages:
        return RateProfile.stages(load.start_rate, load.stages)
    if load.throttle:
        return RateProfile.throttle(load.throttle)
    assert load.rate is not None
    return RateProfile.constant(load.rate, load.duration_s)


def user_profile(load: LoadSpec) -> UserProfile:
    if load.user_stages:
        return UserProfile.stages(load.start_users, [(d, round(u)) for d, u in load.user_stages])
    return UserProfile.constant(load.users or 1, load.duration_s)


def arrivals(load: LoadSpec) -> Iterator[float]:
    profile = rate_profile(load)
    if load.arrival == "poisson":
        return poisson_arrivals(profile, load.seed)
    return uniform_arrivals(profile)


async def sleep_until(deadline: float) -> None:
    """Sleep until time.monotonic() >= deadline; never return early.

    Timers may fire early (uvloop's have millisecond resolution), and a request must
    never be sent before its intended time, so the rest is slept again.
    """
    while (delay := deadline - time.monotonic()) > 0:
        await asyncio.sleep(delay)


# When the driver is behind schedule it dispatches without sleeping; it still yields to
# the event loop this often so responses, ticks and Ctrl-C are served.
_YIELD_EVERY = 32


async def run_open(load: LoadSpec, launcher: Launcher) -> None:
    """Dispatch every arrival of the schedule at its intended time.

    With several workers each walks the same (seeded) schedule and takes every n-th
    arrival, so together they send exactly the one schedule.
    """
    worker, workers = launcher.share
    for i, offset in enumerate(arrivals(load)):
        if i % workers != worker:
            continue
        intended = launcher.t0 + offset
        if intended > time.monotonic():
            await sleep_until(intended)
        elif i % _YIELD_EVERY == 0:
            await asyncio.sleep(0)
        now = time.monotonic()
        launcher.record_lag(intended, now)
        if launcher.dispatch(intended, now) is None and launcher.exhausted:
            return


class _User:
    __slots__ = ("index", "retired", "task")

    def __init__(self, index: int) -> None:
        self.index = index
        self.retired = False
        self.task: asyncio.Task[None] | None = None


async def run_closed(load: LoadSpec, launcher: Launcher) -> None:
    """Keep `users_at(t)` users busy until the end; extra users retire after their iteration."""
    profile = user_profile(load)
    think = ThinkTime(*load.think_time) if load.think_time else None
    await sleep_until(launcher.t0)
    active: list[_User] = []
    spawned = 0
    try:
        while True:
            now = time.monotonic()
            if now >= launcher.end:
                break
            target = _my_users(profile.users_at(now - launcher.t0), launcher.share)
            while len(active) < target:
                user = _User(spawned * launcher.share[1] + launcher.share[0])
                spawned += 1
                user.task = asyncio.create_task(_user_loop(user, load, think, launcher))
                active.append(user)
            while len(active) > target:
                active.pop().retired = True
            active = [u for u in active if u.task is not None and not u.task.done()]
            if not load.user_stages and len(active) == target:
                # A constant user count needs no supervision: wait for the users instead.
                await asyncio.gather(*(u.task for u in active if u.task is not None))
                break
            await asyncio.sleep(min(_USER_TICK_S, max(launcher.end - now, 0.0)))
        await asyncio.gather(*(u.task for u in active if u.task is not None))
    finally:
        for user in active:
            if user.task is not None:
                user.task.cancel()


def _my_users(total: int, share: tuple[int, int]) -> int:
    """This worker's part of `total` users: user j belongs to worker j % workers."""
    worker, workers = share
    return max(0, (total - worker + workers - 1) // workers)


async def _user_loop(
    user: _User, load: LoadSpec, think: ThinkTime | None, launcher: Launcher
) -> None:
    rng = random.Random(f"{load.seed}/{user.index}")
    planned = time.monotonic()
    while not user.retired:
        now = time.monotonic()
        if now >= launcher.end:
            return
        intended = planned if load.pacing_s else now
        task = launcher.dispatch(intended, now)
        if task is None:
            return
        await asyncio.shield(task)
        if think is not None:
            pause = think.draw(rng)
            if pause > 0:
                # Never shorter than drawn: a timer may fire early (see sleep_until).
                await sleep_until(min(time.monotonic() + pause, launcher.end))
        if load.pacing_s:
            planned += load.pacing_s
            await sleep_until(min(planned, launcher.end))
