"""History: acknowledged change points, and lookups of a scenario's series and of groups.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-25
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "acknowledgements",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("scenario_key", sa.String(64), nullable=False),
        sa.Column("metric", sa.String(100), nullable=False),
        # The first run of the new level: the change point's position in the series.
        sa.Column(
            "run_id", sa.Integer(), sa.ForeignKey("runs.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index(
        "ix_acknowledgements_key_metric_run",
        "acknowledgements",
        ["scenario_key", "metric", "run_id"],
        unique=True,
    )
    # A scenario's nightly series is read newest first; a group's runs by name.
    op.create_index("ix_runs_key_status_id", "runs", ["scenario_key", "status", "id"])
    op.create_index("ix_runs_group_name", "runs", ["group_name"])


def downgrade() -> None:
    op.drop_index("ix_runs_group_name", table_name="runs")
    op.drop_index("ix_runs_key_status_id", table_name="runs")
    op.drop_index("ix_acknowledgements_key_metric_run", table_name="acknowledgements")
    op.drop_table("acknowledgements")
