"""A remote agent's samples streamed into a run (`run --agent URL`, `attach --agent URL`).

Each agent gets a thread: it reads the agent's sample stream (`tracker.agent.protocol`),
places each sample on the run's time axis, and hands it to the recording. The agent's
clock is not the driver's: the offset is estimated as NTP does, from round trips to
`/v1/clock` (the agent's reading against the midpoint of the trip), keeping the estimate
of the shortest trip; it is estimated again every `CLOCK_EVERY_S` during the run, since
two clocks drift apart.

An agent that cannot be reached mid-run does not stop the run: the feed notes it, tries
again with a growing pause, and records the gap when samples resume.
"""

from __future__ import annotations

import contextlib
import functools
import socket
import ssl
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx

from tracker import __version__
from tracker.agent.protocol import (
    CLOCK_PATH,
    HELLO_PATH,
    SAMPLES_PATH,
    Hello,
    Profile,
    ProtocolMismatch,
    Sample,
    Status,
    check_protocol,
    decode,
)
from tracker.errors import UsageError
from tracker.recording.recording import Recording
from tracker.records import DRIVER_SOURCE, ProfileRecord, SampleRecord

#: Round trips per clock estimate; the shortest one's reading is kept.
CLOCK_ROUND_TRIPS = 8
#: How often the clock offset is estimated again during a run.
CLOCK_EVERY_S = 10.0
#: A stream quiet for this long is taken as lost (the agent sends a heartbeat every 1 s).
READ_TIMEOUT_S = 5.0
#: The longest pause between two tries to reach a lost agent.
RECONNECT_MAX_S = 5.0
#: Connecting and the clock's round trips (one agent's) before the run: bounded.
_CONNECT_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class AgentLink:
    """An agent reached before the run: where it is, what it said, its label."""

    url: str
    token: str | None
    hello: Hello
    source: str


@dataclass(frozen=True)
class ClockEstimate:
    """The agent's clock minus the driver's (`time.monotonic()`), within
    `uncertainty_s` (half the round trip it was read in)."""

    offset_s: float
    uncertainty_s: float
    at: float  # the driver's monotonic time of the estimate


