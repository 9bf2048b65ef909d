"""One stored run from its row to its finish, whatever produced its data.

`Recording` is the lifecycle `run` (with load) and `attach` (probes only) share, and that
a remote probe feed can drive as well: the run row is written before anything can fail;
probe samples (from a local `Sampler`, or handed to `add_sample`) and stack windows go to
the store as they come; when the block ends, for any reason (completion, Ctrl-C, SIGTERM,
the target dying, a crash), sampling stops, everything is flushed, the run document is
built, the caller's finishers annotate it (findings, SLOs), and the row is finished, with
interrupts held off until that is done.
"""

from __future__ import annotations

import contextlib
import json
import signal
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any

from probes import Probe, ProbeSample, Sampler, Target, default_probes
from probes.stacks.profile import top_functions
from tracker.documents.run_document import run_document
from tracker.documents.stored_summary import summary_for_history
from tracker.errors import RunFailedError
from tracker.recording.progress import StacksView
from tracker.recording.slo import ThresholdResult
from tracker.recording.stop_signals import STOP_SIGNALS
from tracker.records import ProfileRecord, RunRecord, SampleRecord
from tracker.records.window import Window
from tracker.store import Store
from tracker.store.failures import StoreError, describe_store_error, is_store_error
from tracker.store.writer import WRITE_LOCK_WAIT_S, StoreWriter


@dataclass(frozen=True)
class RunIdentity:
    """What the run row says about the run before it starts."""

    scenario: str
    scenario_key: str
    scenario_json: dict[str, Any]
    environment: dict[str, Any]
    tag: str | None = None
    group: str | None = None
    target_url: str | None = None
    load_model: str | None = None


@dataclass
class RunResult:
    """What a finished run hands back to the command."""

    run_id: int
    status: str
    document: dict[str, Any]
    slo: list[ThresholdResult] = field(default_factory=list)

    @property
    def slo_failed(self) -> list[ThresholdResult]:
        return [r for r in self.slo if not r.passed]


