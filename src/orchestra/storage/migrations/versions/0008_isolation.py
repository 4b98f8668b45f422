"""job.sandbox, job.limits and their copies on run: isolation of a job's steps

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06 04:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    for table in ("job", "run"):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(sa.Column("sandbox", sa.JSON(), nullable=True))
            batch_op.add_column(sa.Column("limits", sa.JSON(), nullable=True))


def downgrade() -> None:
    for table in ("run", "job"):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_column("limits")
            batch_op.drop_column("sandbox")
