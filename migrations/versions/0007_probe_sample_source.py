"""Probe samples: the host they were taken on, when not the server's as observed (an
agent's other hosts, or the load driver's own host beside an agent).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-07
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("probe_samples", sa.Column("source", sa.String(length=200), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("probe_samples") as batch:
        batch.drop_column("source")
