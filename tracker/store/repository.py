"""`Store`: the only code that reads and writes runs, windows, probe samples and findings.

Used by `tracker.recording.runner` (writing during a run, through `tracker.store.writer`) and by
the CLI's `show` and reports (reading).
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, delete, insert, select, update
from sqlalchemy.orm import Session

from tracker.errors import UsageError
from tracker.records.stored import FindingRecord, ProfileRecord, RunRecord, SampleRecord
from tracker.records.window import LATENCY, Histogram, Window
from tracker.store.database import create_db_engine, location, migrate, resolve_url
from tracker.store.failures import StoreError
from tracker.store.liveness import ABANDONED, live_status
from tracker.store.models import (
    AcknowledgementModel,
    FindingModel,
    ProbeSampleModel,
    ProfileModel,
    RunModel,
    WindowModel,
)


class Store:
    """A perfsleuth database, migrated to the current schema on open."""

    def __init__(self, engine: Engine, url: str) -> None:
        self._engine = engine
        self.url = url
        self._file_identity = self._sqlite_file_identity()

    @classmethod
    def open(
        cls,
        url: str | None = None,
        *,
        upgrade: bool = True,
        for_reading: bool = False,
        force: bool = False,
    ) -> Store:
        """Open `url` (see `resolve_url`) and, unless told not to, migrate it to head.

        `for_reading`: the command only reads; a SQLite file it cannot write is opened
        read-only. `force`: add perfsleuth's schema to a database holding other tables."""
        resolved = resolve_url(url)
        engine = create_db_engine(resolved, for_reading=for_reading)
        if upgrade:
            migrate(engine, force=force)
        return cls(engine, resolved)

    def reopened(self, *, busy_timeout_s: float) -> Store:
        """The same database through connections of its own, whose SQLite writes give up
        on another process's lock after `busy_timeout_s` (`close` them when done)."""
        return Store(create_db_engine(self.url, busy_timeout_s=busy_timeout_s), self.url)

    @property
    def location(self) -> str:
        """Where the data lives, for people: a SQLite file's absolute path, or the URL
        without its password."""
        return location(self._engine)

    @property
    def engine(self) -> Engine:
        return self._engine

    def check_intact(self) -> None:
        """Raise StoreError if the SQLite file was deleted or replaced since it was opened:
        SQLite would go on writing into the deleted file, and the run would be lost."""
        if self._file_identity is not None and self._sqlite_file_identity() != self._file_identity:
            raise StoreError(
                f"the database file {self.location} was deleted or replaced during the run"
            )

    def _sqlite_file_identity(self) -> tuple[int, int] | None:
        url = self._engine.url
        if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
            return None
        try:
            st = os.stat(Path(url.database).expanduser())
        except OSError:
            return (-1, -1)
        return (st.st_dev, st.st_ino)

    def close(self) -> None:
        self._engine.dispose()

    # -- writing -------------------------------------------------------------------------

    def create_run(
        self,
        *,
        scenario: str,
        scenario_key: str,
        scenario_json: dict[str, Any],
        environment: dict[str, Any],
        tag: str | None = None,
        group: str | None = None,
        target_url: str | None = None,
        load_model: str | None = None,
        started_at: datetime | None = None,
    ) -> int:
        """Store a new run with status `running` and return its id."""
        with Session(self._engine) as session, session.begin():
            run = RunModel(
                status="running",
                # The column holds 200 characters (PostgreSQL enforces it); a name made
                # from a long URL is cut, its identity (scenario_key) is not.
                scenario=scenario if len(scenario) <= 200 else scenario[:199] + "…",
                scenario_key=scenario_key,
                scenario_json=scenario_json,
                tag=tag,
                group_name=group,
                started_at=started_at or datetime.now(UTC),
                target_url=target_url,
                load_model=load_model,
                environment=environment,
            )
            session.add(run)
            session.flush()
            return run.id

    def add_windows(self, run_id: int, windows: Sequence[Window]) -> None:
        self.add_window_rows([window_row(run_id, w) for w in windows])

    def add_window_rows(self, rows: Sequence[dict[str, Any]]) -> None:
        """Windows already encoded by `window_row` (the store writer keeps them so)."""
        if not rows:
            return
        with self._engine.begin() as conn:
            conn.execute(insert(WindowModel), list(rows))

    def add_samples(self, run_id: int, samples: Sequence[SampleRecord]) -> None:
        if not samples:
            return
        rows = [
            {
                "run_id": run_id,
                "t_s": s.t_s,
                "target_alive": s.target_alive,
                "note": s.note,
                "source": s.source,
                # PostgreSQL's json rejects NaN and infinities; one would lose the batch.
                "metrics": {k: v for k, v in s.metrics.items() if math.isfinite(v)},
            }
            for s in samples
        ]
        with self._engine.begin() as conn:
            conn.execute(insert(ProbeSampleModel), rows)

    def add_profiles(self, run_id: int, profiles: Sequence[ProfileRecord]) -> None:
        if not profiles:
            return
        rows = [
            {
                "run_id": run_id,
                "t_s": p.t_s,
                "duration_s": p.duration_s,
                "samples": p.samples,
                "stacks": p.stacks,
            }
            for p in profiles
        ]
        with self._engine.begin() as conn:
            conn.execute(insert(ProfileModel), rows)

    def iter_profiles(self, run_id: int) -> Iterator[ProfileRecord]:
        """The run's profiles in time order, read a few at a time (they can be large)."""
        with Session(self._engine) as session:
            models = session.scalars(
                select(ProfileModel)
                .where(ProfileModel.run_id == run_id)
                .order_by(ProfileModel.t_s)
                .execution_options(yield_per=50)
            )
            for m in models:
                yield ProfileRecord(m.t_s, m.duration_s, m.samples, dict(m.stacks))

    def replace_findings(self, run_id: int, findings: Iterable[FindingRecord]) -> None:
        rows = [{"run_id": run_id, **f.to_json()} for f in findings]
        with self._engine.begin() as conn:
            conn.execute(delete(FindingModel).where(FindingModel.run_id == run_id))
            if rows:
                conn.execute(insert(FindingModel), rows)

    def finish_run(
        self,
        run_id: int,
        *,
        status: str,
        duration_s: float,
        summary: dict[str, Any] | None = None,
        probes_unavailable: dict[str, str] | None = None,
        error: str | None = None,
    ) -> None:
        with self._engine.begin() as conn:
            conn.execute(
                update(RunModel)
                .where(RunModel.id == run_id)
                .values(
                    status=status,
                    ended_at=datetime.now(UTC),
                    duration_s=duration_s,
                    summary=summary,
                    probes_unavailable=probes_unavailable or {},
                    error=error,
                )
            )

    # -- reading -------------------------------------------------------------------------

    def get_run(self, spec: str | int) -> RunRecord:
        """A run by id, or `latest`. Raises UsageError when there is no such run."""
        with Session(self._engine) as session:
            if isinstance(spec, str) and spec == "latest":
                model = session.scalars(select(RunModel).order_by(RunModel.id.desc())).first()
                if model is None:
                    raise UsageError(
                        f"no runs stored yet in {self.location}; start one with `perfsleuth run`"
                    )
            else:
                try:
                    run_id = int(spec)
                    if not 0 < run_id < 2**31:  # ids are 32-bit integers in PostgreSQL
                        raise ValueError
                except ValueError:
                    raise UsageError(
                        f"RUN: {spec!r} is not a run id; give a number or `latest`"
                    ) from None
                model = session.get(RunModel, run_id)
                if model is None:
                    raise UsageError(
                        f"no run {run_id} in {self.location}; list runs with `perfsleuth history`"
                    )
            return _run_record(model)

    def list_runs(self, limit: int = 50, *, status: str | None = None) -> list[RunRecord]:
        """The newest runs; with `status`, only those in it (`abandoned` included)."""
        query = select(RunModel).order_by(RunModel.id.desc())
        if status == ABANDONED:
            query = query.where(RunModel.status == "running")
        elif status is not None:
            query = query.where(RunModel.status == status)
        with Session(self._engine) as session:
            runs = (_run_record(m) for m in session.scalars(query))
            chosen = [r for r in runs if status is None or r.status == status]
            return chosen[:limit]

    def has_windows(self, run_id: int) -> bool:
        with Session(self._engine) as session:
            return (
                session.scalars(
                    select(WindowModel.id).where(WindowModel.run_id == run_id).limit(1)
                ).first()
                is not None
            )

    def delete_run(self, run_id: int) -> None:
        """Remove a run and everything stored with it."""
        with self._engine.begin() as conn:
            for model in (WindowModel, ProbeSampleModel, ProfileModel, FindingModel):
                conn.execute(delete(model).where(model.run_id == run_id))
            conn.execute(delete(RunModel).where(RunModel.id == run_id))

    def comparable_runs(
        self, scenario_key: str, *, before_id: int | None = None, limit: int = 20
    ) -> list[RunRecord]:
        """Completed runs of one scenario identity, newest first (older than `before_id`)."""
        query = select(RunModel).where(
            RunModel.scenario_key == scenario_key, RunModel.status == "completed"
        )
        if before_id is not None:
            query = query.where(RunModel.id < before_id)
        with Session(self._engine) as session:
            models = session.scalars(query.order_by(RunModel.id.desc()).limit(limit))
            return [_run_record(m) for m in models]

    def series(self, scenario_key: str, *, limit: int = 200) -> list[RunRecord]:
        """The newest `limit` completed runs of one scenario identity, oldest first."""
        return self.comparable_runs(scenario_key, limit=limit)[::-1]

    def group_runs(self, group: str) -> list[RunRecord]:
        """Runs made with `run --group NAME` (one per host), in id order."""
        with Session(self._engine) as session:
            models = session.scalars(
                select(RunModel).where(RunModel.group_name == group).order_by(RunModel.id)
            )
            return [_run_record(m) for m in models]

    def acknowledge(
        self, scenario_key: str, metric: str, run_id: int, note: str | None = None
    ) -> bool:
        """Accept the change point of `metric` at `run_id`; False if it already was."""
        with Session(self._engine) as session, session.begin():
            exists = session.scalars(
                select(AcknowledgementModel.id).where(
                    AcknowledgementModel.scenario_key == scenario_key,
                    AcknowledgementModel.metric == metric,
                    AcknowledgementModel.run_id == run_id,
                )
            ).first()
            if exists is not None:
                return False
            session.add(
                AcknowledgementModel(
                    scenario_key=scenario_key,
                    metric=metric,
                    run_id=run_id,
                    note=note,
                    created_at=datetime.now(UTC),
                )
            )
            return True

    def acknowledgements(self, scenario_key: str) -> dict[tuple[str, int], str | None]:
        """Accepted change points of a scenario: (metric, run id) -> note."""
        with Session(self._engine) as session:
            rows = session.execute(
                select(
                    AcknowledgementModel.metric,
                    AcknowledgementModel.run_id,
                    AcknowledgementModel.note,
                ).where(AcknowledgementModel.scenario_key == scenario_key)
            )
            return {(metric, run_id): note for metric, run_id, note in rows}

    def tagged_runs(self, tag: str, *, limit: int = 1000) -> list[RunRecord]:
        """Runs carrying `tag`, newest first, whatever their scenario or status."""
        with Session(self._engine) as session:
            models = session.scalars(
                select(RunModel)
                .where(RunModel.tag == tag)
                .order_by(RunModel.id.desc())
                .limit(limit)
            )
            return [_run_record(m) for m in models]

    def windows(self, run_id: int) -> list[Window]:
        return list(self.iter_windows(run_id))

    def iter_windows(self, run_id: int) -> Iterator[Window]:
        """Windows in time order, decoded a batch at a time so long runs stay small."""
        with Session(self._engine) as session:
            models = session.scalars(
                select(WindowModel)
                .where(WindowModel.run_id == run_id)
                .order_by(WindowModel.idx)
                .execution_options(yield_per=200)
            )
            for model in models:
                yield _window(model)

    def samples(self, run_id: int) -> list[SampleRecord]:
        return list(self.iter_samples(run_id))

    def iter_samples(self, run_id: int) -> Iterator[SampleRecord]:
        """The run's probe samples, of every source, in time order, read a batch at a time
        (a long run at 4 Hz holds tens of thousands)."""
        with Session(self._engine) as session:
            models = session.scalars(
                select(ProbeSampleModel)
                .where(ProbeSampleModel.run_id == run_id)
                .order_by(ProbeSampleModel.t_s)
                .execution_options(yield_per=500)
            )
            for m in models:
                yield SampleRecord(m.t_s, dict(m.metrics), m.target_alive, m.note, m.source)

    def findings(self, run_id: int) -> list[FindingRecord]:
        with Session(self._engine) as session:
            models = session.scalars(
                select(FindingModel)
                .where(FindingModel.run_id == run_id)
                .order_by(FindingModel.start_s)
            )
            return [
                FindingRecord(
                    m.start_s,
                    m.end_s,
                    m.metric,
                    m.change_pct,
                    m.cause,
                    list(m.causes),
                    m.confidence,
                    list(m.evidence),
                    m.advice,
                    m.flagged_at_s,
                )
                for m in models
            ]


