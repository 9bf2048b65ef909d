"""Initial schema: runs, windows, probe samples, findings.

Revision ID: 0001
Revises:
Create Date: 2026-11-25
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "runs",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("scenario", sa.String(200), nullable=False),
        sa.Column("scenario_key", sa.String(64), nullable=False),
        sa.Column("scenario_json", sa.JSON(), nullable=False),
        sa.Column("tag", sa.String(100), nullable=True),
        sa.Column("group_name", sa.String(100), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("duration_s", sa.Float(), nullable=True),
        sa.Column("target_url", sa.Text(), nullable=True),
        sa.Column("load_model", sa.String(16), nullable=True),
        sa.Column("environment", sa.JSON(), nullable=False),
        sa.Column("summary", sa.JSON(), nullable=True),
        sa.Column("probes_unavailable", sa.JSON(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
    )
    op.create_index("ix_runs_status", "runs", ["status"])
    op.create_index("ix_runs_scenario", "runs", ["scenario"])
    op.create_index("ix_runs_scenario_key", "runs", ["scenario_key"])
    op.create_index("ix_runs_tag", "runs", ["tag"])
    op.create_index("ix_runs_started_at", "runs", ["started_at"])

    op.create_table(
        "windows",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column(
            "run_id", sa.Integer(), sa.ForeignKey("runs.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("idx", sa.Integer(), nullable=False),
        sa.Column("start_s", sa.Float(), nullable=False),
        sa.Column("duration_s", sa.Float(), nullable=False),
        sa.Column("warmup", sa.Boolean(), nullable=False),
        sa.Column("sent", sa.Integer(), nullable=False),
        sa.Column("completed", sa.Integer(), nullable=False),
        sa.Column("ok", sa.Integer(), nullable=False),
        sa.Column("errors", sa.Integer(), nullable=False),
        sa.Column("dropped", sa.Integer(), nullable=False),
        sa.Column("output_tokens", sa.Integer(), nullable=False),
        sa.Column("errors_by_class", sa.JSON(), nullable=False),
        sa.Column("latency_p50_ms", sa.Float(), nullable=True),
        sa.Column("latency_p99_ms", sa.Float(), nullable=True),
        sa.Column("histograms", sa.JSON(), nullable=False),
    )
    op.create_index("ix_windows_run_idx", "windows", ["run_id", "idx"], unique=True)

    op.create_table(
        "probe_samples",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column(
            "run_id", sa.Integer(), sa.ForeignKey("runs.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("t_s", sa.Float(), nullable=False),
        sa.Column("target_alive", sa.Boolean(), nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("metrics", sa.JSON(), nullable=False),
    )
    op.create_index("ix_probe_samples_run_t", "probe_samples", ["run_id", "t_s"])

    op.create_table(
        "findings",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column(
            "run_id", sa.Integer(), sa.ForeignKey("runs.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("start_s", sa.Float(), nullable=False),
        sa.Column("end_s", sa.Float(), nullable=False),
        sa.Column("metric", sa.String(100), nullable=False),
        sa.Column("change_pct", sa.Float(), nullable=False),
        sa.Column("cause", sa.String(32), nullable=False),
        sa.Column("causes", sa.JSON(), nullable=False),
        sa.Column("confidence", sa.Float(), nullable=False),
        sa.Column("evidence", sa.JSON(), nullable=False),
        sa.Column("advice", sa.Text(), nullable=True),
    )
    op.create_index("ix_findings_run_id", "findings", ["run_id"])


def downgrade() -> None:
    op.drop_table("findings")
    op.drop_table("probe_samples")
    op.drop_table("windows")
    op.drop_table("runs")
