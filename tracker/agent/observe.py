"""The agent's probing side: the probes a local run uses, on the target of this host,
each tick published to the hub (`tracker.agent.server.Hub`) in the protocol's terms.

The agent outlives its target: host metrics go on, the death and its reason are
published, and a target chosen by name is followed when a process matching it starts
again (a restarted server).
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from probes import Probe, ProbeSample, Sampler, Target, default_probes
from probes.runtimes import (
    attached_probes,
    close_probes,
    launch_with_gc_probes,
    launched_probes,
)
from tracker.agent.protocol import Profile, Sample, Status

#: Test-only: seconds added to the agent's clock, to stand for another host's clock.
CLOCK_SKEW_ENV = "PERFSLEUTH_AGENT_TEST_CLOCK_SKEW_S"
#: How often a target chosen by name is looked for again once it is gone.
_FOLLOW_EVERY_S = 1.0


@dataclass(frozen=True)
class AgentClock:
    """The agent's clock: this host's monotonic clock (plus the test-only skew)."""

    skew_s: float = 0.0

    @classmethod
    def from_env(cls) -> AgentClock:
        return cls(float(os.environ.get(CLOCK_SKEW_ENV, "0") or 0))

    def now(self) -> float:
        return time.monotonic() + self.skew_s

    def of(self, t_mono: float) -> float:
        """A `time.monotonic()` reading of this process on the agent's clock."""
        return t_mono + self.skew_s


@dataclass(frozen=True)
class TargetChoice:
    """Which process tree the agent watches: by pid, by name (followed across restarts),
    a command it launches, or none (the host alone)."""

    pid: int | None = None
    name: str | None = None
    launch: Sequence[str] | None = None


class Observer:
    """Samples the chosen target and the host every `interval_s`, publishing each tick,
    each stack window and each change of status through `publish`."""

    def __init__(
        self,
        choice: TargetChoice,
        publish: Callable[[Status | Sample | Profile], None],
        *,
        interval_s: float,
        gc_log: str | None = None,
        clock: AgentClock | None = None,
        stacks: bool = True,
    ) -> None:
        self._choice = choice
        self._stacks = stacks
        self._publish = publish
        self._interval = interval_s
        self._gc_log = gc_log
        self.clock = clock or AgentClock()
        self._lock = threading.Lock()
        self._target: Target | None = None
        self._probes: list[Probe] = []
        self._sampler: Sampler | None = None
        self._seq = 0
        self._last_end: float | None = None
        self._status: Status | None = None
        self._pending_note: str | None = None
        self._stop = threading.Event()
        self._follower: threading.Thread | None = None

    @property
    def target_described(self) -> str | None:
        with self._lock:
            return None if self._target is None else self._target.label

    def start(self) -> None:
        """Find (or launch) the target and start sampling.

        Raises:
            ProbeError: the target cannot be found or started.
        """
        choice = self._choice
        if choice.launch is not None:
            launch = launch_with_gc_probes(
                list(choice.launch), gc_log=self._gc_log, interval_s=self._interval
            )
            self._begin(
                launch.target,
                launched_probes(launch, interval_s=self._interval, stacks=self._stacks),
            )
        elif choice.pid is not None or choice.name is not None:
            target = (
                Target.from_pid(choice.pid) if choice.pid else Target.from_name(choice.name or "")
            )
            self._begin(
                target,
                attached_probes(
                    target, gc_log=self._gc_log, interval_s=self._interval, stacks=self._stacks
                ),
            )
        else:
            self._begin(None, [])
        if choice.name is not None:
            self._follower = threading.Thread(
                target=self._follow, name="perfsleuth-agent-follow", daemon=True
            )
            self._follower.start()

    def stop(self) -> None:
        """Stop sampling; a target the agent launched is stopped too."""
        self._stop.set()
        if self._follower is not None:
            self._follower.join(5)
        with self._lock:
            sampler, target, probes = self._sampler, self._target, self._probes
            self._sampler = None
        if sampler is not None:
            sampler.stop()
        close_probes(probes)
        if target is not None and target.owned:
            target.terminate()

    def _begin(self, target: Target | None, probes: list[Probe], note: str | None = None) -> None:
        sampler = Sampler(
            target,
            interval_s=self._interval,
            on_sample=self._on_sample,
            # Not the self probe: its `driver.*` figures are the load driver's own, and
            # this process is no driver (its cost is measured in benchmarks/).
            probes=[*(p for p in default_probes() if p.name != "self"), *probes],
        )
        with self._lock:
            self._target, self._probes, self._sampler = target, probes, sampler
            self._last_end = None  # a new target's first sample measured no interval
            self._pending_note = note
        sampler.start()

    def _on_sample(self, tick: ProbeSample) -> None:
        end = self.clock.of(tick.t_mono)
        with self._lock:
            sampler, probes = self._sampler, list(self._probes)
            start, self._last_end = self._last_end, end
            self._seq += 1
            seq = self._seq
            notes = [n for n in (self._pending_note, tick.note) if n]
            self._pending_note = None
        self._publish_status(tick.target_alive, sampler.unavailable if sampler else {})
        self._publish(
            Sample(seq, start, end, tick.metrics, tick.target_alive, "; ".join(notes) or None)
        )
        for probe in probes:
            take = getattr(probe, "take_windows", None)
            if take is None:
                continue
            for window in take():
                self._publish(
                    Profile(
                        self.clock.of(window.start_mono),
                        self.clock.of(window.end_mono),
                        window.samples,
                        window.stacks,
                    )
                )

    def _publish_status(self, alive: bool, unavailable: dict[str, str]) -> None:
        with self._lock:
            target = self._target
        reason = None if alive or target is None else target.death_reason
        status = Status(self.target_described, alive, unavailable, reason)
        if status != self._status:
            self._status = status
            self._publish(status)

    def _follow(self) -> None:
        """Look for the named target again while it is gone; sample the new one."""
        name = self._choice.name or ""
        while not self._stop.wait(_FOLLOW_EVERY_S):
            with self._lock:
                target = self._target
            if target is not None and target.alive:
                continue
            try:
                found = Target.from_name(name)
            except Exception:  # noqa: BLE001 - not back yet: look again in a second
                continue
            with self._lock:
                old, old_probes = self._sampler, self._probes
                self._sampler = None
            if old is not None:
                old.stop()
            close_probes(old_probes)
            if self._stop.is_set():
                return
            probes: list[Probe] = []
            with contextlib.suppress(Exception):
                probes = attached_probes(
                    found, gc_log=self._gc_log, interval_s=self._interval, stacks=self._stacks
                )
            self._begin(found, probes, note=f"target {name!r} is back: following pid {found.pid}")
