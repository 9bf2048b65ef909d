"""The validated, frozen description of one run: what to request, at what load, judged how.

Built by `tracker.scenario.toml_file` (scenario files) and `tracker.scenario.flags`
(`run --url` flags); read by the runner and the driver. Everything here is immutable
and already checked, so the driver never meets bad input mid-run.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from tracker.scenario.secrets import redact, redact_json, redact_query, shown_url

LoadModel = Literal["open", "closed"]
Arrival = Literal["constant", "poisson"]
OnFull = Literal["queue", "drop"]
StreamMode = Literal["sse"]
JsonPath = tuple[str | int, ...]


class _Missing:
    """The "no `equals` given" marker; pickles as itself so scenarios can go to workers."""

    def __reduce__(self) -> str:
        return "_MISSING"

    def __repr__(self) -> str:
        return "<missing>"


_MISSING: Any = _Missing()


@dataclass(frozen=True)
class Check:
    """One assertion on a response; a failed check makes the request a `check_failed` error.

    Exactly one of the forms is used: `status` (allowed codes), `path` (a JSON field that
    must exist, or equal `equals`), or `contains` (a substring of the body).
    """

    status: tuple[int, ...] = ()
    path: JsonPath = ()
    path_text: str = ""
    equals: Any = _MISSING
    contains: str | None = None

    @property
    def has_equals(self) -> bool:
        return self.equals is not _MISSING

    def describe(self) -> str:
        if self.status:
            return "status in " + ",".join(map(str, self.status))
        if self.path:
            if self.has_equals:
                return f"json {self.path_text} == {self.equals!r}"
            return f"json {self.path_text} exists"
        return f"body contains {self.contains!r}"

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.status:
            out["status"] = list(self.status)
        if self.path:
            out["json"] = self.path_text
            if self.has_equals:
                out["equals"] = self.equals
        if self.contains is not None:
            out["contains"] = self.contains
        return out


@dataclass(frozen=True)
class RequestSpec:
    """One kind of request the driver sends."""

    method: str = "GET"
    path: str = "/"
    body: Any = None  # JSON body (may hold {{ }} placeholders)
    raw_body: str | None = None  # sent as-is when there is no JSON body
    headers: tuple[tuple[str, str], ...] = ()
    timeout_s: float = 60.0
    stream: StreamMode | None = None
    name: str = "default"
    weight: float = 1.0
    dataset: str | None = None
    checks: tuple[Check, ...] = ()


@dataclass(frozen=True)
class DatasetSpec:
    """A JSONL or CSV file whose rows fill a request's {{ }} placeholders."""

    name: str
    file: str
    mode: Literal["sequential", "random", "unique"] = "sequential"
    seed: int = 0


@dataclass(frozen=True)
class LoadSpec:
    """How requests are issued.

    Open model: arrivals follow a schedule (a constant `rate`, `stages` ramping between
    rates, or Gatling-style `throttle` steps), constant or Poisson; `max_inflight` caps
    concurrency, with `on_full` = queue (wait; latency still counts from the intended
    time) or drop (counted as dropped). Closed model: `users` (or `user_stages`) loop
    request -> think time, optionally paced so each iteration starts every `pacing_s`.
    """

    model: LoadModel
    duration_s: float
    rate: float | None = None
    users: int | None = None
    warmup_s: float = 0.0
    arrival: Arrival = "constant"
    seed: int = 0
    start_rate: float = 0.0
    stages: tuple[tuple[float, float], ...] = ()
    throttle: tuple[tuple[str, float, float | None], ...] = ()
    max_inflight: int | None = None
    on_full: OnFull = "queue"
    start_users: int = 0
    user_stages: tuple[tuple[float, float], ...] = ()
    think_time: tuple[float, float] | None = None
    pacing_s: float | None = None
    workers: int = 1  # driver processes sharing the schedule


@dataclass(frozen=True)
class Threshold:
    """An SLO on the run's summary, e.g. `latency_p99 <= 2000 ms` or `error_rate <= 0.05`."""

    key: str  # as written in the scenario, e.g. "ttft_p95"
    section: str  # document path: "latency_ms", "llm.ttft_ms", "requests.error_rate", ...
    stat: str | None  # "p99" for percentile sections, None for scalars
    limit: float
    bound: Literal["max", "min"] = "max"
    unit: str = "ms"

    def describe(self) -> str:
        op = "<=" if self.bound == "max" else ">="
        unit = f" {self.unit}" if self.unit else ""
        return f"{self.key} {op} {self.limit:g}{unit}"


@dataclass(frozen=True)
class GoodputSpec:
    """Per-request SLOs: a request is good when it meets every one given (vLLM's --goodput)."""

    ttft_ms: float | None = None
    tpot_ms: float | None = None
    e2e_ms: float | None = None

    def is_good(self, ttft_ms: float | None, tpot_ms: float | None, e2e_ms: float) -> bool:
        if self.ttft_ms is not None and (ttft_ms is None or ttft_ms > self.ttft_ms):
            return False
        if self.tpot_ms is not None and tpot_ms is not None and tpot_ms > self.tpot_ms:
            return False
        return self.e2e_ms is None or e2e_ms <= self.e2e_ms


