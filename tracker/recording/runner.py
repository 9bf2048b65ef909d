"""`run` and `demo`: a scenario's load driven at its URL while the target is probed, all
of it recorded as one stored run (`tracker.recording.recording.Recording`).

The live detector watches each window and probe sample as it comes (`LiveWatch`); at the
end the run's findings and its SLO verdicts join the run document.
"""

from __future__ import annotations

import asyncio
import signal
import socket
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import urlsplit

from probes import Probe, Target
from tracker.driver.engine import Driver, DriverResult
from tracker.driver.loop import event_loop_name
from tracker.driver.loop import run as run_loop
from tracker.driver.workers import WorkerPool
from tracker.errors import RunFailedError
from tracker.recording.agent_feed import AgentLink, start_feeds, target_died
from tracker.recording.control import RunControl
from tracker.recording.environment import fingerprint
from tracker.recording.live_watch import LiveWatch
from tracker.recording.progress import ProgressView
from tracker.recording.recording import Recording, RunIdentity, RunResult
from tracker.recording.run_health import DEFAULT_MAX_ERROR_RATE, RunHealth
from tracker.recording.slo import ThresholdResult, evaluate
from tracker.recording.stop_signals import after_hangup, handled_stop_signals
from tracker.records import DRIVER_SOURCE, SampleRecord
from tracker.records.window import Window
from tracker.scenario import Scenario
from tracker.scenario.secrets import redact_json
from tracker.store import Store

Action = Callable[[], Awaitable[str | None]]
_LOAD_LEAD_S = 0.2


@dataclass(frozen=True)
class TimedAction:
    """Something to do `at_s` seconds into the load, e.g. switch a fault on in the demo."""

    at_s: float
    action: Action


def check_reachable(url: str, timeout_s: float = 5.0) -> None:
    """Fail fast, with one line, when nothing listens at the URL's host and port."""
    parts = urlsplit(url)
    host = parts.hostname or "localhost"
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return
    except socket.gaierror as exc:
        raise RunFailedError(
            f"cannot resolve host {host!r} ({exc.strerror}): check the URL"
        ) from None
    except TimeoutError:
        raise RunFailedError(
            f"cannot connect to {host}:{port}: timed out after {timeout_s:g}s; is the server up?"
        ) from None
    except OSError as exc:
        raise RunFailedError(
            f"cannot connect to {host}:{port} ({exc.strerror or exc}): is the server running?"
        ) from None


