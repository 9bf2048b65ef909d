"""The agent's HTTP side: a Starlette app served by uvicorn that streams what the
observer publishes (`tracker.agent.observe`) to every driver connected.

Only reads: no endpoint starts, stops or signals anything. With a token, every request
must carry `Authorization: Bearer TOKEN` (compared in constant time); anything else gets
a bare 401.
"""

from __future__ import annotations

import asyncio
import hmac
import threading
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from types import FrameType

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from tracker.agent.protocol import (
    CLOCK_PATH,
    HEARTBEAT_S,
    HELLO_PATH,
    SAMPLES_PATH,
    Heartbeat,
    Hello,
    Message,
    Status,
    encode,
)

#: Lines a slow driver may fall behind before its stream is cut (it reconnects, and
#: records the gap): about 40 minutes of samples at 4 Hz.
SUBSCRIBER_BACKLOG = 10_000


@dataclass
class _Subscriber:
    loop: asyncio.AbstractEventLoop
    queue: asyncio.Queue[bytes | None]
    cut: bool = False


class Hub:
    """Fan-out of the observer's messages (published from its thread) to the streams
    being served (on the event loop). A driver connecting late gets the current status,
    then messages from then on."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._subscribers: list[_Subscriber] = []
        self._status: Status | None = None
        self._closed = False

    def publish(self, message: Message) -> None:
        line = encode(message)
        with self._lock:
            if isinstance(message, Status):
                self._status = message
            subscribers = list(self._subscribers)
        for sub in subscribers:
            sub.loop.call_soon_threadsafe(_offer, sub, line)

    def subscribe(self) -> _Subscriber:
        sub = _Subscriber(asyncio.get_running_loop(), asyncio.Queue(SUBSCRIBER_BACKLOG + 1))
        with self._lock:
            if self._status is not None:
                sub.queue.put_nowait(encode(self._status))
            if self._closed:
                sub.queue.put_nowait(None)
            self._subscribers.append(sub)
        return sub

    def unsubscribe(self, sub: _Subscriber) -> None:
        with self._lock:
            if sub in self._subscribers:
                self._subscribers.remove(sub)

    @property
    def subscribers(self) -> int:
        with self._lock:
            return len(self._subscribers)

    def close(self) -> None:
        """End every stream (the agent is stopping)."""
        with self._lock:
            self._closed = True
            subscribers = list(self._subscribers)
        for sub in subscribers:
            sub.loop.call_soon_threadsafe(_offer, sub, None)


def _offer(sub: _Subscriber, line: bytes | None) -> None:
    if sub.cut:
        return
    if line is not None and sub.queue.qsize() >= SUBSCRIBER_BACKLOG:
        sub.cut = True  # too far behind: end its stream rather than grow without bound
        line = None
    sub.queue.put_nowait(line)


class _RequireToken:
    """ASGI middleware: every HTTP request carries the bearer token, or gets a bare 401."""

    def __init__(self, app: ASGIApp, token: bytes) -> None:
        self._app = app
        self._expected = b"Bearer " + token

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            given = dict(scope["headers"]).get(b"authorization", b"")
            if not hmac.compare_digest(given, self._expected):
                await Response(status_code=401, headers={"WWW-Authenticate": "Bearer"})(
                    scope, receive, send
                )
                return
        await self._app(scope, receive, send)


def agent_app(
    hub: Hub, hello: Callable[[], Hello], clock: Callable[[], float], token: str | None
) -> ASGIApp:
    """The agent's ASGI app: `/v1/hello`, `/v1/clock`, `/v1/samples` (see the protocol)."""

    async def hello_endpoint(_: Request) -> Response:
        return JSONResponse(hello().to_json())

    async def clock_endpoint(_: Request) -> Response:
        # Read as late as possible: the driver takes the midpoint of its round trip.
        return JSONResponse({"t": clock()})

    async def samples_endpoint(_: Request) -> Response:
        sub = hub.subscribe()
        return StreamingResponse(_stream(hub, sub, clock), media_type="application/x-ndjson")

    app: ASGIApp = Starlette(
        routes=[
            Route(HELLO_PATH, hello_endpoint),
            Route(CLOCK_PATH, clock_endpoint),
            Route(SAMPLES_PATH, samples_endpoint),
        ]
    )
    if token is not None:
        app = _RequireToken(app, token.encode())
    return app


async def _stream(hub: Hub, sub: _Subscriber, clock: Callable[[], float]) -> AsyncIterator[bytes]:
    try:
        while True:
            try:
                line = await asyncio.wait_for(sub.queue.get(), HEARTBEAT_S)
            except TimeoutError:
                line = encode(Heartbeat(clock()))
            if line is None:
                return
            yield line
    finally:
        hub.unsubscribe(sub)


class AgentServer(uvicorn.Server):
    """uvicorn's server that calls `on_exit` as soon as it is told to stop: the sample
    streams never end on their own, and would hold the graceful shutdown to its end."""

    def __init__(self, config: uvicorn.Config, on_exit: Callable[[], None]) -> None:
        super().__init__(config)
        self._on_exit = on_exit

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self._on_exit()
        super().handle_exit(sig, frame)
