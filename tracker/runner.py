"""One run from start to end: store the run, watch the target, drive the load, summarise.

Used by the CLI's `run` and `demo`. The run row is written before anything can fail,
and every exit path (completion, Ctrl-C, SIGTERM, target death, a crash) ends with the
row finished and its windows and samples flushed.
"""

from __future__ import annotations

import asyncio
import math
import signal
import socket
import threading
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import urlsplit

from probes import Probe, ProbeSample, Sampler, Target, default_probes
from probes.stacks_profile import top_functions
from tracker.analysis.attribute import ProbeSeries, attribute_run
from tracker.analysis.detect import OnlineDetector
from tracker.comparing import estimates_for_summary
from tracker.driver.engine import Driver, DriverResult
from tracker.driver.loop import event_loop_name
from tracker.driver.loop import run as run_loop
from tracker.driver.workers import WorkerPool
from tracker.environment import fingerprint
from tracker.errors import RunFailedError
from tracker.metrics import Window
from tracker.progress import ProgressView, StacksView
from tracker.scenario import Scenario
from tracker.slo import ThresholdResult, evaluate
from tracker.store import FindingRecord, ProfileRecord, SampleRecord, Store
from tracker.store.writer import StoreWriter
from tracker.summary import run_document

Action = Callable[[], Awaitable[str | None]]
_LOAD_LEAD_S = 0.2


@dataclass(frozen=True)
class TimedAction:
    """Something to do `at_s` seconds into the load, e.g. switch a fault on in the demo."""

    at_s: float
    action: Action


@dataclass
class RunResult:
    """What a finished run hands back to the CLI."""

    run_id: int
    status: str
    document: dict[str, Any]
    slo: list[ThresholdResult] = field(default_factory=list)

    @property
    def slo_failed(self) -> list[ThresholdResult]:
        return [r for r in self.slo if not r.passed]


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

    def update(self, sample: ProbeSample) -> None:
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
) -> RunResult:
    """Run `scenario` against its URL while probing `target`, and store everything.

    `extra_probes` run next to the default ones (the target's GC probe, its stacks).
    `control` lets another thread stop the run (the live screen's `q`), as Ctrl-C does.

    Raises:
        RunFailedError: the target was unreachable; the run is stored as `failed`.
    """
    loop_name = event_loop_name()
    run_id = store.create_run(
        scenario=scenario.name,
        scenario_key=scenario.identity(),
        scenario_json=scenario.to_json(),
        environment={**fingerprint(), "event_loop": loop_name},
        tag=tag,
        group=group,
        target_url=scenario.url,
        load_model=scenario.load.model,
    )
    started = time.monotonic()
    live = _Live()
    # The load starts a little after the probes: the event loop and the HTTP client are
    # set up before the first intended send (so it is not born late), and the probes get
    # a short baseline before the load (samples with negative t_s).
    t0 = time.monotonic() + _LOAD_LEAD_S
    writer: StoreWriter | None = None
    sampler: Sampler | None = None
    status = "failed"
    error: str | None = None
    abandoned = 0
    pool: WorkerPool | None = None
    watcher = LiveWatch(progress)
    try:
        check_reachable(scenario.base_url)
        if scenario.load.workers > 1:
            pool = WorkerPool(scenario, scenario.load.workers, loop_name)
            pool.start()
            t0 = time.monotonic() + _LOAD_LEAD_S
        writer = StoreWriter(store, run_id)
        sink = writer

        def on_sample(sample: ProbeSample) -> None:
            live.update(sample)
            record = SampleRecord(
                sample.t_mono - t0, sample.metrics, sample.target_alive, sample.note
            )
            sink.add_sample(record)
            watcher.add_sample(record)
            store_profiles(extra_probes, t0, sink, progress)

        def on_window(window: Window) -> None:
            sink.add_window(window)
            if progress is not None:
                progress.window(window, live.snapshot())
            watcher.add(window)

        sampler = Sampler(
            target,
            interval_s=scenario.probe_interval_s,
            on_sample=on_sample,
            probes=[*default_probes(), *extra_probes],
        )
        sampler.start()
        t0 = max(t0, time.monotonic())
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
        abandoned = ended.abandoned
        status = "interrupted" if ended.interrupted else "completed"
        for name in ended.exhausted:
            if progress is not None:
                progress.note(f"request {name!r} ran out of unique dataset rows and was retired")
        if target is not None and not target.alive and status == "completed":
            status = "failed"
            error = f"the target process died during the run ({target.death_reason})"
    except KeyboardInterrupt:
        status = "interrupted"
    except RunFailedError as exc:
        error = str(exc)
        raise
    except Exception as exc:
        error = f"{type(exc).__name__}: {exc}"
        raise
    finally:
        # Finishing takes a moment (flush, summary); a Ctrl-C meanwhile must not leave the
        # run half-stored, so interrupts wait until it is done.
        with interrupts_deferred():
            if pool is not None:
                pool.close()
            error = stop_recording(sampler, writer, extra_probes, t0, error, progress)
            run = replace(
                store.get_run(run_id),
                status=status,
                duration_s=time.monotonic() - started,
                probes_unavailable=dict(sampler.unavailable) if sampler is not None else {},
                error=error,
                summary={"abandoned": abandoned},
            )
            document = run_document(
                run,
                store.iter_windows(run_id),
                store.iter_samples(run_id),
                (),
                store.iter_profiles(run_id),
            )
            findings = watcher.findings(driver_saturated=document["driver"]["saturated"])
            store.replace_findings(run_id, findings)
            document["findings"] = [f.to_json() for f in findings]
            slo = evaluate(scenario.thresholds, document)
            document["slo"] = [r.to_json() for r in slo]
            store.finish_run(
                run_id,
                status=run.status,
                duration_s=run.duration_s or 0.0,
                summary=summary_for_history(store, run_id, document),
                probes_unavailable=run.probes_unavailable,
                error=error,
            )
    return RunResult(run_id, status, document, slo)