def _run_record(m: RunModel) -> RunRecord:
    started = m.started_at if m.started_at.tzinfo else m.started_at.replace(tzinfo=UTC)
    ended = m.ended_at
    if ended is not None and ended.tzinfo is None:
        ended = ended.replace(tzinfo=UTC)
    return RunRecord(
        id=m.id,
        status=live_status(m.status, m.environment or {}),
        scenario=m.scenario,
        scenario_key=m.scenario_key,
        scenario_json=dict(m.scenario_json),
        tag=m.tag,
        started_at=started,
        ended_at=ended,
        duration_s=m.duration_s,
        target_url=m.target_url,
        load_model=m.load_model,
        environment=dict(m.environment),
        summary=dict(m.summary) if m.summary is not None else None,
        probes_unavailable=dict(m.probes_unavailable or {}),
        error=m.error,
        group_name=m.group_name,
    )


def window_row(run_id: int, w: Window) -> dict[str, Any]:
    """One window as the windows table holds it: histograms encoded (a few KB), the
    latency median and p99 precomputed for `history`."""
    latency = w.histograms.get(LATENCY)
    counted = latency is not None and latency.count > 0
    return {
        "run_id": run_id,
        "idx": w.index,
        "start_s": w.start_s,
        "duration_s": w.duration_s,
        "warmup": w.warmup,
        "sent": w.sent,
        "completed": w.completed,
        "ok": w.ok,
        "errors": w.errors,
        "dropped": w.dropped,
        "output_tokens": w.output_tokens,
        "good": w.good,
        "errors_by_class": w.errors_by_class,
        "by_request": w.by_request or None,
        "counters": w.counters or None,
        "latency_p50_ms": latency.percentile_ms(50) if latency and counted else None,
        "latency_p99_ms": latency.percentile_ms(99) if latency and counted else None,
        "histograms": w.encoded_histograms(),
    }


def window_from_row(row: Mapping[str, Any]) -> Window:
    """The window a `window_row` holds, histograms decoded."""
    return Window(
        index=row["idx"],
        start_s=row["start_s"],
        duration_s=row["duration_s"],
        sent=row["sent"],
        completed=row["completed"],
        ok=row["ok"],
        errors=row["errors"],
        dropped=row["dropped"],
        output_tokens=row["output_tokens"],
        good=row["good"],
        errors_by_class=dict(row["errors_by_class"]),
        by_request={k: dict(v) for k, v in (row["by_request"] or {}).items()},
        counters=dict(row["counters"] or {}),
        histograms={name: Histogram.decode(text) for name, text in row["histograms"].items()},
        warmup=row["warmup"],
    )


def _window(m: WindowModel) -> Window:
    return window_from_row({c: getattr(m, c) for c in _WINDOW_COLUMNS})


_WINDOW_COLUMNS = (
    "idx", "start_s", "duration_s", "sent", "completed", "ok", "errors", "dropped",
    "output_tokens", "good", "errors_by_class", "by_request", "counters", "histograms",
    "warmup",
)  # fmt: skip
