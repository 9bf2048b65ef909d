"""What an agent and a driver say to each other (protocol version `PROTOCOL`).

Every endpoint answers JSON; `/v1/samples` streams one JSON object per line (NDJSON), as
the agent takes them, until the client goes. Times are on the agent's clock (seconds,
monotonic): the driver maps them onto its run's axis with the offset it estimates from
`/v1/clock` round trips (`tracker.recording.agent_feed`).

Lines of the stream, by `type`:

- `status`: first, and whenever it changes: the target, whether it is alive (and if not,
  `death_reason`), and the probes that cannot run there (`unavailable`, probe -> reason).
- `sample`: one tick of the probes: `seq` (counts from 1 for the agent's life), the
  interval it measured (`start`, `end`; `start` is null for the first, whose values are
  gauges only), `metrics`, `target_alive`, `note`.
- `profile`: a window of py-spy stacks (`start`, `end`, `samples`, `stacks`).
- `heartbeat`: sent when nothing else was for a second (`t`): a quiet stream is alive.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from typing import Any

#: Bumped when a message changes shape; a driver and an agent must agree on it.
PROTOCOL = 1

HELLO_PATH = "/v1/hello"
CLOCK_PATH = "/v1/clock"
SAMPLES_PATH = "/v1/samples"

#: A heartbeat after this long without any other line.
HEARTBEAT_S = 1.0


class ProtocolMismatch(ValueError):
    """The agent speaks another protocol version than this perfsleuth."""


@dataclass(frozen=True)
class Hello:
    """`/v1/hello`: who the agent is and what it watches."""

    perfsleuth: str
    protocol: int
    hostname: str
    interval_s: float
    target: str | None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Hello:
        return cls(
            perfsleuth=str(data.get("perfsleuth", "?")),
            protocol=int(data.get("protocol", 0)),
            hostname=str(data.get("hostname", "?")),
            interval_s=float(data.get("interval_s", 0.0)),
            target=None if data.get("target") is None else str(data["target"]),
        )


@dataclass(frozen=True)
class Status:
    target: str | None
    target_alive: bool
    unavailable: dict[str, str] = field(default_factory=dict)
    death_reason: str | None = None  # why the target is gone, e.g. "exited with code 3"


@dataclass(frozen=True)
class Sample:
    seq: int
    start: float | None
    end: float
    metrics: dict[str, float]
    target_alive: bool
    note: str | None = None


@dataclass(frozen=True)
class Profile:
    start: float
    end: float
    samples: int
    stacks: dict[str, int]


@dataclass(frozen=True)
class Heartbeat:
    t: float


Message = Status | Sample | Profile | Heartbeat

_TYPES: dict[type[Any], str] = {
    Status: "status",
    Sample: "sample",
    Profile: "profile",
    Heartbeat: "heartbeat",
}


def encode(message: Message) -> bytes:
    """One line of the stream."""
    body = {"type": _TYPES[type(message)], **asdict(message)}
    return json.dumps(body, separators=(",", ":"), allow_nan=False).encode() + b"\n"


def decode(line: bytes) -> Message | None:
    """A line of the stream; None for a type this version does not know (a newer agent
    may add some: they are skipped, not fatal).

    Raises:
        ValueError: the line is not a message of a known type's shape.
    """
    data = json.loads(line)
    if not isinstance(data, dict):
        raise ValueError("a stream line must be a JSON object")
    kind = data.pop("type", None)
    if kind == "sample":
        return Sample(
            seq=int(data["seq"]),
            start=None if data.get("start") is None else float(data["start"]),
            end=float(data["end"]),
            metrics=_finite(data.get("metrics") or {}),
            target_alive=bool(data.get("target_alive")),
            note=None if data.get("note") is None else str(data["note"]),
        )
    if kind == "heartbeat":
        return Heartbeat(float(data["t"]))
    if kind == "profile":
        return Profile(
            start=float(data["start"]),
            end=float(data["end"]),
            samples=int(data["samples"]),
            stacks={str(k): int(v) for k, v in (data.get("stacks") or {}).items()},
        )
    if kind == "status":
        return Status(
            target=None if data.get("target") is None else str(data["target"]),
            target_alive=bool(data.get("target_alive")),
            unavailable={str(k): str(v) for k, v in (data.get("unavailable") or {}).items()},
            death_reason=None if data.get("death_reason") is None else str(data["death_reason"]),
        )
    return None


def _finite(metrics: dict[str, Any]) -> dict[str, float]:
    values = {str(k): float(v) for k, v in metrics.items()}
    return {k: v for k, v in values.items() if math.isfinite(v)}


def check_protocol(hello: Hello, mine: str) -> None:
    """Raise ProtocolMismatch, naming both versions, unless `hello` speaks `PROTOCOL`."""
    if hello.protocol != PROTOCOL:
        raise ProtocolMismatch(
            f"the agent at {hello.hostname} runs perfsleuth {hello.perfsleuth} (agent "
            f"protocol {hello.protocol}), this driver perfsleuth {mine} (protocol "
            f"{PROTOCOL}); run the same perfsleuth version on both"
        )
