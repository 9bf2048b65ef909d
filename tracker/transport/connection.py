"""One HTTP/1.1 connection: an asyncio protocol feeding httptools' response parser.

Used by `tracker.transport.pool`. Each socket read is timestamped once, in
`data_received`, and every body piece parsed from it carries that time: when a token
arrived does not depend on when the consumer's coroutine gets round to it.

A connection serves one exchange at a time. It is fit for reuse only when its response
ended as HTTP framing says (`on_message_complete`) and both sides keep it alive; the
pool decides, through `reusable`.
"""

from __future__ import annotations

import asyncio
import collections
import time
from typing import cast

import httptools

from tracker.transport.errors import ConnectionClosed, ProtocolError

# Flow control for bodies the consumer reads slower than the server sends them: stop
# reading the socket above HIGH buffered bytes, resume below LOW.
_HIGH_WATER = 1 << 20
_LOW_WATER = 1 << 18


class Connection(asyncio.Protocol):
    """The client side of one TCP (or TLS) connection."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.closed = False  # the socket is gone or going; never reuse
        self.exchanges = 0  # responses completed on this connection
        self.idle_since = 0.0  # time.monotonic() when it last went back to the pool
        self._now = 0.0
        self._reset(head_only=False)

    def _reset(self, *, head_only: bool) -> None:
        self._parser = httptools.HttpResponseParser(self)
        self._head_only = head_only  # a HEAD request: the response has no body
        self.status = 0
        self.headers: list[tuple[bytes, bytes]] = []
        self.head_at = 0.0
        self.complete = False
        self.keep_alive = True
        self.received = False  # any byte of this exchange's response arrived
        self.error: BaseException | None = None
        self._interim = False  # inside a 1xx response, which is skipped
        self._until_eof = False  # no Content-Length, not chunked: the body ends at EOF
        self._pieces: collections.deque[tuple[bytes, float]] = collections.deque()
        self._buffered = 0
        self._paused = False
        self._head_waiter: asyncio.Future[None] | None = None
        self._body_waiter: asyncio.Future[None] | None = None

    # -- asyncio.Protocol ---------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self._now = time.monotonic()
        self.received = True
        if self.complete:
            # Bytes after a complete response, before the next request (a 408 sent to an
            # idle connection, a body after a HEAD response): the server is out of step
            # with us, and the connection cannot be trusted with another exchange.
            self.close()
            return
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(ProtocolError("the server switched protocols (101); not HTTP/1.1"))
        except httptools.HttpParserError as exc:
            self._fail(ProtocolError(f"malformed HTTP response: {exc}"))

    def eof_received(self) -> bool:
        if self._until_eof and not self.complete:
            self.keep_alive = False
            self.on_message_complete()
        self._fail(
            ConnectionClosed(
                "the server closed the connection before the response ended",
                nothing_received=not self.received,
            )
        )
        return False  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        reason = f"the connection was lost ({exc})" if exc is not None else "the connection closed"
        self._fail(ConnectionClosed(reason, nothing_received=not self.received))

    def _fail(self, exc: BaseException) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()
        if self.complete or self.error is not None:
            return
        self.error = exc
        self._wake()

    def _wake(self) -> None:
        for waiter in (self._head_waiter, self._body_waiter):
            if waiter is not None and not waiter.done():
                waiter.set_result(None)

    # -- httptools callbacks --------------------------------------------------------------

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        status = self._parser.get_status_code()
        if 100 <= status < 200 and status != 101:
            self._interim = True  # 100 Continue, 103 Early Hints: the real response follows
            return
        self.status = status
        self.head_at = self._now
        self.keep_alive = self._parser.should_keep_alive()
        framed = status in (204, 304) or any(
            name.lower() in (b"content-length", b"transfer-encoding") for name, _ in self.headers
        )
        self._until_eof = not framed and not self._head_only
        if self._head_only:
            # The parser does not know the request was HEAD and would wait for the body
            # that Content-Length announces; the exchange ends here, and the next exchange
            # starts with a fresh parser.
            self.on_message_complete()
            return
        if self._head_waiter is not None and not self._head_waiter.done():
            self._head_waiter.set_result(None)

    def on_body(self, body: bytes) -> None:
        if self.complete:
            return
        self._pieces.append((body, self._now))
        self._buffered += len(body)
        if self._buffered > _HIGH_WATER and not self._paused and self.transport is not None:
            self._paused = True
            self.transport.pause_reading()
        if self._body_waiter is not None and not self._body_waiter.done():
            self._body_waiter.set_result(None)

    def on_message_complete(self) -> None:
        if self._interim:
            self._interim = False
            self.headers = []
            return
        self.complete = True
        self.exchanges += 1
        self._wake()

    # -- used by the pool and the response --------------------------------------------------

    @property
    def reusable(self) -> bool:
        """The last response ended cleanly and both sides keep the connection open.

        Stays accurate while the connection idles in the pool: its state is only reset
        when the next exchange starts, so a close or stray bytes in between are seen.
        """
        return self.complete and self.keep_alive and not self.closed and self.error is None

    async def exchange(self, data: bytes, *, head_only: bool) -> None:
        """Send one request and wait for the head of its response.

        Raises:
            ConnectionClosed: the server closed before the response began.
            ProtocolError: the response was malformed.
        """
        assert self.transport is not None
        self._reset(head_only=head_only)
        self._head_waiter = asyncio.get_running_loop().create_future()
        self.transport.write(data)
        if not self.status and self.error is None:
            await self._head_waiter
        self._head_waiter = None
        if not self.status:
            raise self.error or ProtocolError("no response")

    async def next_piece(self) -> tuple[bytes, float] | None:
        """The next piece of the body with its arrival time; None at its end.

        Raises:
            ProtocolError: the body was malformed or cut short.
        """
        while not self._pieces:
            if self.complete:
                return None
            if self.error is not None:
                raise self.error
            self._body_waiter = asyncio.get_running_loop().create_future()
            try:
                await self._body_waiter
            finally:
                self._body_waiter = None
        piece = self._pieces.popleft()
        self._buffered -= len(piece[0])
        if self._paused and self._buffered < _LOW_WATER and self.transport is not None:
            self._paused = False
            self.transport.resume_reading()
        return piece

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()
