"""Profiles: stack samples per stretch of a run (py-spy), for top functions and export.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-25
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "profiles",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column(
            "run_id", sa.Integer(), sa.ForeignKey("runs.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("t_s", sa.Float(), nullable=False),
        sa.Column("duration_s", sa.Float(), nullable=False),
        sa.Column("samples", sa.Integer(), nullable=False),
        sa.Column("stacks", sa.JSON(), nullable=False),
    )
    op.create_index("ix_profiles_run_t", "profiles", ["run_id", "t_s"])


def downgrade() -> None:
    op.drop_index("ix_profiles_run_t", table_name="profiles")
    op.drop_table("profiles")