def _headers(token: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"} if token else {}


@functools.cache
def _trust() -> ssl.SSLContext:
    """The system's trust store (and $SSL_CERT_FILE, for an agent's own CA), not
    certifi's; loaded once (a store is a megabyte or so, and slow to parse)."""
    return ssl.create_default_context()


def _client(token: str | None) -> httpx.Client:
    return httpx.Client(
        headers={**_headers(token), "User-Agent": f"perfsleuth/{__version__}"},
        timeout=httpx.Timeout(_CONNECT_TIMEOUT_S, read=READ_TIMEOUT_S),
        verify=_trust(),
        trust_env=False,  # never through a proxy: the agent is on the server's network
    )


def _describe(exc: BaseException) -> str:
    if "CERTIFICATE_VERIFY_FAILED" in str(exc):
        return "its TLS certificate is not trusted here: set $SSL_CERT_FILE to its CA"
    if isinstance(exc, httpx.ConnectError):
        return "connection refused or unreachable"
    if isinstance(exc, httpx.TimeoutException):
        return "timed out"
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def connect(url: str, token: str | None, token_env: str) -> AgentLink:
    """Reach the agent at `url` before the run and check it speaks our protocol.

    Raises:
        UsageError: unreachable, refused the token, or another protocol version.
    """
    base = url.rstrip("/")
    try:
        with _client(token) as client:
            answer = client.get(base + HELLO_PATH)
    except httpx.HTTPError as exc:
        raise UsageError(
            f"--agent: cannot reach the agent at {base} ({_describe(exc)}); is "
            "`perfsleuth agent` running there?"
        ) from None
    if answer.status_code == 401:
        given = "its token" if token else "a token"
        raise UsageError(
            f"--agent: the agent at {base} refused {given} (401); export the agent's "
            f"token in ${token_env}"
        )
    if answer.status_code != 200:
        raise UsageError(
            f"--agent: {base} answered {answer.status_code} to {HELLO_PATH}: not a perfsleuth "
            "agent?"
        )
    try:
        hello = Hello.from_json(answer.json())
        check_protocol(hello, __version__)
    except ProtocolMismatch as exc:
        raise UsageError(f"--agent: {exc}") from None
    except (ValueError, TypeError, AttributeError):
        raise UsageError(f"--agent: {base} is not a perfsleuth agent") from None
    netloc = urlsplit(base).netloc.rsplit("@", 1)[-1]
    return AgentLink(base, token, hello, f"{hello.hostname}@{netloc}")


def estimate_clock(client: httpx.Client, url: str, trips: int = CLOCK_ROUND_TRIPS) -> ClockEstimate:
    """The offset read in the shortest of `trips` round trips to the agent's clock."""
    best: ClockEstimate | None = None
    for _ in range(trips):
        sent = time.monotonic()
        answer = client.get(url + CLOCK_PATH)
        back = time.monotonic()
        answer.raise_for_status()
        reading = float(answer.json()["t"])
        half_trip = (back - sent) / 2
        if best is None or half_trip < best.uncertainty_s:
            best = ClockEstimate(reading - (sent + back) / 2, half_trip, back)
    assert best is not None
    return best


@dataclass
class FeedReport:
    """What the run keeps of one agent (`probes_hosts`)."""

    samples: int = 0
    gaps: list[tuple[float, float]] = field(default_factory=list)
    clock: ClockEstimate | None = None
    estimates: int = 0
    unavailable: dict[str, str] = field(default_factory=dict)
    target_death: str | None = None


class AgentFeed:
    """One agent's stream into a run, on a thread of its own (`start`, `stop`)."""

    def __init__(
        self,
        link: AgentLink,
        *,
        zero: Callable[[], float],
        server: bool,
        on_sample: Callable[[SampleRecord], None],
        on_profile: Callable[[ProfileRecord], None],
        note: Callable[[str], None] | None = None,
    ) -> None:
        self.link = link
        self._zero = zero  # the run's t0, a driver's monotonic time
        self._source = None if server else link.source
        self._on_sample = on_sample
        self._on_profile = on_profile
        self._note = note
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name=f"perfsleuth-agent-{link.source}", daemon=True
        )
        self._clock_thread = threading.Thread(target=self._keep_clock, daemon=True)
        self.report = FeedReport()
        self._last_t: float | None = None
        self._lost_at: float | None = None
        self._alive_seen = False

    def start(self) -> None:
        self._thread.start()
        self._clock_thread.start()

    def stop(self, run_end_s: float | None = None) -> None:
        """Stop reading; a gap still open at the end is recorded up to `run_end_s`."""
        self._stop.set()
        self._thread.join(READ_TIMEOUT_S + 2)
        self._clock_thread.join(_CONNECT_TIMEOUT_S)
        with self._lock:
            if self._lost_at is not None and run_end_s is not None:
                self.report.gaps.append((self._lost_at, max(self._lost_at, run_end_s)))
                self._lost_at = None

    def host_entry(self, role: str) -> dict[str, Any]:
        """This agent's entry of the run document's `probes_hosts`."""
        with self._lock:
            clock = self.report.clock
            return {
                "source": self.link.source,
                "role": role,
                "hostname": self.link.hello.hostname,
                "agent": self.link.url,
                "perfsleuth": self.link.hello.perfsleuth,
                "clock": None
                if clock is None
                else {
                    "offset_s": round(clock.offset_s, 6),
                    "uncertainty_s": round(clock.uncertainty_s, 6),
                    "estimates": self.report.estimates,
                },
                "gaps": [{"from_s": round(a, 3), "to_s": round(b, 3)} for a, b in self.report.gaps],
            }

    # -- the feed's threads ------------------------------------------------------------

    def _say(self, message: str) -> None:
        if self._note is not None:
            self._note(f"agent {self.link.hello.hostname}: {message}")

    def _keep_clock(self) -> None:
        """Estimate the offset again every CLOCK_EVERY_S while the run lasts, on one
        kept-alive connection (no connection set-up in the round trips)."""
        with _client(self.link.token) as client:
            while not self._stop.wait(CLOCK_EVERY_S):
                with contextlib.suppress(httpx.HTTPError, ValueError, KeyError):
                    self._adopt(estimate_clock(client, self.link.url, CLOCK_ROUND_TRIPS // 2))

    def _adopt(self, estimate: ClockEstimate) -> None:
        """Take `estimate` unless the one held came from a much shorter trip, recently
        (a congested round trip reads the offset less well than a fresh quiet one)."""
        with self._lock:
            held = self.report.clock
            self.report.estimates += 1
            if (
                held is None
                or estimate.uncertainty_s <= 2 * held.uncertainty_s
                or estimate.at - held.at > 6 * CLOCK_EVERY_S
            ):
                self.report.clock = estimate

    def _run(self) -> None:
        pause = 0.5
        while not self._stop.is_set():
            try:
                self._read_stream()
                pause = 0.5
                failure = "the agent ended its stream"
            except _Refused as exc:
                self._say(str(exc))
                return
            except Exception as exc:  # noqa: BLE001 - whatever broke the stream: try again
                failure = _describe(exc)
            if self._stop.is_set():
                return
            with self._lock:
                if self._lost_at is None:
                    self._lost_at = self._last_t if self._last_t is not None else 0.0
                    lost = True
                else:
                    lost = False
            if lost:
                self._say(f"lost ({failure}); reconnecting")
            self._stop.wait(pause)
            pause = min(pause * 2, RECONNECT_MAX_S)

    def _read_stream(self) -> None:
        with _client(self.link.token) as client:
            hello = client.get(self.link.url + HELLO_PATH)
            if hello.status_code == 401:
                raise _Refused("refused the token (401); samples stop")
            hello.raise_for_status()
            try:
                check_protocol(Hello.from_json(hello.json()), __version__)
            except ProtocolMismatch as exc:
                raise _Refused(str(exc)) from None
            self._adopt(estimate_clock(client, self.link.url))
            with client.stream("GET", self.link.url + SAMPLES_PATH) as stream:
                stream.raise_for_status()
                for line in stream.iter_lines():
                    if self._stop.is_set():
                        return
                    if line:
                        self._take(decode(line.encode()))

    def _take(self, message: object) -> None:
        with self._lock:
            clock = self.report.clock
        if clock is None:
            return
        if isinstance(message, Sample):
            self._take_sample(message, clock)
        elif isinstance(message, Profile):
            start = message.start - clock.offset_s - self._zero()
            self._on_profile(
                ProfileRecord(start, message.end - message.start, message.samples, message.stacks)
            )
        elif isinstance(message, Status):
            with self._lock:
                self.report.unavailable = dict(message.unavailable)
                if message.target_alive:
                    self._alive_seen = True
                elif self._alive_seen and self.report.target_death is None:
                    self.report.target_death = message.death_reason or "it is gone"

    def _take_sample(self, sample: Sample, clock: ClockEstimate) -> None:
        t_s = sample.end - clock.offset_s - self._zero()
        gap = None
        with self._lock:
            if self._lost_at is not None:
                self.report.gaps.append((self._lost_at, t_s))
                gap = f"no samples {self._lost_at:.1f}-{t_s:.1f} s (the agent was unreachable)"
                self._lost_at = None
            self._last_t = t_s
            self.report.samples += 1
        if gap is not None:
            self._say(gap)
        note = "; ".join(n for n in (gap, sample.note) if n) or None
        if note is not None and self._source is None:
            # The server's samples carry no source: say whose note it is.
            note = f"{self.link.hello.hostname}: {note}"
        self._on_sample(SampleRecord(t_s, sample.metrics, sample.target_alive, note, self._source))


class _Refused(Exception):
    """The agent will not serve this driver (its token, its protocol): stop trying."""


def start_feeds(
    recording: Recording, links: Sequence[AgentLink], note: Callable[[str], None] | None
) -> list[AgentFeed]:
    """Stream each agent into `recording`; the first watches the server (its samples are
    the run's `probes`). Call after `recording.start_sampling`, with `local_source` set.
    The feeds stop as the recording ends, and what the run knew of each host joins its
    summary (`probes_hosts`)."""
    feeds = [
        AgentFeed(
            link,
            zero=lambda: recording.t0,
            server=i == 0,
            on_sample=recording.add_remote_sample,
            on_profile=recording.add_remote_profile,
            note=note,
        )
        for i, link in enumerate(links)
    ]
    for feed in feeds:
        feed.start()

    def stop() -> None:
        end_s = time.monotonic() - recording.t0
        for feed in feeds:
            feed.stop(end_s)
        hosts = [feed.host_entry("server" if i == 0 else "agent") for i, feed in enumerate(feeds)]
        hosts.insert(
            1, {"source": DRIVER_SOURCE, "role": "driver", "hostname": socket.gethostname()}
        )
        recording.summary = {**(recording.summary or {}), "probes_hosts": hosts}
        for i, feed in enumerate(feeds):
            prefix = "" if i == 0 else f"{feed.link.source}:"
            recording.unavailable_elsewhere.update(
                {f"{prefix}{name}": why for name, why in feed.report.unavailable.items()}
            )

    recording.before_stop(stop)
    return feeds


def target_died(feeds: Sequence[AgentFeed]) -> str | None:
    """Why the run failed, when the server's agent saw its target die during it."""
    if not feeds or feeds[0].report.target_death is None:
        return None
    feed = feeds[0]
    return (
        f"the target process on {feed.link.hello.hostname} died during the run "
        f"({feed.report.target_death})"
    )
