"""perfsleuth's connection pools under httpx: `httpx.AsyncClient(transport=HttpxTransport())`.

For code written against httpx (hooks, scripts, tests) that should not suffer httpx's
own pool, which collapses under concurrency (httpx issue #3215; benchmarks/RESULTS.md
§5). httpx still builds requests, follows redirects and decodes bodies; this transport
only moves bytes. Each response's `extensions["chunk_times"]` lists the monotonic time
every body piece came off the socket, appended as the body is read.

Limits: HTTP/1.1 only, no proxies; httpx's client layer itself costs about 150 µs a
request, so a single process tops out near 5,000 requests/s this way.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator

import httpx

from tracker.transport.errors import ConnectError, ProtocolError
from tracker.transport.message import InvalidRequest, encode_request
from tracker.transport.pool import Client, Exchange, Origin, default_ssl_context
from tracker.transport.response import Response

_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


def _timeouts(request: httpx.Request) -> tuple[float | None, float | None]:
    timeout = request.extensions.get("timeout") or {}
    return timeout.get("connect"), timeout.get("read")


class _Body(httpx.AsyncByteStream):
    def __init__(
        self, exchange: Exchange, response: Response, read_timeout: float | None, times: list[float]
    ) -> None:
        self._exchange: Exchange | None = exchange
        self._response = response
        self._read_timeout = read_timeout
        self._times = times

    async def __aiter__(self) -> AsyncIterator[bytes]:
        while True:
            try:
                async with asyncio.timeout(self._read_timeout):
                    item = await self._response.next_piece()
            except TimeoutError:
                raise httpx.ReadTimeout("timed out reading the response body") from None
            except ProtocolError as exc:
                raise httpx.RemoteProtocolError(str(exc)) from None
            if item is None:
                return
            self._times.append(item[1])
            yield item[0]

    async def aclose(self) -> None:
        exchange, self._exchange = self._exchange, None
        if exchange is not None:
            # Pools the connection when the whole body was read, closes it otherwise.
            await exchange.__aexit__(None, None, None)


class HttpxTransport(httpx.AsyncBaseTransport):
    """An httpx transport on perfsleuth's HTTP/1.1 pools."""

    def __init__(
        self, *, max_connections: int = 1024, verify: ssl.SSLContext | bool = True
    ) -> None:
        if verify is True:
            context: ssl.SSLContext = default_ssl_context()
        elif verify is False:
            context = default_ssl_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        else:
            context = verify
        self._client = Client(max_connections=max_connections, ssl_context=context)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        if url.scheme not in ("http", "https"):
            raise httpx.UnsupportedProtocol(f"{url.scheme!r} URLs are not supported")
        default_port = 443 if url.scheme == "https" else 80
        origin = Origin(url.scheme, url.host, url.port or default_port)
        body = await request.aread()
        method = request.method
        headers = [
            (name.decode("latin-1"), value.decode("latin-1")) for name, value in request.headers.raw
        ]
        try:
            data = encode_request(
                method,
                url.raw_path.decode("ascii"),
                origin.host_header,
                headers,
                body if body or method in _BODY_METHODS else None,
            )
        except InvalidRequest as exc:
            raise httpx.LocalProtocolError(str(exc)) from None
        connect_timeout, read_timeout = _timeouts(request)
        exchange = self._client.pool(origin).exchange(
            method, data, connect_timeout=connect_timeout or 3600.0, decode=False
        )
        try:
            async with asyncio.timeout(read_timeout):
                response = await exchange.__aenter__()
        except TimeoutError:
            if exchange.stage == "connect":
                raise httpx.ConnectTimeout("timed out connecting") from None
            raise httpx.ReadTimeout("timed out waiting for the response") from None
        except ConnectError as exc:
            raise httpx.ConnectError(str(exc)) from None
        except ProtocolError as exc:
            raise httpx.RemoteProtocolError(str(exc)) from None
        times: list[float] = []
        return httpx.Response(
            response.status,
            headers=response.raw_headers,
            stream=_Body(exchange, response, read_timeout, times),
            extensions={"http_version": b"HTTP/1.1", "chunk_times": times},
        )

    async def aclose(self) -> None:
        self._client.close()
