"""The transport's exceptions; the request executor maps each to an error class."""

from __future__ import annotations


class TransportError(Exception):
    """Base of everything the transport raises for a failed exchange."""


class ConnectError(TransportError):
    """No connection: refused, unreachable, DNS failure, TLS handshake failure, or timeout."""


class ProtocolError(TransportError):
    """The server broke HTTP/1.1: a malformed response, or a body cut short."""


class ConnectionClosed(ProtocolError):
    """The server closed the connection before the response was complete.

    `nothing_received` says that not one byte of the response arrived, the only case
    in which resending the request on a fresh connection can be safe.
    """

    def __init__(self, message: str, *, nothing_received: bool) -> None:
        super().__init__(message)
        self.nothing_received = nothing_received
