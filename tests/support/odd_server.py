"""A deliberately misbehaving HTTP server on loopback, for the driver's error paths.

Paths: `/ok` answers at once; `/trickle` sends headers then one byte every 200 ms (for
at most 20 s); `/garbage-sse` streams a malformed SSE event; `/reset` closes the
connection without answering.
"""

from __future__ import annotations

import socket
import socketserver
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager


class _Handler(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        sock: socket.socket = self.request
        sock.settimeout(5)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(4096)
            if not chunk:
                return
            data += chunk
        path = data.split(b" ", 2)[1].decode()
        try:
            if path == "/reset":
                sock.setsockopt(
                    socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00"
                )
            elif path == "/trickle":
                sock.sendall(
                    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 1000\r\n\r\n"
                )
                deadline = time.monotonic() + 20
                while time.monotonic() < deadline:
                    sock.sendall(b"x")
                    time.sleep(0.2)
            elif path == "/garbage-sse":
                body = b'data: {"choices": [{"text": "a"}]}\n\ndata: {"choices": [\n\n'
                head = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                sock.sendall(head + b"Content-Length: %d\r\n\r\n" % len(body) + body)
            else:
                sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        except OSError:
            return


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


@contextmanager
def running_odd_server() -> Iterator[str]:
    """Yield the base URL of a fresh odd server; shut it down afterwards."""
    server = _Server(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
