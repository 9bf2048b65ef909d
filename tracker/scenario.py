"""The validated, frozen description of one run: what to request, at what load, watching what.

Built by the CLI from flags (and, later, from scenario TOML files); read by
`tracker.runner` and `tracker.driver`. Validation happens here, before a run starts,
so bad input never costs a stored run.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import Any, Literal
from urllib.parse import urlsplit

from tracker.errors import UsageError

LoadModel = Literal["open", "closed"]
StreamMode = Literal["sse"]
_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")


@dataclass(frozen=True)
class RequestSpec:
    """One kind of request the driver sends."""

    method: str = "GET"
    path: str = "/"
    body: Any = None
    headers: tuple[tuple[str, str], ...] = ()
    timeout_s: float = 60.0
    stream: StreamMode | None = None


@dataclass(frozen=True)
class LoadSpec:
    """How requests are issued: open model (rate) or closed model (users)."""

    model: LoadModel
    duration_s: float
    rate: float | None = None
    users: int | None = None
    warmup_s: float = 0.0
    arrival: Literal["constant"] = "constant"


@dataclass(frozen=True)
class TargetSpec:
    """Which server process the probes watch; at most one field is set."""

    pid: int | None = None
    name: str | None = None
    launch: tuple[str, ...] | None = None


@dataclass(frozen=True)
class Scenario:
    """Everything one run needs, immutable once validated."""

    name: str
    base_url: str
    request: RequestSpec
    load: LoadSpec
    target: TargetSpec | None = None
    probe_interval_s: float = 0.25
    tags: tuple[str, ...] = field(default=())

    @property
    def url(self) -> str:
        return self.base_url.rstrip("/") + self.request.path

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready copy with header values redacted (they may carry secrets)."""
        data = asdict(self)
        data["request"]["headers"] = [[k, "<redacted>"] for k, _ in self.request.headers]
        return data

    def identity(self) -> str:
        """A stable key: runs with equal identity are comparable."""
        key = {
            "url": self.url,
            "method": self.request.method,
            "body": self.request.body,
            "stream": self.request.stream,
            "load": asdict(self.load),
        }
        digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()
        return digest[:16]


def validate_url(url: str) -> str:
    """Return the URL if it is an absolute http(s) URL, else raise a UsageError."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UsageError(f"--url: {url!r} is not an http(s) URL; use e.g. http://127.0.0.1:8000")
    try:
        _ = parts.port
    except ValueError as exc:
        raise UsageError(f"--url: bad port in {url!r}: {exc}") from None
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
) -> Scenario:
    """Validate ad-hoc `run --url` flags into a Scenario.

    A path in the URL is used unless `path` is given. Raises UsageError on bad input.
    """
    validate_url(url)
    parts = urlsplit(url)
    base = f"{parts.scheme}://{parts.netloc}"
    request_path = path if path is not None else (parts.path or "/")
    if parts.query and path is None:
        request_path += "?" + parts.query
    if not request_path.startswith("/"):
        raise UsageError(f"--path: {request_path!r} must start with '/'")
    method = (method or ("POST" if body is not None else "GET")).upper()
    if method not in _METHODS:
        raise UsageError(
            f"--method: unknown HTTP method {method!r}; use one of {', '.join(_METHODS)}"
        )
    if rate is not None and users is not None:
        raise UsageError("give either --rate (open model) or --users (closed model), not both")
    if rate is None and users is None:
        users = 1
    if rate is not None and not rate > 0:
        raise UsageError(f"--rate: must be a positive number of requests per second, got {rate}")
    if users is not None and users < 1:
        raise UsageError(f"--users: must be at least 1, got {users}")
    if duration_s <= 0:
        raise UsageError("--duration: must be longer than 0s, e.g. 30s")
    if warmup_s >= duration_s:
        raise UsageError("--warmup: must be shorter than --duration")
    if timeout_s <= 0:
        raise UsageError("--timeout: must be longer than 0s")
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
    )
    request = RequestSpec(
        method=method, path=request_path, body=parsed_body, timeout_s=timeout_s, stream=stream
    )
    return Scenario(
        name=name or f"{method} {parts.netloc}{request_path}",
        base_url=base,
        request=request,
        load=load,
        target=target,
        probe_interval_s=probe_interval_s,
    )
