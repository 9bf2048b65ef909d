"""Keep-alive connection pools per origin, and the client that holds them.

Used by the request executor (`tracker.driver.request`) and the httpx adapter. One
`Client` per event loop; it opens at most `max_connections` connections per origin and
reuses the most recently returned idle one first, so a light load runs on warm
connections.
"""

from __future__ import annotations

import asyncio
import collections
import ssl
import time
from dataclasses import dataclass
from types import TracebackType
from typing import Literal
from urllib.parse import urlsplit

from tracker.transport.connection import Connection
from tracker.transport.errors import ConnectError, ConnectionClosed
from tracker.transport.response import Response

# Methods a request may be resent with when a reused connection turns out to have been
# closed by the server before it read the request (RFC 9110 9.2.2).
IDEMPOTENT = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS", "TRACE"})

# An idle connection unused this long is closed. A stall (a GC pause, a busy CPU) makes an
# open-model run send a burst and open a connection per request in it; without this the
# pool kept every one of them for the rest of the run (~5 KB each, up to max_connections),
# and kept those the server had closed too.
IDLE_TIMEOUT_S = 30.0

Stage = Literal["wait", "connect", "exchange", "body"]


@dataclass(frozen=True, slots=True)
class Origin:
    """Scheme, host and port: what a connection is opened to."""

    scheme: str
    host: str
    port: int

    @classmethod
    def of(cls, url: str) -> Origin:
        """The origin of an absolute http(s) URL.

        Raises:
            ValueError: not an http(s) URL with a host.
        """
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"{url!r} is not an http(s) URL")
        default = 443 if parts.scheme == "https" else 80
        return cls(parts.scheme, parts.hostname, parts.port or default)

    @property
    def host_header(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        default = 443 if self.scheme == "https" else 80
        return host if self.port == default else f"{host}:{self.port}"


class Pool:
    """Connections to one origin: opened on demand, capped, reused while alive."""

    def __init__(
        self, origin: Origin, *, max_connections: int, ssl_context: ssl.SSLContext | None
    ) -> None:
        self.origin = origin
        self.max_connections = max_connections
        self._ssl = ssl_context if origin.scheme == "https" else None
        self._idle: collections.deque[Connection] = collections.deque()
        self._open = 0  # connections counted against the cap: idle, busy or connecting
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()
        self.opened = 0  # connections ever opened (for tests and diagnostics)

    @property
    def open_connections(self) -> int:
        return self._open

    def exchange(
        self, method: str, data: bytes, *, connect_timeout: float, decode: bool = True
    ) -> Exchange:
        """`async with pool.exchange(...) as response:` sends `data`, the request's bytes.

        With `decode` (the default) the response body comes with gzip/deflate undone.
        """
        return Exchange(self, method, data, connect_timeout, decode)

    async def acquire(
        self, connect_timeout: float, exchange: Exchange | None = None
    ) -> tuple[Connection, bool]:
        """A connection ready for an exchange, and whether it was opened for it.

        Waits while `max_connections` are busy; marks `exchange` as connecting while a
        new connection is opened for it.

        Raises:
            ConnectError: a new connection could not be opened.
        """
        while True:
            while self._idle:
                conn = self._idle.pop()
                if conn.reusable:
                    return conn, False
                self.discard(conn)
            if self._open < self.max_connections:
                self._open += 1
                if exchange is not None:
                    exchange.stage = "connect"
                try:
                    return await self._connect(connect_timeout), True
                except BaseException:
                    self._open -= 1
                    self._wake_one()
                    raise
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            except BaseException:
                if waiter.done() and not waiter.cancelled():
                    self._wake_one()  # woken but leaving: pass the turn on
                elif waiter in self._waiters:
                    self._waiters.remove(waiter)
                raise

    async def _connect(self, timeout: float) -> Connection:
        loop = asyncio.get_running_loop()
        origin = self.origin
        try:
            async with asyncio.timeout(timeout):
                _, conn = await loop.create_connection(
                    Connection,
                    origin.host,
                    origin.port,
                    ssl=self._ssl,
                    server_hostname=origin.host if self._ssl is not None else None,
                )
        except TimeoutError:
            raise ConnectError(f"connecting to {origin.host_header} timed out") from None
        except OSError as exc:  # refused, unreachable, DNS, TLS (ssl.SSLError is an OSError)
            raise ConnectError(f"cannot connect to {origin.host_header}: {exc}") from None
        self.opened += 1
        return conn

    def release(self, conn: Connection) -> None:
        """Take a connection back after an exchange: pooled if reusable, else closed."""
        if conn.reusable:
            now = time.monotonic()
            conn.idle_since = now
            self._idle.append(conn)
            self._prune(now - IDLE_TIMEOUT_S)
            self._wake_one()
        else:
            self.discard(conn)

    def _prune(self, cutoff: float) -> None:
        """Close idle connections at the cold end (least recently used first) that the
        server has closed or that sat unused since before `cutoff`."""
        idle = self._idle
        while idle and (not idle[0].reusable or idle[0].idle_since < cutoff):
            self.discard(idle.popleft())

    def discard(self, conn: Connection) -> None:
        conn.close()
        self._open -= 1
        self._wake_one()

    def _wake_one(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    def close(self) -> None:
        while self._idle:
            self.discard(self._idle.pop())


class Exchange:
    """One request/response on a pooled connection (an async context manager).

    `stage` tells a caller that caught a timeout where it struck: "wait" while all
    `max_connections` were busy, "connect" while opening a connection, "exchange" until
    the response head arrived, "body" after.
    """

    __slots__ = ("_conn", "_connect_timeout", "_data", "_decode", "_method", "_pool", "stage")

    def __init__(
        self, pool: Pool, method: str, data: bytes, connect_timeout: float, decode: bool
    ) -> None:
        self._pool = pool
        self._decode = decode
        self._method = method
        self._data = data
        self._connect_timeout = connect_timeout
        self._conn: Connection | None = None
        self.stage: Stage = "wait"

    async def __aenter__(self) -> Response:
        pool = self._pool
        head_only = self._method == "HEAD"
        while True:
            self.stage = "wait"
            conn, fresh = await pool.acquire(self._connect_timeout, self)
            self._conn = conn
            self.stage = "exchange"
            try:
                await conn.exchange(self._data, head_only=head_only)
            except ConnectionClosed as exc:
                self._conn = None
                pool.discard(conn)
                # A reused connection the server had closed before reading the request:
                # resend once on a fresh one, if the method makes that safe.
                if fresh or not exc.nothing_received or self._method not in IDEMPOTENT:
                    raise
                continue
            except BaseException:
                self._conn = None
                pool.discard(conn)
                raise
            self.stage = "body"
            return Response(conn, decode=self._decode)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        if exc_type is None:
            self._pool.release(conn)  # pooled only if the whole response was read
        else:
            self._pool.discard(conn)


class Client:
    """Pools by origin for one event loop."""

    def __init__(
        self, *, max_connections: int = 1024, ssl_context: ssl.SSLContext | None = None
    ) -> None:
        self.max_connections = max_connections
        self._ssl_context = ssl_context
        self._pools: dict[Origin, Pool] = {}

    def pool(self, origin: Origin) -> Pool:
        pool = self._pools.get(origin)
        if pool is None:
            context = self._ssl_context
            if origin.scheme == "https" and context is None:
                context = self._ssl_context = default_ssl_context()
            pool = self._pools[origin] = Pool(
                origin, max_connections=self.max_connections, ssl_context=context
            )
        return pool

    def close(self) -> None:
        for pool in self._pools.values():
            pool.close()

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def default_ssl_context() -> ssl.SSLContext:
    """The system's trust store, certificate and host name checked, HTTP/1.1 by ALPN."""
    context = ssl.create_default_context()
    context.set_alpn_protocols(["http/1.1"])
    return context