class Recording:
    """A context manager around one run's work; see the module docstring.

    Inside the block the caller sets `t0` (the zero of the run's clock, a
    `time.monotonic()` value: samples are stamped relative to it), starts sampling, does
    its work and calls `settle(status)`. Leaving the block with KeyboardInterrupt stores the
    run as `interrupted` and swallows it; any other exception stores it as `failed` with
    the error and propagates. `result` holds the finished run afterwards.
    """

    def __init__(
        self,
        store: Store,
        identity: RunIdentity,
        *,
        target: Target | None,
        probes: Sequence[Probe] = (),
        view: StacksView | None = None,
        note: Callable[[str], None] | None = None,
    ) -> None:
        self.store = store
        self.note = note
        self.identity = identity
        self.target = target
        self.probes = probes
        self.view = view
        self.run_id = 0
        self.started = self.t0 = 0.0
        self.status = "failed"
        self.error: str | None = None
        #: Replaces the run record's summary before the document is built (`abandoned`).
        self.summary: dict[str, Any] | None = None
        self.sampler: Sampler | None = None
        self.writer: StoreWriter | None = None
        self._write_store: Store | None = None
        self._on_sample: Callable[[SampleRecord], None] | None = None
        #: The local samples' source: None while they are the server's host's, DRIVER_SOURCE
        #: when an agent watches the server (`tracker.recording.agent_feed`).
        self.local_source: str | None = None
        #: Probes that could not run elsewhere (agents), merged into the run's at the end.
        self.unavailable_elsewhere: dict[str, str] = {}
        self._before_stop: list[Callable[[], None]] = []
        self._finishers: list[Callable[[dict[str, Any]], None]] = []
        self._result: RunResult | None = None

    def __enter__(self) -> Recording:
        i = self.identity
        started_at = datetime.now(UTC)
        # The run's own writes (its row, then its data) wait WRITE_LOCK_WAIT_S for another
        # process's lock, not the default 30 s: the writer retries on its own, and a run
        # that cannot start says so in seconds.
        self._write_store = self.store.reopened(busy_timeout_s=WRITE_LOCK_WAIT_S)
        try:
            self.run_id = self._write_store.create_run(
                scenario=i.scenario,
                scenario_key=i.scenario_key,
                scenario_json=i.scenario_json,
                environment=i.environment,
                tag=i.tag,
                group=i.group,
                target_url=i.target_url,
                load_model=i.load_model,
                started_at=started_at,
            )
        except Exception as exc:
            self._write_store.close()
            if not is_store_error(exc):
                raise
            raise StoreError(
                f"cannot start the run: {describe_store_error(exc, self.store.location)}"
            ) from None
        # The run row as stored, for the run's document if the store fails later on.
        self._record = RunRecord(
            id=self.run_id, status="running", scenario=i.scenario, scenario_key=i.scenario_key,
            scenario_json=i.scenario_json, tag=i.tag, started_at=started_at, ended_at=None,
            duration_s=None, target_url=i.target_url, load_model=i.load_model,
            environment=i.environment, summary=None, probes_unavailable={}, error=None,
            group_name=i.group,
        )  # fmt: skip
        self.started = self.t0 = time.monotonic()
        return self

    def start_sampling(
        self, interval_s: float, on_sample: Callable[[SampleRecord], None] | None = None
    ) -> None:
        """Sample the target and the host with the default probes and the extra ones;
        `on_sample` sees each sample as stored (on the sampler's thread)."""
        self._writer()
        self._on_sample = on_sample
        self.sampler = Sampler(
            self.target,
            interval_s=interval_s,
            on_sample=self.add_sample,
            probes=[*default_probes(), *self.probes],
        )
        self.sampler.start()

    def add_sample(self, sample: ProbeSample) -> None:
        """Store one probe sample (and the stack windows completed since the last one)."""
        writer = self._writer()
        record = SampleRecord(
            sample.t_mono - self.t0,
            sample.metrics,
            sample.target_alive,
            sample.note,
            self.local_source,
        )
        writer.add_sample(record)
        if self._on_sample is not None and record.source is None:
            self._on_sample(record)
        store_profiles(self.probes, self.t0, writer, self.view)

    def add_remote_sample(self, record: SampleRecord) -> None:
        """Store a sample an agent took (already on the run's time axis); the server's
        (no source) go on to `on_sample` as the local ones do without an agent."""
        self._writer().add_sample(record)
        if self._on_sample is not None and record.source is None:
            self._on_sample(record)

    def add_remote_profile(self, record: ProfileRecord) -> None:
        """Store a window of stacks an agent took."""
        self._writer().add_profile(record)

    def _writer(self) -> StoreWriter:
        if self.writer is None:
            if self._write_store is None:
                self._write_store = self.store.reopened(busy_timeout_s=WRITE_LOCK_WAIT_S)
            self.writer = StoreWriter(
                self._write_store,
                self.run_id,
                on_error=self._store_failing,
                on_recover=self._store_back,
            )
        return self.writer

    def _store_failing(self, reason: str) -> None:
        if self.note is not None:
            self.note(f"the store failed ({reason}): results wait in memory and are retried")

    def _store_back(self) -> None:
        if self.note is not None:
            self.note("the store is writable again: nothing was lost")

    def settle(self, status: str) -> None:
        """The status the work ended with; a completed run whose target died has failed."""
        self.status = status
        target = self.target
        if target is not None and not target.alive and status == "completed":
            self.status = "failed"
            self.error = f"the target process died during the run ({target.death_reason})"

    def fail(self, reason: str | None) -> None:
        """The run failed for `reason` (nothing changes when it is None)."""
        if reason is not None:
            self.status, self.error = "failed", reason

    def before_stop(self, action: Callable[[], None]) -> None:
        """Run `action` first as the block ends (e.g. stop worker processes)."""
        self._before_stop.append(action)

    def on_finish(self, finisher: Callable[[dict[str, Any]], None]) -> None:
        """Let `finisher` annotate the run document before the run is finished."""
        self._finishers.append(finisher)

    @property
    def result(self) -> RunResult:
        if self._result is None:
            raise RuntimeError("the recording has not finished")
        return self._result

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        if isinstance(exc, KeyboardInterrupt):
            self.status = "interrupted"
        elif isinstance(exc, RunFailedError):
            self.error = str(exc)
        elif isinstance(exc, Exception):
            self.error = f"{type(exc).__name__}: {exc}"
        # Finishing takes a moment (flush, summary); a Ctrl-C meanwhile must not leave the
        # run half-stored, so interrupts wait until it is done.
        with interrupts_deferred():
            for action in self._before_stop:
                action()
            self._finish()
        return isinstance(exc, KeyboardInterrupt)

    def _finish(self) -> None:
        store, run_id, writer = self.store, self.run_id, self.writer
        self.error = stop_recording(
            self.sampler, writer, self.probes, self.t0, self.error, self.view
        )
        if self._write_store is not None:
            self._write_store.close()
        unwritten: tuple[list[Window], list[SampleRecord], list[ProfileRecord]] = (
            writer.unwritten() if writer is not None else ([], [], [])
        )
        failure: str | None = None
        try:
            # What the store holds and what never reached it: the whole run, never a
            # summary of fewer windows than it produced.
            store.check_intact()
            record = store.get_run(run_id)
            windows = _merged(list(store.iter_windows(run_id)), unwritten[0])
            samples = sorted([*store.iter_samples(run_id), *unwritten[1]], key=_t_s)
            profiles = [*store.iter_profiles(run_id), *unwritten[2]]
        except Exception as exc:
            if not is_store_error(exc):
                raise
            failure = describe_store_error(exc, store.location)
            record = self._record
            kept = writer.kept_windows() if writer is not None else []
            windows = kept if kept is not None else unwritten[0]
            samples, profiles = unwritten[1], unwritten[2]
        changes: dict[str, Any] = {} if self.summary is None else {"summary": self.summary}
        run = replace(
            record,
            status=self.status,
            duration_s=time.monotonic() - self.started,
            probes_unavailable=self._unavailable(),
            error=self.error,
            **changes,
        )
        document = run_document(run, windows, samples, (), profiles)
        for finisher in self._finishers:
            try:
                finisher(document)
            except Exception as exc:
                if not is_store_error(exc):
                    raise
                failure = failure or describe_store_error(exc, store.location)
        if failure is None and writer is not None and writer.error is not None:
            failure = writer.error  # still failing after the final retries
        if failure is None:
            try:
                store.finish_run(
                    run_id,
                    status=run.status,
                    duration_s=run.duration_s or 0.0,
                    summary=summary_for_history(store, run_id, document),
                    probes_unavailable=run.probes_unavailable,
                    error=self.error,
                )
            except Exception as exc:
                if not is_store_error(exc):
                    raise
                failure = describe_store_error(exc, store.location)
        if failure is not None:
            self._keep_elsewhere(document, failure)
        self._result = RunResult(run_id, self.status, document)

    def _unavailable(self) -> dict[str, str]:
        local = dict(self.sampler.unavailable) if self.sampler else {}
        if self.local_source is not None:
            local = {f"{self.local_source}:{name}": why for name, why in local.items()}
        return {**local, **self.unavailable_elsewhere}

    def _keep_elsewhere(self, document: dict[str, Any], failure: str) -> None:
        """The store failed: the run is `failed`, and its whole document goes to a file
        (next to the database, else the working directory, else the temp directory)."""
        self.status = document["status"] = "failed"
        path = write_fallback_document(
            document, self.store.location, f"the run could not be stored: {failure}"
        )
        self.error = document["error"]
        if path is None:
            self.error = document["error"] = f"{self.error}; no file could hold its document"


