"""SQLAlchemy 2.0 table models. The schema itself is created only by Alembic migrations.

Used by `tracker.store.repository` and, for autogenerate, by `migrations/env.py`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, DateTime, Float, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class RunModel(Base):
    __tablename__ = "runs"
    __table_args__ = (
        Index("ix_runs_key_status_id", "scenario_key", "status", "id"),
        Index("ix_runs_group_name", "group_name"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    status: Mapped[str] = mapped_column(String(16), index=True)
    scenario: Mapped[str] = mapped_column(String(200), index=True)
    scenario_key: Mapped[str] = mapped_column(String(64), index=True)
    scenario_json: Mapped[dict[str, Any]] = mapped_column(JSON)
    tag: Mapped[str | None] = mapped_column(String(100), index=True)
    group_name: Mapped[str | None] = mapped_column(String(100))
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    ended_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    duration_s: Mapped[float | None] = mapped_column(Float)
    target_url: Mapped[str | None] = mapped_column(Text)
    load_model: Mapped[str | None] = mapped_column(String(16))
    environment: Mapped[dict[str, Any]] = mapped_column(JSON)
    summary: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    probes_unavailable: Mapped[dict[str, str] | None] = mapped_column(JSON)
    error: Mapped[str | None] = mapped_column(Text)


class WindowModel(Base):
    __tablename__ = "windows"
    __table_args__ = (Index("ix_windows_run_idx", "run_id", "idx", unique=True),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    idx: Mapped[int] = mapped_column(Integer)
    start_s: Mapped[float] = mapped_column(Float)
    duration_s: Mapped[float] = mapped_column(Float)
    warmup: Mapped[bool] = mapped_column(Boolean)
    sent: Mapped[int] = mapped_column(Integer)
    completed: Mapped[int] = mapped_column(Integer)
    ok: Mapped[int] = mapped_column(Integer)
    errors: Mapped[int] = mapped_column(Integer)
    dropped: Mapped[int] = mapped_column(Integer)
    output_tokens: Mapped[int] = mapped_column(Integer)
    good: Mapped[int] = mapped_column(Integer, server_default="0")
    errors_by_class: Mapped[dict[str, int]] = mapped_column(JSON)
    by_request: Mapped[dict[str, dict[str, int]] | None] = mapped_column(JSON)
    counters: Mapped[dict[str, int] | None] = mapped_column(JSON)
    # Quick columns for history queries; exact values come from the histograms.
    latency_p50_ms: Mapped[float | None] = mapped_column(Float)
    latency_p99_ms: Mapped[float | None] = mapped_column(Float)
    histograms: Mapped[dict[str, str]] = mapped_column(JSON)


class ProbeSampleModel(Base):
    __tablename__ = "probe_samples"
    __table_args__ = (Index("ix_probe_samples_run_t", "run_id", "t_s"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    t_s: Mapped[float] = mapped_column(Float)
    target_alive: Mapped[bool] = mapped_column(Boolean)
    note: Mapped[str | None] = mapped_column(Text)
    metrics: Mapped[dict[str, float]] = mapped_column(JSON)
    # None: the server's host as the run observed it; else another host (SampleRecord).
    source: Mapped[str | None] = mapped_column(String(200))


class ProfileModel(Base):
    """Stack samples of one stretch of a run: collapsed stacks and their counts."""

    __tablename__ = "profiles"
    __table_args__ = (Index("ix_profiles_run_t", "run_id", "t_s"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    t_s: Mapped[float] = mapped_column(Float)
    duration_s: Mapped[float] = mapped_column(Float)
    samples: Mapped[int] = mapped_column(Integer)
    # {"frame;frame;frame": count}, root first, as in the collapsed (folded) format.
    stacks: Mapped[dict[str, int]] = mapped_column(JSON)


class FindingModel(Base):
    __tablename__ = "findings"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    start_s: Mapped[float] = mapped_column(Float)
    end_s: Mapped[float] = mapped_column(Float)
    metric: Mapped[str] = mapped_column(String(100))
    change_pct: Mapped[float] = mapped_column(Float)
    cause: Mapped[str] = mapped_column(String(32))
    causes: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    confidence: Mapped[float] = mapped_column(Float)
    evidence: Mapped[list[str]] = mapped_column(JSON)
    advice: Mapped[str | None] = mapped_column(Text)
    flagged_at_s: Mapped[float | None] = mapped_column(Float)


class AcknowledgementModel(Base):
    """A change point someone accepted (an intended trade-off): it no longer alerts."""

    __tablename__ = "acknowledgements"
    __table_args__ = (
        Index(
            "ix_acknowledgements_key_metric_run", "scenario_key", "metric", "run_id", unique=True
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    scenario_key: Mapped[str] = mapped_column(String(64))
    metric: Mapped[str] = mapped_column(String(100))
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    note: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
