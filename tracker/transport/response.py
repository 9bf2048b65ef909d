"""A response as the request executor reads it: status, headers, timed body pieces.

Used by `tracker.transport.pool`. Body pieces come decoded (chunked framing removed,
gzip/deflate undone) with the monotonic time their bytes came off the socket.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from tracker.transport.connection import Connection
from tracker.transport.message import BodyDecoder


class Response:
    """The head of a response, and its body as it arrives."""

    __slots__ = ("_conn", "_decoder", "head_at", "raw_headers", "status")

    def __init__(self, conn: Connection, *, decode: bool = True) -> None:
        self._conn = conn
        self.status = conn.status
        self.raw_headers = conn.headers
        self.head_at = conn.head_at
        # Without `decode`, pieces come as sent (httpx undoes Content-Encoding itself).
        encoding = self.header("content-encoding") if decode else None
        self._decoder = BodyDecoder.for_encoding(encoding)

    def header(self, name: str) -> str | None:
        """A header's value (several occurrences joined by ", "); `name` in lower case."""
        wanted = name.encode("latin-1")
        values = [v.decode("latin-1") for n, v in self.raw_headers if n.lower() == wanted]
        return ", ".join(values) if values else None

    def headers(self) -> dict[str, str]:
        """All headers, names in lower case, repeated ones joined by ", " (as httpx does)."""
        out: dict[str, str] = {}
        for raw_name, raw_value in self.raw_headers:
            name = raw_name.decode("latin-1").lower()
            value = raw_value.decode("latin-1")
            out[name] = f"{out[name]}, {value}" if name in out else value
        return out

    async def next_piece(self) -> tuple[bytes, float] | None:
        """The next decoded piece of the body and its arrival time; None at the end.

        Raises:
            ProtocolError: the body was malformed, cut short or undecodable.
        """
        while True:
            item = await self._conn.next_piece()
            decoder = self._decoder
            if decoder is None:
                return item
            if item is None:
                self._decoder = None
                tail = decoder.flush()
                return (tail, self._conn.head_at) if tail else None
            data = decoder.decode(item[0])
            if data:
                return data, item[1]

    async def read(self) -> bytes:
        """The whole body."""
        parts: list[bytes] = []
        while (item := await self.next_piece()) is not None:
            parts.append(item[0])
        return b"".join(parts)

    async def lines(self) -> AsyncIterator[tuple[str, float]]:
        """The body's lines (ended by \\n, \\r\\n or \\r) with the arrival time of their end.

        Lines are split on the decoded stream, so a line split across chunks or socket
        reads comes out whole, timed when its last byte arrived.
        """
        pending = b""
        arrived = 0.0
        while (item := await self.next_piece()) is not None:
            data, arrived = item
            if pending:
                data = pending + data
                pending = b""
            if b"\n" not in data and b"\r" not in data:
                pending = data
                continue
            parts = data.splitlines(keepends=True)
            last = parts[-1]
            # An unterminated tail waits for more; so does a lone "\r", which may be the
            # first half of a "\r\n" split across reads.
            if last.endswith(b"\r") or not last.endswith((b"\n", b"\r")):
                pending = parts.pop()
            for part in parts:
                yield part.rstrip(b"\r\n").decode("utf-8", "replace"), arrived
        if pending:
            yield pending.rstrip(b"\r\n").decode("utf-8", "replace"), arrived
