"""A loopback TCP server that answers HTTP requests with exactly the bytes a test scripts.

For the transport's framing and connection-handling tests: each accepted connection
runs `script(conn)` on its own thread, where `conn.read_request()` returns the next
request (or None once the client closed) and `conn.send(...)` writes raw bytes, so a
test can split lines across writes, delay the terminal chunk, or close mid-exchange.
Every connection's requests are recorded in `server.requests`.
"""

from __future__ import annotations

import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field


@dataclass
class RawRequest:
    method: str
    target: str
    headers: dict[str, str]
    body: bytes
    connection: int  # index of the connection it came on


class RawConn:
    def __init__(self, sock: socket.socket, index: int, server: RawServer) -> None:
        self.sock = sock
        self.index = index
        self._server = server
        self._buffer = b""

    def _recv(self) -> bool:
        try:
            data = self.sock.recv(65536)
        except OSError:
            return False
        self._buffer += data
        return bool(data)

    def read_request(self) -> RawRequest | None:
        while b"\r\n\r\n" not in self._buffer:
            if not self._recv():
                return None
        head, self._buffer = self._buffer.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        method, target, _ = lines[0].split(" ", 2)
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, value = line.split(":", 1)
            headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length", "0"))
        while len(self._buffer) < length:
            if not self._recv():
                return None
        body, self._buffer = self._buffer[:length], self._buffer[length:]
        request = RawRequest(method, target, headers, body, self.index)
        self._server.requests.append(request)
        return request

    def send(self, *parts: bytes, gap_s: float = 0.0) -> None:
        """Write each part with its own send call, `gap_s` apart."""
        for k, part in enumerate(parts):
            if k and gap_s:
                time.sleep(gap_s)
            self.sock.sendall(part)

    def close(self) -> None:
        with suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()


Script = Callable[[RawConn], None]


@dataclass
class RawServer:
    host: str
    port: int
    requests: list[RawRequest] = field(default_factory=list)
    connections: int = 0

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"


@contextmanager
def running_raw_server(
    script: Script, *, host: str = "127.0.0.1", tls: ssl.SSLContext | None = None
) -> Iterator[RawServer]:
    """Serve `script` on an ephemeral loopback port until the block ends."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    listener = socket.socket(family, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((host, 0))
    listener.listen(64)
    listener.settimeout(0.2)
    server = RawServer(host, listener.getsockname()[1])
    stopping = threading.Event()
    threads: list[threading.Thread] = []

    def serve(sock: socket.socket, index: int) -> None:
        sock.settimeout(10)
        try:
            if tls is not None:
                sock = tls.wrap_socket(sock, server_side=True)
            script(RawConn(sock, index, server))
        except OSError:
            pass
        finally:
            sock.close()

    def accept() -> None:
        while not stopping.is_set():
            try:
                sock, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            index = server.connections
            server.connections += 1
            thread = threading.Thread(target=serve, args=(sock, index), daemon=True)
            thread.start()
            threads.append(thread)

    acceptor = threading.Thread(target=accept, daemon=True)
    acceptor.start()
    try:
        yield server
    finally:
        stopping.set()
        acceptor.join(timeout=2)
        listener.close()
        for thread in threads:
            thread.join(timeout=2)


def answer_ok(conn: RawConn, body: bytes = b"ok", extra: bytes = b"") -> None:
    """Answer every request on the connection with 200 and `body` (keep-alive)."""
    while conn.read_request() is not None:
        conn.send(b"HTTP/1.1 200 OK\r\n%sContent-Length: %d\r\n\r\n%s" % (extra, len(body), body))
