"""run_log.date: when the worker read each chunk of output, the timestamps of its lines

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-06 10:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Nullable, with no default: adding it rewrites no row on either engine (a chunk stored
    # before has no time, and is shown without one).
    with op.batch_alter_table("run_log", schema=None) as batch_op:
        batch_op.add_column(sa.Column("date", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("run_log", schema=None) as batch_op:
        batch_op.drop_column("date")
