"""Asynchronous tasks: submit a generation, get a task id at once, poll (or watch) its status.

``api`` serves ``POST /v1/tasks``, ``GET /v1/tasks/{id}`` and ``GET /v1/tasks/{id}/events``
from a ``TaskBoard``. A task is an ordinary ``GenRequest`` in the same batching engine as the
synchronous endpoints (so the same queue, batch limits and faults apply); the board only
follows it and remembers the outcome for the pollers.

Two knobs exist for testing clients: ``"simulate": "fail"`` makes a task run and then fail,
``"simulate": "hang"`` makes one that is accepted and never runs.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

from .config import Json
from .engine import Engine, Finished, GenRequest

#: Finished tasks are kept this long for late pollers, and at most this many.
RETAIN_S = 300.0
MAX_TASKS = 10_000
SIMULATE = ("fail", "hang")


@dataclass(eq=False)
class Task:
    id: str
    req: GenRequest
    simulate: str | None = None
    submitted: float = field(default_factory=time.monotonic)
    result: Json | None = None
    error: str | None = None
    finished: float = 0.0
    follower: asyncio.Task[None] | None = None

    @property
    def status(self) -> str:
        if self.error is not None:
            return "failed"
        if self.result is not None:
            return "done"
        # Admission is when the engine takes it into its batch: the end of the queue wait.
        return "running" if self.req.admitted else "queued"

    def view(self) -> Json:
        out: Json = {"task_id": self.id, "status": self.status}
        if self.req.admitted:
            out["queue_ms"] = round((self.req.admitted - self.req.enqueued) * 1000.0, 3)
        if self.result is not None:
            out["result"] = self.result
        if self.error is not None:
            out["error"] = self.error
        return out


class TaskBoard:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._tasks: OrderedDict[str, Task] = OrderedDict()
        self.submitted = self.done = self.failed = 0

    def submit(
        self, req: GenRequest, render: Callable[[Finished], Json], simulate: str | None
    ) -> Task | None:
        """Queue a task; None when the engine's queue is full."""
        self._forget_old()
        task = Task(uuid.uuid4().hex[:24], req, simulate)
        if simulate != "hang":  # a hung task is accepted and never reaches the engine
            if not self.engine.submit(req):
                return None
            task.follower = asyncio.ensure_future(self._follow(task, render))
        self._tasks[task.id] = task
        self.submitted += 1
        return task

    def get(self, task_id: str) -> Task | None:
        return self._tasks.get(task_id)

    def state(self) -> Json:
        return {
            "submitted": self.submitted,
            "done": self.done,
            "failed": self.failed,
            "kept": len(self._tasks),
        }

    async def _follow(self, task: Task, render: Callable[[Finished], Json]) -> None:
        item: str | Finished = ""
        while not isinstance(item, Finished):
            item = await task.req.events.get()
        task.finished = time.monotonic()
        if task.simulate == "fail":
            task.error = "simulated failure"
            self.failed += 1
        else:
            task.result = render(item)
            self.done += 1

    def _forget_old(self) -> None:
        now = time.monotonic()
        while self._tasks:
            oldest = next(iter(self._tasks.values()))
            expired = oldest.finished and now - oldest.finished > RETAIN_S
            if not expired and len(self._tasks) < MAX_TASKS:
                return
            self._tasks.popitem(last=False)
            self.engine.cancel(oldest.req)
            if oldest.follower is not None:
                oldest.follower.cancel()
