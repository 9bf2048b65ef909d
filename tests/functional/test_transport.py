"""The HTTP/1.1 client under the driver, against scripted loopback servers.

Every test runs on both event loops the driver can use (asyncio's and uvloop's): the
two deliver EOF and connection loss differently, and framing must not care.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import socket
import ssl
import subprocess
import threading
import time
import zlib
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from support.raw_http import RawConn, answer_ok, running_raw_server

import tracker.transport.pool as pool_module
from tracker.driver.loop import run as run_loop
from tracker.transport import (
    Client,
    ConnectError,
    ConnectionClosed,
    Exchange,
    Origin,
    Pool,
    ProtocolError,
    encode_request,
)

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


@pytest.fixture(params=["asyncio", "uvloop"])
def on_loop(request: pytest.FixtureRequest) -> Callable[[Awaitable[Any]], Any]:
    def run(coro: Awaitable[Any]) -> Any:
        async def main() -> Any:
            return await coro

        return run_loop(main(), request.param)

    return run


def _get(pool: Pool, target: str = "/", method: str = "GET", body: bytes | None = None) -> bytes:
    return encode_request(method, target, pool.origin.host_header, (), body)


async def _fetch(pool: Pool, target: str = "/", method: str = "GET") -> tuple[int, bytes]:
    async with pool.exchange(method, _get(pool, target, method), connect_timeout=5) as resp:
        return resp.status, await resp.read()


def _chunk(data: bytes, ext: bytes = b"") -> bytes:
    return b"%x%s\r\n%s\r\n" % (len(data), ext, data)


def test_keep_alive_reuses_one_connection(on_loop):
    with running_raw_server(answer_ok) as server:

        async def main() -> list[tuple[int, bytes]]:
            async with Client() as client:
                pool = client.pool(Origin.of(server.url))
                results = [await _fetch(pool) for _ in range(5)]
                assert pool.opened == 1
                return results

        assert on_loop(main()) == [(200, b"ok")] * 5
    assert server.connections == 1


def test_chunked_sse_lines_split_across_chunks_and_reads_are_whole_and_timed(on_loop):
    gap = 0.06

    def script(conn: RawConn) -> None:
        assert conn.read_request() is not None
        conn.send(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n",
            _chunk(b"data: o", ext=b";note=split"),
            _chunk(b"ne\r"),
            _chunk(b"\n\r\ndata: two\n\ndata: [DO"),
            _chunk(b"NE]\n\n"),
            b"0\r\n\r\n",  # the end of the message comes after [DONE]
            gap_s=gap,
        )
        answer_ok(conn)

    with running_raw_server(script) as server:

        async def main() -> tuple[list[tuple[str, float]], float, tuple[int, bytes]]:
            async with Client() as client:
                pool = client.pool(Origin.of(server.url))
                async with pool.exchange("GET", _get(pool), connect_timeout=5) as resp:
                    lines = [item async for item in resp.lines()]
                    head_at = resp.head_at
                again = await _fetch(pool)
                return lines, head_at, again

        lines, head_at, again = on_loop(main())
    assert [text for text, _ in lines] == ["data: one", "", "data: two", "", "data: [DONE]", ""]
    times = dict(lines)
    # "data: one" ended with the third piece, two gaps after the head.
    assert times["data: one"] - head_at >= 2 * gap * 0.9
    assert times["data: [DONE]"] - times["data: two"] >= gap * 0.9
    # The connection went back to the pool only after the terminal chunk, and served again.
    assert again == (200, b"ok")
    assert server.connections == 1


def test_body_without_length_ends_at_eof_and_is_not_pooled(on_loop):
    def script(conn: RawConn) -> None:
        conn.read_request()
        conn.send(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nfirst ", b"second", gap_s=0.05)
        conn.close()

    with running_raw_server(script) as server:

        async def main() -> tuple[tuple[int, bytes], int]:
            async with Client() as client:
                pool = client.pool(Origin.of(server.url))
                result = await _fetch(pool)
                return result, pool.open_connections

        assert on_loop(main()) == ((200, b"first second"), 0)


def test_head_response_ends_at_its_head_and_the_connection_serves_again(on_loop):
    def script(conn: RawConn) -> None:
        while (request := conn.read_request()) is not None:
            if request.method == "HEAD":
                conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n")
            else:
                conn.send(OK)

    with running_raw_server(script) as server:

        async def main() -> list[tuple[int, bytes]]:
            async with Client() as client:
                pool = client.pool(Origin.of(server.url))
                return [await _fetch(pool, method="HEAD"), await _fetch(pool)]

        assert on_loop(main()) == [(200, b""), (200, b"ok")]
    assert server.connections == 1


def test_interim_1xx_responses_are_skipped(on_loop):
    def script(conn: RawConn) -> None:
        conn.read_request()
        conn.send(b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>\r\n\r\n", OK, gap_s=0.02)

    with running_raw_server(script) as server:

        async def main() -> tuple[int, bytes, str | None]:
            async with Client() as client:
                pool = client.pool(Origin.of(server.url))
                async with pool.exchange("GET", _get(pool), connect_timeout=5) as resp:
                    return resp.status, await resp.read(), resp.header("link")

        assert on_loop(main()) == (200, b"ok", None)


def test_a_malformed_response_is_a_protocol_error(on_loop):
    def script(conn: RawConn) -> None:
        conn.read_request()
        conn.send(b"HTTP/1.1 abc nonsense\r\n\r\n")

    with running_raw_server(script) as server:

        async def main() -> None:
            async with Client() as client:
                await _fetch(client.pool(Origin.of(server.url)))

        with pytest.raises(ProtocolError):
            on_loop(main())


def test_a_body_cut_short_is_a_protocol_error(on_loop):
    def script(conn: RawConn) -> None:
        conn.read_request()
        conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")
        conn.close()

    with running_raw_server(script) as server:

        async def main() -> None:
            async with Client() as client:
                await _fetch(client.pool(Origin.of(server.url)))

        with pytest.raises(ConnectionClosed) as caught:
            on_loop(main())
        assert not caught.value.nothing_received


def test_an_idle_connection_the_server_closed_is_not_reused(on_loop):
    def script(conn: RawConn) -> None:
        conn.read_request()
        conn.send(OK)
        conn.close()  # a keep-alive timeout, as nginx and uvicorn have

    with running_raw_server(script) as server:

        async def main() -> list[tuple[int, bytes]]:
            async with Client() as client:
                pool = client.pool(Origin.of(server.url))
                first = await _fetch(pool)
                await asyncio.sleep(0.1)
                return [first, await _fetch(pool)]

        assert on_loop(main()) == [(200, b"ok")] * 2
    assert server.connections == 2


def _close_after_reading_the_second_request(conn: RawConn) -> None:
    if conn.index > 0:
        answer_ok(conn)
        return
    conn.read_request()
    conn.send(OK)
    conn.read_request()  # read, never answered: the race a keep-alive timeout makes
    conn.close()


@pytest.mark.parametrize(("method", "retried"), [("GET", True), ("POST", False)])
def test_only_idempotent_requests_are_resent_when_a_reused_connection_drops(
    on_loop, method, retried
):
    with running_raw_server(_close_after_reading_the_second_request) as server:

        async def main() -> tuple[int, bytes]:
            async with Client() as client:
                pool = client.pool(Origin.of(server.url))
                await _fetch(pool)
                return await _fetch(pool, method=method)

        if retried:
            assert on_loop(main()) == (200, b"ok")
            assert server.connections == 2
        else:
            with pytest.raises(ConnectionClosed):
                on_loop(main())
            assert server.connections == 1


def test_an_abandoned_response_closes_its_connection(on_loop):
    def script(conn: RawConn) -> None:
        while (request := conn.read_request()) is not None:
            if request.target == "/trickle":
                conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\nxxxx")
                time.sleep(1.0)
                return
            conn.send(OK)

    with running_raw_server(script) as server:

        async def main() -> tuple[int, tuple[int, bytes]]:
            async with Client() as client:
                pool = client.pool(Origin.of(server.url))
                with pytest.raises(TimeoutError):
                    async with asyncio.timeout(0.2):
                        await _fetch(pool, "/trickle")
                left_open = pool.open_connections
                return left_open, await _fetch(pool, "/after")

        # The rest of the trickled body was never read as the next response.
        assert on_loop(main()) == (0, (200, b"ok"))
    assert server.connections == 2


def test_gzip_and_deflate_bodies_are_decoded(on_loop):
    text = b"data: " + b"token " * 200 + b"\n\n"
    bodies = {
        "/gzip": (b"gzip", gzip.compress(text)),
        "/deflate": (b"deflate", zlib.compress(text)),
        "/raw-deflate": (b"deflate", zlib.compress(text, wbits=-15)),
    }

    def script(conn: RawConn) -> None:
        while (request := conn.read_request()) is not None:
            coding, body = bodies[request.target]
            conn.send(
                b"HTTP/1.1 200 OK\r\nContent-Encoding: %s\r\nTransfer-Encoding: chunked\r\n\r\n"
                % coding,
                _chunk(body[:7]),
                _chunk(body[7:]),
                b"0\r\n\r\n",
            )

    with running_raw_server(script) as server:

        async def main() -> list[bytes]:
            async with Client() as client:
                pool = client.pool(Origin.of(server.url))
                return [(await _fetch(pool, target))[1] for target in bodies]

        assert on_loop(main()) == [text] * 3


def test_the_connection_cap_makes_requests_wait_for_a_free_connection(on_loop):
    def script(conn: RawConn) -> None:
        while conn.read_request() is not None:
            time.sleep(0.15)
            conn.send(OK)

    with running_raw_server(script) as server:

        async def main() -> tuple[list[tuple[int, bytes]], float]:
            async with Client(max_connections=2) as client:
                pool = client.pool(Origin.of(server.url))
                started = time.monotonic()
                results = await asyncio.gather(*(_fetch(pool) for _ in range(6)))
                return results, time.monotonic() - started

        results, took = on_loop(main())
    assert results == [(200, b"ok")] * 6
    assert server.connections == 2
    assert took >= 3 * 0.15 * 0.9


def test_a_timeout_says_whether_it_struck_waiting_for_a_connection_or_the_answer(on_loop):
    def script(conn: RawConn) -> None:
        while conn.read_request() is not None:
            time.sleep(0.5)
            conn.send(OK)

    with running_raw_server(script) as server:

        async def main() -> list[str]:
            async with Client(max_connections=1) as client:
                pool = client.pool(Origin.of(server.url))
                exchanges = [pool.exchange("GET", _get(pool), connect_timeout=5) for _ in "ab"]

                async def use(exchange: Exchange, timeout_s: float) -> None:
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(timeout_s), exchange as resp:
                            await resp.read()

                # The waiting one gives up first: the connection is still busy then.
                await asyncio.gather(use(exchanges[0], 0.4), use(exchanges[1], 0.2))
                return [e.stage for e in exchanges]

        # The first was sent and waited for its answer; the second never got a connection.
        assert on_loop(main()) == ["exchange", "wait"]


def test_a_refused_connection_is_a_connect_error(on_loop):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, never listening: connections are refused

        async def main() -> None:
            async with Client() as client:
                await _fetch(client.pool(Origin("http", "127.0.0.1", port)))

        with pytest.raises(ConnectError, match="cannot connect"):
            on_loop(main())


def test_request_bytes_on_the_wire(on_loop):
    with running_raw_server(answer_ok) as server:

        async def main() -> None:
            async with Client() as client:
                pool = client.pool(Origin.of(server.url))
                data = encode_request(
                    "POST",
                    "/v1/x?q=1",
                    pool.origin.host_header,
                    [("Authorization", "Bearer k"), ("Content-Length", "999")],
                    b'{"a":1}',
                    content_type="application/json",
                )
                async with pool.exchange("POST", data, connect_timeout=5) as resp:
                    await resp.read()

        on_loop(main())
    (request,) = server.requests
    assert (request.method, request.target, request.body) == ("POST", "/v1/x?q=1", b'{"a":1}')
    assert request.headers["host"] == f"127.0.0.1:{server.port}"
    assert request.headers["content-length"] == "7"  # the transport's, not the caller's
    assert request.headers["content-type"] == "application/json"
    assert request.headers["authorization"] == "Bearer k"
    assert request.headers["user-agent"].startswith("perfsleuth/")


def test_ipv6_loopback_gets_a_bracketed_host_header(on_loop):
    if not socket.has_ipv6:
        pytest.skip("no IPv6 on this machine")
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError:
        pytest.skip("no IPv6 loopback on this machine")
    with running_raw_server(answer_ok, host="::1") as server:

        async def main() -> tuple[int, bytes]:
            async with Client() as client:
                return await _fetch(client.pool(Origin.of(server.url)))

        assert on_loop(main()) == (200, b"ok")
    assert server.requests[0].headers["host"] == f"[::1]:{server.port}"


def test_a_large_body_read_slowly_arrives_whole(on_loop):
    body = bytes(range(256)) * (8 * 4096)  # 8 MiB, above the flow-control high-water mark

    def script(conn: RawConn) -> None:
        conn.read_request()
        conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body), body)

    with running_raw_server(script) as server:

        async def main() -> bytes:
            async with Client() as client:
                pool = client.pool(Origin.of(server.url))
                async with pool.exchange("GET", _get(pool), connect_timeout=5) as resp:
                    await asyncio.sleep(0.3)  # let the socket fill the buffer first
                    return await resp.read()

        assert on_loop(main()) == body


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    where = tmp_path_factory.mktemp("tls")
    cert, key = where / "cert.pem", where / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


def test_https_verifies_the_server_certificate(on_loop, tls_files):
    cert, key = tls_files
    server_side = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_side.load_cert_chain(cert, key)
    with running_raw_server(answer_ok, tls=server_side) as server:
        origin = Origin("https", "127.0.0.1", server.port)
        trusting = ssl.create_default_context(cafile=str(cert))

        async def fetch(context: ssl.SSLContext | None) -> tuple[int, bytes]:
            async with Client(ssl_context=context) as client:
                return await _fetch(client.pool(origin))

        assert on_loop(fetch(trusting)) == (200, b"ok")
        # The system trust store does not know the self-signed certificate.
        with pytest.raises(ConnectError, match="certificate"):
            on_loop(fetch(None))


def test_closing_the_client_closes_idle_connections(on_loop):
    closed = threading.Event()

    def script(conn: RawConn) -> None:
        answer_ok(conn)
        closed.set()  # read_request saw the client's close

    with running_raw_server(script) as server:

        async def main() -> None:
            async with Client() as client:
                await _fetch(client.pool(Origin.of(server.url)))

        on_loop(main())
        assert closed.wait(2)


def test_connections_opened_for_a_burst_are_closed_once_idle(on_loop, monkeypatch):
    monkeypatch.setattr(pool_module, "IDLE_TIMEOUT_S", 0.2)
    with running_raw_server(answer_ok) as server:

        async def main() -> tuple[int, int, int]:
            async with Client() as client:
                pool = client.pool(Origin.of(server.url))
                await asyncio.gather(*(_fetch(pool) for _ in range(8)))  # a burst
                after_burst = pool.open_connections
                await asyncio.sleep(0.3)
                for _ in range(3):  # a steady trickle on one warm connection
                    await _fetch(pool)
                return after_burst, pool.open_connections, pool.opened

        after_burst, after_idle, opened = on_loop(main())
    assert after_burst == 8
    assert after_idle == 1  # the seven cold ones were closed, the warm one kept
    assert opened == 8  # and the trickle reused it rather than opening another
