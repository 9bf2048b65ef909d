"""HTTP/1.1 request heads, request targets and response body decoding.

Used by `tracker.transport.pool` and the request executor. Requests are encoded to
bytes once (a static request's bytes are reused for every send); header values are
checked here so that nothing a scenario says can split a request in two.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Iterable
from urllib.parse import quote

from tracker import __version__
from tracker.transport.errors import ProtocolError

USER_AGENT = f"perfsleuth/{__version__}"

# Characters a request target may hold as they are (RFC 3986 unreserved, sub-delims,
# ':' '@' '/' '?' and '%' so that already-escaped targets are not escaped twice).
_TARGET_SAFE = "/?:@!$&'()*+,;=-._~%"
_FORBIDDEN_IN_HEADERS = ("\r", "\n", "\0")
# Headers the transport writes itself; a scenario may override Host and User-Agent only.
_FRAMING = frozenset({"content-length", "transfer-encoding", "connection"})


class InvalidRequest(ValueError):
    """A request that cannot be written as HTTP/1.1 (a bad header name or value)."""


def request_target(path: str) -> str:
    """The origin-form target for `path`: fragment dropped, unsafe characters escaped."""
    path = path.split("#", 1)[0] or "/"
    if path.isascii() and " " not in path and '"' not in path:
        return path
    return quote(path, safe=_TARGET_SAFE)


def json_body(value: object) -> bytes:
    """A JSON body as httpx writes it: compact, UTF-8, non-ASCII kept as is."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()


def header_problem(name: str, value: str) -> str | None:
    """Why a header cannot be sent as given, or None when it can."""
    if not name or any(c in name for c in (*_FORBIDDEN_IN_HEADERS, ":", " ", "\t")):
        return f"{name!r} is not a valid HTTP header name"
    if any(c in value for c in _FORBIDDEN_IN_HEADERS):
        return f"the value of {name!r} holds a line break or NUL, which would split the request"
    return None


def _header_bytes(name: str, value: str) -> bytes:
    problem = header_problem(name, value)
    if problem is not None:
        raise InvalidRequest(problem)
    line = f"{name}: {value}\r\n"
    try:
        return line.encode("ascii")
    except UnicodeEncodeError:
        return line.encode("utf-8")


def encode_request(
    method: str,
    target: str,
    host: str,
    headers: Iterable[tuple[str, str]] = (),
    body: bytes | None = None,
    *,
    content_type: str | None = None,
) -> bytes:
    """The request's bytes on the wire: head and body.

    `host` is the Host header's value (`host:port`, brackets for IPv6). A body gets a
    Content-Length (0 for an empty one); a request without a body gets none.

    Raises:
        InvalidRequest: a header name or value cannot be written.
    """
    given = {name.lower() for name, _ in headers}
    parts = [f"{method} {target} HTTP/1.1\r\n".encode("ascii")]
    if "host" not in given:
        parts.append(_header_bytes("Host", host))
    if "user-agent" not in given:
        parts.append(_header_bytes("User-Agent", USER_AGENT))
    if content_type is not None and "content-type" not in given:
        parts.append(_header_bytes("Content-Type", content_type))
    for name, value in headers:
        if name.lower() in _FRAMING:
            continue  # framing is the transport's, or the body and the framing disagree
        parts.append(_header_bytes(name, value))
    if body is not None:
        parts.append(b"Content-Length: %d\r\n" % len(body))
    parts.append(b"\r\n")
    if body:
        parts.append(body)
    return b"".join(parts)


class BodyDecoder:
    """Undoes a gzip or deflate Content-Encoding incrementally, as pieces arrive.

    perfsleuth never asks for compression (it sends no Accept-Encoding unless the
    scenario does), but a server may compress anyway, and a scenario may ask for it to
    test the server's compression path: checks, extraction and SSE parsing need the
    decoded bytes either way.
    """

    __slots__ = ("_started", "_try_raw", "_zlib")

    def __init__(self, encoding: str) -> None:
        gzip = encoding in ("gzip", "x-gzip")
        self._zlib = zlib.decompressobj(16 + zlib.MAX_WBITS if gzip else zlib.MAX_WBITS)
        # "deflate" means zlib-wrapped (RFC 9110 8.4.1.2), but some servers send raw
        # deflate: if the first bytes are not a zlib header, read them as raw.
        self._try_raw = not gzip
        self._started = False

    @staticmethod
    def for_encoding(encoding: str | None) -> BodyDecoder | None:
        """A decoder for `encoding`, or None for identity and codings we do not undo."""
        if encoding is None:
            return None
        encoding = encoding.strip().lower()
        if encoding in ("gzip", "x-gzip", "deflate"):
            return BodyDecoder(encoding)
        return None

    def decode(self, data: bytes) -> bytes:
        try:
            out = self._zlib.decompress(data)
        except zlib.error as exc:
            if self._try_raw and not self._started:
                self._try_raw = False
                self._zlib = zlib.decompressobj(-zlib.MAX_WBITS)
                return self.decode(data)
            raise ProtocolError(f"cannot decode the compressed body: {exc}") from None
        self._started = self._started or bool(data)
        return out

    def flush(self) -> bytes:
        return self._zlib.flush()
