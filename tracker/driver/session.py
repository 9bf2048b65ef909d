"""Multi-turn sessions: run a scenario's steps in order, carrying values and chat history.

Used by `tracker.driver.engine.Driver` for scenarios with a `[session]`: each open-model
arrival (or closed-model iteration) runs one session. Step 1 is intended at the arrival;
each later step is intended when the previous one ended plus its pause. Values extracted
from a response fill `{{ name }}` in later steps; with chat history, each chat step's
`messages` follow the conversation so far (user turns and the assistant's replies).
A failed step ends its session; a session running when the load ends is finished (the
driver's drain waits for it, bounded by the request timeout). A step with `poll` waits for
the task the step before it submitted (`tracker.driver.tasks`): the task, from its
intended submission to the response that said done, is what the run's counts and latency
see, not the submission or the status requests.
"""

from __future__ import annotations

import random
import time
from dataclasses import replace
from typing import Any, Protocol

from tracker.driver.extract import extract
from tracker.driver.feeders import FeederExhausted
from tracker.driver.loads import sleep_until
from tracker.driver.prepared import RenderError, RequestMix, WireRequest
from tracker.driver.request import Outcome
from tracker.driver.tasks import TaskEnd, wait_for_task
from tracker.scenario import SessionSpec, SessionStep


class SessionHost(Protocol):
    """What a session needs from the driver."""

    end: float
    exhausted: bool

    async def send(
        self, wire: WireRequest, intended: float, *, capture: bool, inband_errors: bool = True
    ) -> tuple[Outcome, float | None]:
        """Send (waiting for an in-flight slot if capped): the outcome and the wait in ms."""

    def record(self, out: Outcome, waited_ms: float | None, turn: int | None) -> None:
        """Count a finished request in its window."""

    def note_sent(self, now: float) -> None:
        """Count a request as sent now."""

    def note_error(self, now: float, error_class: str) -> None:
        """Count a request that failed before it could be sent."""

    def session_done(self, ok: bool, intended: float) -> None:
        """Count a finished session and its duration from its intended start."""

    def task_submitted(self, out: Outcome) -> None:
        """Time a task's submission (its own family, not the run's latency)."""

    def task_polled(self, out: Outcome | None) -> None:
        """Count one status request of a task."""

    def task_done(self, end: TaskEnd, intended: float, sent: float) -> None:
        """Count a decided task: the run's latency runs from its intended submission."""


def _with_history(
    wire: WireRequest, history: list[dict[str, Any]]
) -> tuple[WireRequest, list[Any]]:
    """The request with the conversation so far in front of this step's messages."""
    body = wire.json
    if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
        return wire, []
    step_messages = list(body["messages"])
    if not history:
        return wire, step_messages
    with_history = {**body, "messages": [*history, *step_messages]}
    return replace(wire, json=with_history, data=None), step_messages


async def run_session(
    host: SessionHost, spec: SessionSpec, mix: RequestMix, intended: float, rng: random.Random
) -> None:
    """Run every step of one session; stops at the first failed step."""
    variables: dict[str, Any] = {}
    history: list[dict[str, Any]] = []
    planned = intended
    submitted: tuple[float, float, float] | None = None  # a task's (intended, sent, answered)
    steps = spec.steps
    for turn, step in enumerate(steps, start=1):
        now = time.monotonic()
        prepared = mix.by_name[step.request]
        if step.poll is not None and submitted is not None:
            end = await wait_for_task(host, step, prepared.render, variables, submitted[0],
                                      submitted[2])  # fmt: skip
            host.task_done(end, submitted[0], submitted[1])
            if end.error is not None:
                host.session_done(False, intended)
                return
            planned, submitted = await _paused(step, turn, len(steps), rng), None
            continue
        submits = turn < len(steps) and steps[turn].poll is not None
        try:
            wire = prepared.render(variables)
        except FeederExhausted:
            prepared.exhausted = True
            host.exhausted = all(r.exhausted for r in mix.by_name.values() if r.feeder)
            return
        except RenderError:
            host.note_error(now, "template")
            host.session_done(False, intended)
            return
        step_messages: list[Any] = []
        if spec.chat_history:
            wire, step_messages = _with_history(wire, history)
        host.note_sent(now)
        out, waited = await host.send(wire, planned, capture=True)
        if out.error is None:
            for x in step.extract:
                value = extract(x, out.headers, out.body)
                if value is None:
                    out.error = "extract_failed"
                    break
                variables[x.name] = value
        if submits:
            # The task, not its submission, is what the run counts (when it is decided).
            host.task_submitted(out)
            if out.error is not None:
                host.task_done(TaskEnd(out.error, out.ended), planned, out.sent)
                host.session_done(False, intended)
                return
            submitted = (planned, out.sent, out.ended)
            continue
        host.record(out, waited, turn)
        if out.error is not None:
            host.session_done(False, intended)
            return
        if step_messages:
            history.extend(step_messages)
            history.append({"role": "assistant", "content": out.text})
        planned = await _paused(step, turn, len(steps), rng)
    host.session_done(True, intended)


async def _paused(step: SessionStep, turn: int, steps: int, rng: random.Random) -> float:
    """Sleep the step's pause (none after the last step); the next step is intended now."""
    if step.pause is not None and turn < steps:
        pause = rng.uniform(*step.pause)
        if pause > 0:
            await sleep_until(time.monotonic() + pause)  # never shorter than drawn
    return time.monotonic()