@dataclass(frozen=True)
class Extraction:
    """A value taken from a response for later steps: `{{ name }}` in their templates."""

    name: str
    kind: Literal["json", "header", "regex"]
    path: JsonPath = ()  # json
    source: str = ""  # the JSON path, header name or pattern as written


@dataclass(frozen=True)
class Condition:
    """Extracted variables hold given values: every variable one of its values."""

    values: tuple[tuple[str, tuple[Any, ...]], ...]  # (variable, accepted values)

    def holds(self, variables: dict[str, Any]) -> bool:
        return all(
            name in variables and _same(variables[name], accepted) for name, accepted in self.values
        )


def _same(value: Any, accepted: tuple[Any, ...]) -> bool:
    # JSON true is not the number 1 here, as it is not in the API that sent it.
    return any((type(value) is type(a) and value == a) or _numbers(value, a) for a in accepted)


def _numbers(a: Any, b: Any) -> bool:
    numeric = (int, float)
    return (
        isinstance(a, numeric)
        and isinstance(b, numeric)
        and not isinstance(a, bool)
        and not isinstance(b, bool)
        and a == b
    )


@dataclass(frozen=True)
class PollSpec:
    """A step repeated until its task is done: an asynchronous task API's status endpoint
    (polled) or event stream (watched, reconnecting). The step before it submitted the
    task; the task's latency counts from that submission's intended send time."""

    until: Condition
    fail: Condition | None = None
    interval_s: float = 0.2
    backoff: float = 1.0  # each wait is the previous one times this
    max_interval_s: float | None = None
    max_wait_s: float = 60.0  # from the intended submission: then the task is a `timeout`
    queue_wait: Extraction | None = None  # the API's own queue wait, in milliseconds

    def wait_after(self, polls: int) -> float:
        """Seconds between the end of poll `polls` (0: the submission) and the next."""
        wait = self.interval_s * self.backoff**polls
        return min(wait, self.max_interval_s) if self.max_interval_s is not None else wait


@dataclass(frozen=True)
class SessionStep:
    """One step of a session: a named request, what to extract, and a pause after it;
    with `poll`, repeated until the task the step before it submitted is done."""

    request: str
    extract: tuple[Extraction, ...] = ()
    pause: tuple[float, float] | None = None  # seconds, [min, max]
    poll: PollSpec | None = None


@dataclass(frozen=True)
class SessionSpec:
    """A multi-turn session: every arrival (open) or iteration (closed) runs all steps.

    With `chat_history`, each chat step's `messages` are appended to the conversation so
    far (earlier user turns and the assistant's replies), as a stateful chat client does,
    so server-side context / KV-cache reuse is exercised.
    """

    steps: tuple[SessionStep, ...]
    chat_history: bool = True


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
    requests: tuple[RequestSpec, ...]
    load: LoadSpec
    target: TargetSpec | None = None
    probe_interval_s: float = 0.25
    datasets: tuple[DatasetSpec, ...] = ()
    thresholds: tuple[Threshold, ...] = ()
    goodput: GoodputSpec | None = None
    session: SessionSpec | None = None
    secrets: tuple[str, ...] = field(default=(), repr=False)  # values read from env vars
    source: str | None = None  # the scenario file, when there is one

    @property
    def request(self) -> RequestSpec:
        """The first request (the only one for `run --url`)."""
        return self.requests[0]

    @property
    def url(self) -> str:
        return self.base_url.rstrip("/") + self.request.path

    @property
    def shown_url(self) -> str:
        """`url` as it may be stored and printed: credentials and secrets redacted."""
        return shown_url(self.url, self.secrets)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready copy with secrets (sensitive headers, env values) redacted."""
        data = asdict(self)
        data.pop("secrets")
        for req, spec in zip(data["requests"], self.requests, strict=True):
            req["headers"] = redact(dict(spec.headers))
            req["path"] = redact_query(spec.path)
            req["checks"] = [c.to_json() for c in spec.checks]
        data["thresholds"] = [t.describe() for t in self.thresholds]
        result: dict[str, Any] = redact_json(data, self.secrets)
        return result

    def identity(self) -> str:
        """A stable key: runs with equal identity measure the same thing and are comparable."""
        key = {
            "base_url": self.base_url,
            "requests": [
                {
                    "name": r.name,
                    "method": r.method,
                    "path": redact_query(r.path),  # a rotated API key is the same test
                    "body": r.body,
                    "raw_body": r.raw_body,
                    "stream": r.stream,
                    "weight": r.weight,
                    "dataset": r.dataset,
                }
                for r in self.requests
            ],
            # How many processes drive the load does not change what is measured.
            "load": {k: v for k, v in asdict(self.load).items() if k != "workers"},
            "session": asdict(self.session) if self.session is not None else None,
        }
        text = json.dumps(redact_json(key, self.secrets), sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:16]
