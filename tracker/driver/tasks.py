"""Asynchronous task APIs: after a session step submits a task, the next step (with `poll`)
asks for its status until it is done, failed, or waited on too long.

Used by `tracker.driver.session`. The task is the operation the user waits for: its
latency runs from the submission's *intended* send time (coordinated omission corrected, as
every latency here) to the response that said done, and it ends as ok, `task_failed`
(the API said so), `timeout` (past `max_wait`), or the error class of a failed submission
or status request. The submission and the status requests are timed in their own families
(`task_submit`, `task_poll`) and never in the run's main latency.

A status endpoint is polled: the first poll goes `interval` after the submission's
response, each next one the (growing, with `backoff`) interval after the previous response.
An event endpoint (the step's request streams SSE) is watched instead: each event's data
is matched against `until` / `fail`, and a stream that ends undecided is opened again.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from tracker.driver.extract import extract
from tracker.driver.feeders import FeederExhausted
from tracker.driver.loads import sleep_until
from tracker.driver.prepared import RenderError, WireRequest
from tracker.driver.request import Outcome
from tracker.scenario import PollSpec, SessionStep


class TaskHost(Protocol):
    """What waiting for a task needs from the driver."""

    async def send(
        self, wire: WireRequest, intended: float, *, capture: bool, inband_errors: bool = True
    ) -> tuple[Outcome, float | None]: ...

    def task_polled(self, out: Outcome | None) -> None:
        """Count one status request (None: cut off at the task's deadline)."""


@dataclass(frozen=True)
class TaskEnd:
    """How a task ended: `error` None when done; `ended` is when that was known."""

    error: str | None
    ended: float
    queue_ms: float | None = None


async def wait_for_task(
    host: TaskHost,
    step: SessionStep,
    render: Callable[[dict[str, Any]], WireRequest],
    variables: dict[str, Any],
    submitted: float,
    answered: float,
) -> TaskEnd:
    """Poll (or watch) until the task submitted at `submitted` (intended) and answered at
    `answered` is decided. Extracted values join `variables` for later steps."""
    poll = step.poll
    assert poll is not None
    deadline = submitted + poll.max_wait_s
    queue_ms: float | None = None
    polls = 0
    last = answered
    while True:
        at = last + poll.wait_after(polls)
        if at >= deadline:
            # Waiting longer would pass the deadline: that is when the user gives up.
            await sleep_until(deadline)
            return TaskEnd("timeout", time.monotonic(), queue_ms)
        await sleep_until(at)
        try:
            wire = render(variables)
        except (RenderError, FeederExhausted):
            return TaskEnd("template", time.monotonic(), queue_ms)
        try:
            # A status request (or an event stream) never outlasts the task's deadline.
            async with asyncio.timeout(deadline - time.monotonic()):
                out, _ = await host.send(wire, at, capture=True, inband_errors=False)
        except TimeoutError:
            host.task_polled(None)
            return TaskEnd("timeout", time.monotonic(), queue_ms)
        host.task_polled(out)
        polls += 1
        last = out.ended
        if out.error is not None:
            return TaskEnd(out.error, out.ended, queue_ms)
        for event in _events(out, streamed=wire.spec.stream == "sse"):
            seen = _extracted(step, poll, out.headers, event)
            variables.update((k, v) for k, v in seen.items() if k != _QUEUE)
            if _QUEUE in seen:
                queue_ms = _milliseconds(seen[_QUEUE], queue_ms)
            if poll.fail is not None and poll.fail.holds(seen):
                return TaskEnd("task_failed", out.ended, queue_ms)
            if poll.until.holds(seen):
                return TaskEnd(None, out.ended, queue_ms)
        if out.ended >= deadline:
            return TaskEnd("timeout", out.ended, queue_ms)


_QUEUE = "\0queue_wait"  # not a valid variable name: never collides with the user's


def _extracted(
    step: SessionStep, poll: PollSpec, headers: Mapping[str, str], body: bytes
) -> dict[str, Any]:
    """What this response (or event) holds of the step's extractions and the queue wait."""
    found: dict[str, Any] = {}
    for x in step.extract:
        value = extract(x, headers, body)
        if value is not None:
            found[x.name] = value
    if poll.queue_wait is not None:
        value = extract(poll.queue_wait, headers, body)
        if value is not None:
            found[_QUEUE] = value
    return found


def _events(out: Outcome, *, streamed: bool) -> Iterator[bytes]:
    """The response body, or each `data:` of an event stream, in order."""
    if not streamed:
        yield out.body
        return
    for line in out.body.split(b"\n"):
        if line.startswith(b"data:"):
            data = line[5:].strip()
            if data and data != b"[DONE]":
                yield data


def _milliseconds(value: Any, previous: float | None) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return previous
    try:
        ms = float(value)
    except ValueError:
        return previous
    return ms if ms >= 0 else previous
