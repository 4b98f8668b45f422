"""run.retried_by: the run's next attempt

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-05 22:10:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("run", schema=None) as batch_op:
        batch_op.add_column(sa.Column("retried_by", sa.String(length=36), nullable=True))
    # Runs retried before this revision: the link from their retry.
    op.execute(
        "UPDATE run SET retried_by = (SELECT retry.identifier FROM run AS retry"
        " WHERE retry.retry_of = run.identifier)"
        " WHERE identifier IN (SELECT retry_of FROM run WHERE retry_of IS NOT NULL)"
    )


def downgrade() -> None:
    with op.batch_alter_table("run", schema=None) as batch_op:
        batch_op.drop_column("retried_by")
