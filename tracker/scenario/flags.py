"""`run --url ...` flags -> Scenario, with the same checks a scenario file gets.

Used by the CLI. An ad-hoc run gets its name and identity from its URL, method, body
and load settings, so repeating the same command makes comparable runs.
"""

from __future__ import annotations

import json
import resource
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

from tracker.errors import UsageError
from tracker.scenario.model import (
    Arrival,
    LoadSpec,
    OnFull,
    RequestSpec,
    Scenario,
    StreamMode,
    TargetSpec,
)
from tracker.scenario.secrets import redact_query, shown_url, without_userinfo

METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")
# Far beyond what one driver can send; anything larger is a typo (or `inf`).
MAX_RATE = 1_000_000.0
# Faster sampling costs the target more than it tells (and the sampler cannot keep it).
MIN_PROBE_INTERVAL_S = 0.05
MAX_WORKERS = 64


def check_workers(workers: int) -> int:
    """`--workers`, validated for both the flag and its use beside a scenario file."""
    if not 1 <= workers <= MAX_WORKERS:
        raise UsageError(f"--workers: must be between 1 and {MAX_WORKERS}, got {workers}")
    return workers


#: File descriptors a driver process keeps for everything but its connections (the store,
#: probes reading /proc, py-spy's pipes, logs, the screen's socket).
RESERVED_FDS = 256


def connection_limit(workers: int = 1) -> int:
    """How many requests the driver can hold open at once: each is a socket, and each
    driver process may hold `ulimit -n` file descriptors, less `RESERVED_FDS`."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft <= 0:
        soft = 1 << 20
    return max(1, soft - RESERVED_FDS) * max(1, workers)


def check_concurrency(what: str, value: int, workers: int = 1) -> None:
    """Fail, exit 2, when `value` concurrent requests need more sockets than the machine
    lets the driver hold: otherwise they fail to connect, or the run never starts."""
    limit = connection_limit(workers)
    if value > limit:
        per_process = -(-value // max(1, workers)) + RESERVED_FDS
        raise UsageError(
            f"{what}: {value} concurrent requests need {value} connections, but the driver "
            f"can hold {limit} (ulimit -n, less {RESERVED_FDS} per process); raise the limit "
            f"(ulimit -n {per_process}), add --workers, or ask for fewer"
        )


def validate_url(url: str, *, what: str = "--url", secrets: Iterable[str] = ()) -> str:
    """Return the URL if it is an absolute http(s) URL, else raise a UsageError (which
    shows the URL without its credentials and `secrets`)."""
    shown = shown_url(url, secrets)
    try:
        parts = urlsplit(url)
    except ValueError as exc:
        raise UsageError(f"{what}: {shown!r} is not a valid URL ({exc})") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UsageError(f"{what}: {shown!r} is not an http(s) URL; use e.g. http://127.0.0.1:8000")
    try:
        _ = parts.port
    except ValueError:
        raise UsageError(f"{what}: bad port in {shown!r}: a number 1-65535 is needed") from None
    return url


def build_scenario(
    *,
    url: str,
    rate: float | None,
    users: int | None,
    duration_s: float,
    warmup_s: float = 0.0,
    method: str | None = None,
    path: str | None = None,
    body: str | None = None,
    stream: StreamMode | None = None,
    timeout_s: float = 60.0,
    target: TargetSpec | None = None,
    name: str | None = None,
    probe_interval_s: float = 0.25,
    arrival: Arrival = "constant",
    seed: int = 0,
    max_inflight: int | None = None,
    on_full: OnFull = "queue",
    workers: int = 1,
) -> Scenario:
    """Validate ad-hoc `run --url` flags into a Scenario.

    A path in the URL is used unless `path` is given. Raises UsageError on bad input.
    """
    validate_url(url)
    url, authorization = without_userinfo(url)
    parts = urlsplit(url)
    base = f"{parts.scheme}://{parts.netloc}"
    request_path = path if path is not None else (parts.path or "/")
    if parts.query and path is None:
        request_path += "?" + parts.query
    if not request_path.startswith("/"):
        raise UsageError(f"--path: {request_path!r} must start with '/'")
    if method is not None and not method.strip():
        raise UsageError(f"--method: empty; use one of {', '.join(METHODS)}")
    method = (method or ("POST" if body is not None else "GET")).upper()
    if method not in METHODS:
        raise UsageError(
            f"--method: unknown HTTP method {method!r}; use one of {', '.join(METHODS)}"
        )
    if rate is not None and users is not None:
        raise UsageError("give either --rate (open model) or --users (closed model), not both")
    if rate is None and users is None:
        users = 1
    if rate is not None and not 0 < rate <= MAX_RATE:
        raise UsageError(
            f"--rate: must be a number of requests per second in (0, {MAX_RATE:g}], got {rate}"
        )
    if users is not None and users < 1:
        raise UsageError(f"--users: must be at least 1, got {users}")
    if users is not None:
        check_concurrency("--users", users, workers)
    if duration_s <= 0:
        raise UsageError("--duration: must be longer than 0s, e.g. 30s")
    if warmup_s >= duration_s:
        raise UsageError("--warmup: must be shorter than --duration")
    if timeout_s <= 0:
        raise UsageError("--timeout: must be longer than 0s")
    if max_inflight is not None and max_inflight < 1:
        raise UsageError(f"--max-inflight: must be at least 1, got {max_inflight}")
    if max_inflight is not None and rate is None:
        raise UsageError("--max-inflight: applies to the open model; give --rate too")
    if max_inflight is not None:
        check_concurrency("--max-inflight", max_inflight, workers)
    check_workers(workers)
    parsed_body: Any = None
    if body is not None:
        try:
            parsed_body = json.loads(body)
        except json.JSONDecodeError as exc:
            raise UsageError(f"--body: not valid JSON ({exc.msg} at column {exc.colno})") from None
    load = LoadSpec(
        model="open" if rate is not None else "closed",
        duration_s=duration_s,
        rate=rate,
        users=users,
        warmup_s=warmup_s,
        arrival=arrival,
        seed=seed,
        max_inflight=max_inflight,
        on_full=on_full,
        workers=workers,
    )
    request = RequestSpec(
        method=method,
        path=request_path,
        body=parsed_body,
        headers=(authorization,) if authorization else (),
        timeout_s=timeout_s,
        stream=stream,
    )
    return Scenario(
        name=name or f"{method} {parts.netloc}{redact_query(request_path)}",
        base_url=base,
        requests=(request,),
        load=load,
        target=target,
        probe_interval_s=probe_interval_s,
    )