class RunControl:
    """Stops a run from another thread, as Ctrl-C does: the first request finishes the
    run and stores it, a second abandons what is in flight. Thread-safe; a request made
    before the run can take it is applied when it does."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: Callable[[], None] | None = None
        self._pending = 0

    def request_stop(self) -> None:
        with self._lock:
            if self._stop is None:
                self._pending += 1
                return
            if self._loop is None:
                self._stop()
            else:
                self._loop.call_soon_threadsafe(self._stop)

    def bind(
        self, stop: Callable[[], None] | None, loop: asyncio.AbstractEventLoop | None = None
    ) -> None:
        """Called as the run starts (and with None as it ends). `stop` runs on `loop` when
        one is given (the driver's), else in the requesting thread (it must be thread-safe,
        e.g. `threading.Event.set`)."""
        with self._lock:
            self._loop, self._stop = loop, stop
            pending, self._pending = self._pending, 0
        if stop is None:
            return
        for _ in range(pending):
            if loop is None:
                stop()
            else:
                loop.call_soon(stop)


class LiveWatch:
    """The degradation detector, fed each window and probe sample on its own thread (never
    the driver's event loop). While the run goes, each degradation is attributed as it is
    flagged, again every `REATTRIBUTE_S` while it lasts (its evidence grows) and once more
    when it ends, and handed to the live view; at the end the whole run is attributed for
    the store."""

    #: Seconds between two attributions of an open degradation.
    REATTRIBUTE_S = 5.0

    def __init__(self, progress: ProgressView | None) -> None:
        self._detector = OnlineDetector()
        self._series = ProbeSeries()
        self._progress = progress
        self._attributed_at = -math.inf
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="perfsleuth-detect")

    def add(self, window: Window) -> None:
        self._pool.submit(self._step, window)

    def add_sample(self, sample: SampleRecord) -> None:
        self._pool.submit(self._series.add, sample)

    def _step(self, window: Window) -> None:
        before = len(self._detector.closed)
        flagged = self._detector.add(window)
        closed = self._detector.closed
        ended = closed[before:]
        ongoing = self._detector.open_now()
        now = window.start_s + window.duration_s
        due = ongoing and now - self._attributed_at >= self.REATTRIBUTE_S
        if self._progress is None or not (flagged or ended or due):
            return
        self._attributed_at = now
        # Closed events stay in: they are left out of the steady state the open ones are
        # judged against.
        findings = attribute_run([*closed, *ongoing], self._detector.stats, self._series.means())
        for finding in findings:
            # The open events, and those that just ended (their final interval).
            if finding.end_s >= now or any(
                finding.start_s <= d.start_s and d.end_s <= finding.end_s for d in ended
            ):
                self._progress.finding(finding)

    def findings(self, *, driver_saturated: bool) -> list[FindingRecord]:
        """Close the detector and attribute each degraded interval."""
        self._pool.shutdown(wait=True)
        degradations = self._detector.finish()
        if not degradations:
            return []
        return attribute_run(
            degradations,
            self._detector.stats,
            self._series.means(),
            driver_saturated=driver_saturated,
        )


def stop_recording(
    sampler: Sampler | None,
    writer: StoreWriter | None,
    probes: Sequence[Probe],
    t0: float,
    error: str | None,
    view: StacksView | None = None,
) -> str | None:
    """Stop sampling and flush everything to the store; the run's error, storage included."""
    if sampler is not None:
        sampler.stop()
    if writer is None:
        return error
    store_profiles(probes, t0, writer, view)  # the windows the last tick did not collect
    writer.close()
    if writer.error is not None and error is None:
        return f"some results could not be stored: {writer.error}"
    return error


def store_profiles(
    probes: Sequence[Probe], t0: float, writer: StoreWriter, view: StacksView | None = None
) -> None:
    """Hand the stack windows the probes completed since the last call to the store (and
    the newest one's top functions to the live view)."""
    for probe in probes:
        take = getattr(probe, "take_windows", None)
        if take is None:
            continue
        windows = take()
        for w in windows:
            writer.add_profile(
                ProfileRecord(w.start_mono - t0, w.end_mono - w.start_mono, w.samples, w.stacks)
            )
        if view is not None and windows:
            last = windows[-1]
            view.stacks(
                last.end_mono - t0, last.end_mono - last.start_mono, top_functions(last.stacks, 8)
            )


@contextmanager
def interrupts_deferred() -> Iterator[None]:
    """Ignore SIGINT / SIGTERM inside the block (main thread only), then restore them."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}
    for signum in previous:
        signal.signal(signum, signal.SIG_IGN)
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


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
        signals_seen.append(signum)
        if len(signals_seen) == 1:
            if progress is not None:
                progress.note("stopping: finishing the run and storing it (Ctrl-C again to abort)")
            stop.set()
        elif main_task is not None:
            main_task.cancel()

    previous: dict[int, Any] = {}
    if threading.current_thread() is threading.main_thread():
        previous = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}
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


def summary_for_history(store: Store, run_id: int, doc: dict[str, Any]) -> dict[str, Any]:
    """The numbers `history` lists and `compare` weighs without reading windows: headline
    figures, and each comparable metric with its standard error (`tracker.comparing`)."""
    summary = {
        key: doc.get(key)
        for key in (
            "requests",
            "throughput_rps",
            "latency_ms",
            "llm",
            "driver",
            "measured_s",
            "slo",
        )
    }
    summary["abandoned"] = doc["requests"].get("abandoned", 0)
    summary["metrics"] = estimates_for_summary(store, run_id, doc)
    return summary


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
