"""A small, well-behaved HTTP app on loopback for driver tests (keep-alive, known timings).

Routes: `/ok`; `/echo` (returns the JSON body, the request headers and the query); `/slow?ms=N`;
`/stall-once?after=N` (the N-th request stalls 1 s, every other answers at once);
`/status/{code}`; `/sse?n=N[&error=1][&usage=0]` (N OpenAI completion chunks, then usage
unless usage=0, and [DONE]; or an in-band error event); `/count` (requests per route,
and how many client ports — connections — `/sse` has seen).
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route


def _app() -> Starlette:
    seen: Counter[str] = Counter()
    ports: set[int] = set()

    async def ok(_: Request) -> Response:
        seen["ok"] += 1
        return PlainTextResponse("ok")

    async def echo(request: Request) -> Response:
        seen["echo"] += 1
        raw = await request.body()
        body: Any = None
        if raw:
            try:
                body = await request.json()
            except ValueError:
                body = raw.decode()
        return JSONResponse(
            {"body": body, "headers": dict(request.headers), "query": dict(request.query_params)}
        )

    async def slow(request: Request) -> Response:
        seen["slow"] += 1
        await asyncio.sleep(int(request.query_params.get("ms", "100")) / 1000)
        return PlainTextResponse("slow")

    async def stall_once(request: Request) -> Response:
        seen["stall"] += 1
        if seen["stall"] == int(request.query_params.get("after", "10")):
            await asyncio.sleep(1.0)
        return PlainTextResponse("ok")

    async def status(request: Request) -> Response:
        seen["status"] += 1
        return PlainTextResponse("status", status_code=int(request.path_params["code"]))

    async def sse(request: Request) -> Response:
        seen["sse"] += 1
        if request.client is not None:
            ports.add(request.client.port)
        n = int(request.query_params.get("n", "5"))
        fail = request.query_params.get("error") == "1"
        usage = request.query_params.get("usage") != "0"

        async def events() -> AsyncIterator[str]:
            for i in range(n):
                yield "data: " + json.dumps({"choices": [{"index": 0, "text": f" t{i}"}]}) + "\n\n"
                await asyncio.sleep(0.005)
            if fail:
                yield 'data: {"error": {"message": "engine died", "code": 500}}\n\n'
                return
            if usage:
                yield f'data: {{"choices": [], "usage": {{"completion_tokens": {n}}}}}\n\n'
            yield "data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    async def count(_: Request) -> Response:
        return JSONResponse({**seen, "client_ports": len(ports)})

    return Starlette(
        routes=[
            Route("/ok", ok),
            Route("/echo", echo, methods=["GET", "POST"]),
            Route("/slow", slow),
            Route("/stall-once", stall_once),
            Route("/status/{code:int}", status, methods=["GET", "POST"]),
            Route("/sse", sse, methods=["GET", "POST"]),
            Route("/count", count),
        ]
    )


@contextmanager
def running_sample_app() -> Iterator[str]:
    """Serve a fresh app on a free loopback port in a thread; yield its base URL."""
    # The server is handed the socket bound here: a port found free, closed, then bound
    # again by uvicorn could be taken by another process in between.
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        _app(), host="127.0.0.1", port=port, log_level="warning", lifespan="off"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the test app did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()