class _Live:
    """Latest probe values, shared between the probe thread and the progress printer."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.latest: dict[str, float] = {}

    def update(self, sample: SampleRecord) -> None:
        with self._lock:
            self.latest = dict(sample.metrics)

    def snapshot(self) -> dict[str, float]:
        with self._lock:
            return dict(self.latest)


def execute_run(
    scenario: Scenario,
    store: Store,
    *,
    tag: str | None = None,
    group: str | None = None,
    target: Target | None = None,
    actions: Sequence[TimedAction] = (),
    progress: ProgressView | None = None,
    extra_probes: Sequence[Probe] = (),
    control: RunControl | None = None,
    max_error_rate: float = DEFAULT_MAX_ERROR_RATE,
    agents: Sequence[AgentLink] = (),
) -> RunResult:
    """Run `scenario` against its URL while probing `target`, and store everything.

    `extra_probes` run next to the default ones (the target's GC probe, its stacks).
    `control` lets another thread stop the run (the live screen's `q`), as Ctrl-C does.
    A run whose target stopped answering, or with more than `max_error_rate` of its
    requests failed, is stored as failed (`tracker.recording.run_health`). `agents`
    stream the server's host's samples (the first) and other hosts' from where they run;
    the local probes then watch the driver's own host.

    Raises:
        RunFailedError: the target was unreachable; the run is stored as `failed`.
    """
    loop_name = event_loop_name()
    recording = Recording(
        store,
        run_identity(scenario, tag=tag, group=group),
        target=target,
        probes=extra_probes,
        view=progress,
        note=progress.note if progress is not None else None,
    )
    control = control or RunControl()  # also how a store failing for too long stops it
    store_gave_out: list[str] = []
    live = _Live()
    watcher = LiveWatch(progress)
    health = RunHealth()
    slo: list[ThresholdResult] = []

    def finish(document: dict[str, Any]) -> None:
        findings = watcher.findings(driver_saturated=document["driver"]["saturated"])
        gone_at = health.gone_at_s()
        if gone_at is not None:
            # What slowed down as the target went is its going, not contention or memory.
            findings = [f for f in findings if f.end_s <= gone_at]
        document["findings"] = [f.to_json() for f in findings]
        slo.extend(evaluate(scenario.thresholds, document))
        document["slo"] = [r.to_json() for r in slo]
        if recording.writer is None or recording.writer.error is None:
            # Last, as it may fail; not at all when the writer's final tries just did.
            store.replace_findings(recording.run_id, findings)

    recording.on_finish(finish)
    recording.summary = {"abandoned": 0}
    with recording:
        # The load starts a little after the probes: the event loop and the HTTP client
        # are set up before the first intended send (so it is not born late), and the
        # probes get a short baseline before the load (samples with negative t_s).
        recording.t0 = time.monotonic() + _LOAD_LEAD_S
        check_reachable(scenario.base_url)
        pool: WorkerPool | None = None
        if scenario.load.workers > 1:
            pool = WorkerPool(scenario, scenario.load.workers, loop_name)
            recording.before_stop(pool.close)
            pool.start()
            recording.t0 = time.monotonic() + _LOAD_LEAD_S

        def on_sample(record: SampleRecord) -> None:
            live.update(record)
            watcher.add_sample(record)

        def on_window(window: Window) -> None:
            writer = recording.writer
            if writer is not None:
                writer.add_window(window)
                if writer.overflowing and not store_gave_out:
                    # Its windows wait in memory; past the bound the run stops rather
                    # than lose them or grow without end.
                    store_gave_out.append(
                        f"the store failed for too long ({writer.error}); the run was stopped"
                    )
                    control.request_stop()
            if progress is not None:
                progress.window(window, live.snapshot())
            watcher.add(window)
            health.add(window)

        if agents:
            recording.local_source = DRIVER_SOURCE
        recording.start_sampling(scenario.probe_interval_s, on_sample)
        feeds = start_feeds(recording, agents, progress.note if progress else None)
        recording.t0 = t0 = max(recording.t0, time.monotonic())
        in_flight: Callable[[], int]
        if pool is not None:
            workers = pool

            async def load(stop: asyncio.Event) -> DriverResult:
                return await workers.run(t0, on_window, stop)

            in_flight = _unknown
        else:
            driver = Driver(scenario, on_window)

            async def load(stop: asyncio.Event) -> DriverResult:
                return await driver.run(stop, t0=t0)

            def in_flight() -> int:
                return len(driver.inflight)

        ended = run_loop(_drive(load, in_flight, t0, actions, progress, control), loop_name)
        recording.summary = {"abandoned": ended.abandoned}
        for name in ended.exhausted:
            if progress is not None:
                progress.note(f"request {name!r} ran out of unique dataset rows and was retired")
        recording.settle("interrupted" if ended.interrupted else "completed")
        if recording.status == "completed":
            recording.fail(target_died(feeds))
        if store_gave_out:
            recording.fail(store_gave_out[0])
        elif recording.status == "completed":
            recording.fail(health.failure(max_error_rate))
    result = recording.result
    return RunResult(result.run_id, result.status, result.document, slo)


def run_identity(scenario: Scenario, *, tag: str | None, group: str | None) -> RunIdentity:
    """The run row of a run of `scenario` (its secrets redacted)."""
    return RunIdentity(
        scenario=redact_json(scenario.name, scenario.secrets),
        scenario_key=scenario.identity(),
        scenario_json=scenario.to_json(),
        environment={**fingerprint(), "event_loop": event_loop_name()},
        tag=tag,
        group=group,
        target_url=scenario.shown_url,
        load_model=scenario.load.model,
    )


def store_before_load(
    scenario: Scenario,
    store: Store,
    stopped_by: RunFailedError | KeyboardInterrupt,
    *,
    tag: str | None = None,
    group: str | None = None,
    target: Target | None = None,
) -> RunResult:
    """Store a run of `scenario` that ended before its load began, as an unreachable
    URL's run is: `failed` (a launched server that exited, or never listened) or
    `interrupted` (Ctrl-C, SIGTERM, SIGHUP while it started).

    Raises:
        RunFailedError: `stopped_by`, once the failed run is stored.
    """
    recording = Recording(store, run_identity(scenario, tag=tag, group=group), target=target)
    with recording:
        raise stopped_by
    return recording.result


def _unknown() -> int:
    return 0


async def _drive(
    load: Callable[[asyncio.Event], Awaitable[DriverResult]],
    in_flight: Callable[[], int],
    t0: float,
    actions: Sequence[TimedAction],
    progress: ProgressView | None,
    control: RunControl | None = None,
) -> DriverResult:
    """Run the driver with signal handling (a second Ctrl-C abandons what is in flight).

    Signal handlers need the main thread; on another one only `control` stops the run.
    `control` also carries the live screen's `q` (its process sends it)."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    signals_seen: list[int] = []
    main_task = asyncio.current_task()

    def on_signal(signum: int) -> None:
        after_hangup(signum)
        signals_seen.append(signum)
        if len(signals_seen) == 1:
            if progress is not None:
                progress.note("stopping: finishing the run and storing it (Ctrl-C again to abort)")
            stop.set()
        elif main_task is not None:
            main_task.cancel()

    previous: dict[int, Any] = {}
    if threading.current_thread() is threading.main_thread():
        previous = {signum: signal.getsignal(signum) for signum in handled_stop_signals()}
        for signum in previous:
            loop.add_signal_handler(signum, on_signal, signum)
    if control is not None:
        control.bind(lambda: on_signal(signal.SIGINT), loop)

    async def fire(action: TimedAction) -> None:
        delay = t0 + action.at_s - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        message = await action.action()
        if message and progress is not None:
            progress.note(message)

    side_tasks = [asyncio.create_task(fire(a)) for a in actions]
    try:
        result = await load(stop)
    except asyncio.CancelledError:
        # A second Ctrl-C: what was in flight is abandoned.
        return DriverResult(t0, time.monotonic(), True, in_flight(), ())
    finally:
        if control is not None:
            control.bind(None)
        for task in side_tasks:
            task.cancel()
        await asyncio.gather(*side_tasks, return_exceptions=True)
        for signum, handler in previous.items():
            loop.remove_signal_handler(signum)
            # asyncio resets to the default (which kills on SIGTERM); put back ours so a
            # late SIGTERM still lets the run be finished and stored.
            signal.signal(signum, handler)
    if signals_seen and not result.interrupted:
        result = replace(result, interrupted=True)
    return result


def wait_until_reachable(url: str, target: Target, timeout_s: float) -> None:
    """Wait for a launched server to accept connections, failing early if it exits."""
    deadline = time.monotonic() + timeout_s
    while True:
        if not target.alive:
            raise RunFailedError(
                f"the launched command exited before serving: {target.death_reason}"
            )
        try:
            check_reachable(url, timeout_s=1.0)
            return
        except RunFailedError:
            if time.monotonic() > deadline:
                target.terminate()
                raise RunFailedError(
                    f"the launched command did not accept connections at {url} "
                    f"within {timeout_s:.0f}s"
                ) from None
            time.sleep(0.1)
