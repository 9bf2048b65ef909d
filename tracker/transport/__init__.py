"""perfsleuth's HTTP/1.1 client: keep-alive pools on asyncio protocols and httptools.

The load driver sends every request through it; `HttpxTransport` puts the same pools
under an `httpx.AsyncClient` for code written against httpx. See docs/architecture.md
("Transport") for why perfsleuth owns this layer instead of using httpx's pool.
"""

from tracker.transport.errors import ConnectError, ConnectionClosed, ProtocolError, TransportError
from tracker.transport.message import InvalidRequest, encode_request, json_body, request_target
from tracker.transport.pool import Client, Exchange, Origin, Pool, default_ssl_context
from tracker.transport.response import Response

__all__ = [
    "Client",
    "ConnectError",
    "ConnectionClosed",
    "Exchange",
    "InvalidRequest",
    "Origin",
    "Pool",
    "ProtocolError",
    "Response",
    "TransportError",
    "default_ssl_context",
    "encode_request",
    "json_body",
    "request_target",
]
