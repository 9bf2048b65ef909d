"""httpx on perfsleuth's pools: `httpx.AsyncClient(transport=HttpxTransport())`."""

from __future__ import annotations

import asyncio
import gzip
import socket
import time

import httpx
import pytest
from support.raw_http import RawConn, running_raw_server
from support.sample_app import running_sample_app

from tracker.transport.httpx_adapter import HttpxTransport


def test_requests_responses_and_streams_through_httpx():
    with running_sample_app() as base:

        async def main() -> None:
            async with httpx.AsyncClient(base_url=base, transport=HttpxTransport()) as client:
                ok = await client.get("/ok")
                assert (ok.status_code, ok.text, ok.http_version) == (200, "ok", "HTTP/1.1")
                echo = await client.post("/echo", json={"n": 1}, headers={"X-Test": "yes"})
                assert echo.json()["body"] == {"n": 1}
                assert echo.json()["headers"]["x-test"] == "yes"
                assert (await client.get("/status/503")).status_code == 503
                async with client.stream("GET", "/sse", params={"n": 5}) as resp:
                    lines = [line async for line in resp.aiter_lines()]
                    times = resp.extensions["chunk_times"]
                assert "data: [DONE]" in lines
                assert sum(line.startswith("data: {") for line in lines) == 6  # 5 + usage
                assert len(times) >= 2 and times == sorted(times)

        asyncio.run(main())


def test_many_concurrent_requests_share_a_bounded_pool():
    with running_sample_app() as base:

        async def main() -> list[int]:
            transport = HttpxTransport(max_connections=8)
            async with httpx.AsyncClient(base_url=base, transport=transport) as client:
                replies = await asyncio.gather(*(client.get("/ok") for _ in range(64)))
                return [r.status_code for r in replies]

        assert asyncio.run(main()) == [200] * 64


def test_httpx_decodes_compressed_bodies_itself():
    body = gzip.compress(b"hello " * 100)

    def script(conn: RawConn) -> None:
        conn.read_request()
        conn.send(
            b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: %d\r\n\r\n%s"
            % (len(body), body)
        )

    with running_raw_server(script) as server:

        async def main() -> str:
            async with httpx.AsyncClient(transport=HttpxTransport()) as client:
                return (await client.get(server.url + "/")).text

        assert asyncio.run(main()) == "hello " * 100
    assert "gzip" in server.requests[0].headers["accept-encoding"]


def test_failures_surface_as_httpx_exceptions():
    def script(conn: RawConn) -> None:
        conn.read_request()
        conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nabc")
        time.sleep(1.0)

    with running_raw_server(script) as server, socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        refused = f"http://127.0.0.1:{unused.getsockname()[1]}/"

        async def main() -> None:
            async with httpx.AsyncClient(transport=HttpxTransport(), timeout=0.3) as client:
                with pytest.raises(httpx.ConnectError):
                    await client.get(refused)
                with pytest.raises(httpx.ReadTimeout):
                    await client.get(server.url + "/")

        asyncio.run(main())