def stop_recording(
    sampler: Sampler | None,
    writer: StoreWriter | None,
    probes: Sequence[Probe],
    t0: float,
    error: str | None,
    view: StacksView | None = None,
) -> str | None:
    """Stop sampling and flush everything to the store (what a failing store could not
    take stays with the writer: `StoreWriter.unwritten`); the run's error, as given."""
    if sampler is not None:
        sampler.stop()
    if writer is None:
        return error
    store_profiles(probes, t0, writer, view)  # the windows the last tick did not collect
    writer.close()
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


def _merged(stored: list[Window], unwritten: list[Window]) -> list[Window]:
    written = {w.index for w in stored}
    return sorted([*stored, *(w for w in unwritten if w.index not in written)], key=_index)


def _index(window: Window) -> int:
    return window.index


def _t_s(sample: SampleRecord) -> float:
    return sample.t_s


def write_fallback_document(document: dict[str, Any], location: str, error: str) -> Path | None:
    """Write `document`, failed with `error`, where it fits: beside the database file,
    else the working directory, else the temp directory. Its `error` names the file
    written; the path, or None."""
    name = f"perfsleuth-run-{document.get('run_id')}-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.json"
    beside = Path(location).parent if Path(location).is_absolute() else None
    document["error"] = error
    for directory in (beside, Path.cwd(), Path(tempfile.gettempdir())):
        if directory is None:
            continue
        path = directory / name
        document["error"] = f"{error}; its document is in {path}"
        try:
            path.write_text(json.dumps(document, indent=2, default=str) + "\n", "utf-8")
        except OSError:
            with contextlib.suppress(OSError):
                path.unlink()
            continue
        return path
    document["error"] = error
    return None


@contextmanager
def interrupts_deferred() -> Iterator[None]:
    """Ignore the stop signals inside the block (main thread only), then restore them."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {signum: signal.getsignal(signum) for signum in STOP_SIGNALS}
    for signum in previous:
        signal.signal(signum, signal.SIG_IGN)
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
