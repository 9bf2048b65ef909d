"""Send one request and time it: send, first content chunk, every chunk, end.

Used by `tracker.driver.engine`. Never raises for a failed request: every failure
becomes an `Outcome` with an error class (connect, timeout, http_4xx, http_5xx,
protocol, other), so the driver never crashes on what a server does.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field

from tracker.driver.checks import failed_check, needs_body
from tracker.driver.extract import chunk_text, reply_text
from tracker.driver.prepared import WireRequest
from tracker.driver.sse import ProtocolError as SSEProtocolError
from tracker.driver.sse import completion_tokens_of, parse_data_line
from tracker.transport import ConnectError, Pool, ProtocolError, Response


@dataclass(slots=True)
class Outcome:
    """Timings (time.monotonic seconds) and result of one request."""

    intended: float
    sent: float
    name: str = ""
    ended: float = 0.0
    status: int | None = None
    error: str | None = None
    first_chunk: float | None = None
    chunk_times: list[float] = field(default_factory=list)
    output_tokens: int | None = None
    tokens_from_usage: bool = False
    # Kept only when asked (`capture`): for extraction and chat history.
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    text: str = ""

    @property
    def ok(self) -> bool:
        return self.error is None


def classify_exception(exc: BaseException) -> str:
    """Map a transport exception to the error classes of the run JSON contract."""
    if isinstance(exc, ConnectError):
        return "connect"
    if isinstance(exc, ProtocolError | SSEProtocolError | UnicodeDecodeError):
        return "protocol"
    if isinstance(exc, OSError):
        return "protocol"  # reset or broken pipe mid-exchange
    return "other"


def _status_error(status: int) -> str | None:
    if status >= 500:
        return "http_5xx"
    if status >= 400:
        return "http_4xx"
    return None


async def execute(
    pool: Pool,
    wire: WireRequest,
    intended: float,
    *,
    capture: bool = False,
    inband_errors: bool = True,
) -> Outcome:
    """Send `wire` now; `intended` is when the schedule wanted it sent.

    With `capture`, the outcome also keeps the body, the headers and the reply text
    (session steps extract values from them and carry the chat history forward). Without
    `inband_errors`, an event carrying an `error` is data, not a failed stream (a task's
    status events say `failed` that way; the session's `poll.fail` judges them).
    """
    spec = wire.spec
    checks = spec.checks
    explicit_status = any(c.status for c in checks)
    keep_body = capture or needs_body(checks)
    out = Outcome(intended=intended, sent=time.monotonic(), name=spec.name)
    exchange = None
    try:
        data = wire.data if wire.data is not None else wire.encode(pool.origin.host_header)
        exchange = pool.exchange(spec.method, data, connect_timeout=spec.timeout_s)
        # The deadline bounds the whole request (connecting, waiting, reading), so a
        # server that trickles bytes cannot hold a run open forever.
        async with asyncio.timeout(spec.timeout_s), exchange as response:
            status = response.status
            out.status = status
            out.error = None if explicit_status else _status_error(status)
            body = b""
            if out.error is None and spec.stream == "sse":
                body = await _read_sse(response, out, keep_body, inband_errors)
            else:
                body = await response.read()
                if out.error is None:
                    _read_json_tokens(response, body, out)
            if out.error is None and checks and failed_check(checks, status, body) is not None:
                out.error = "check_failed"
            if capture:
                out.body = body
                out.headers = response.headers()
                out.text = _reply(body, streamed=spec.stream == "sse")
    except TimeoutError:
        # Opening a connection that does not complete in time is a connect failure.
        out.error = "connect" if exchange is not None and exchange.stage == "connect" else "timeout"
    except Exception as exc:  # noqa: BLE001 - every failure is classified, none escapes
        out.error = classify_exception(exc)
    out.ended = time.monotonic()
    return out


async def _read_sse(
    response: Response, out: Outcome, keep_body: bool, inband_errors: bool = True
) -> bytes:
    chunks = out.chunk_times
    kept: list[str] = []
    events = 0
    done = False
    async for line, arrived in response.lines():
        if done:
            # Read to the end of the body so the connection goes back to the pool.
            continue
        if keep_body:
            kept.append(line)
        chunk = parse_data_line(line)
        if chunk is None:
            continue
        events += 1
        if chunk.error is not None and inband_errors:
            out.error = "stream_error"
            done = True
            continue
        if chunk.content:
            if out.first_chunk is None:
                out.first_chunk = arrived
            chunks.append(arrived)
        if chunk.completion_tokens is not None:
            out.output_tokens = chunk.completion_tokens
            out.tokens_from_usage = True
        done = chunk.done
    if events == 0:
        out.error = "protocol"  # a stream was promised and none came
    if out.output_tokens is None:
        out.output_tokens = len(chunks)
    return "\n".join(kept).encode() if keep_body else b""


def _reply(body: bytes, *, streamed: bool) -> str:
    """The assistant's reply, read after the response so it costs the timings nothing."""
    if not streamed:
        try:
            return reply_text(json.loads(body))
        except (json.JSONDecodeError, UnicodeDecodeError):
            return ""
    parts: list[str] = []
    for line in body.decode("utf-8", "replace").split("\n"):
        if line.startswith("data:") and line[5:].strip().startswith("{"):
            try:
                parts.append(chunk_text(json.loads(line[5:])))
            except json.JSONDecodeError:
                continue
    return "".join(parts)


def _read_json_tokens(response: Response, body: bytes, out: Outcome) -> None:
    if "json" not in (response.header("content-type") or ""):
        return
    try:
        parsed = json.loads(body)
    except json.JSONDecodeError:
        out.error = "protocol"
        return
    tokens = completion_tokens_of(parsed)
    if tokens is not None:
        out.output_tokens = tokens
        out.tokens_from_usage = True
