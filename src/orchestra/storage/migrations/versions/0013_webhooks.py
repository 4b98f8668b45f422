"""Webhooks in: a job's and a pipeline's `webhook` (its secret encrypted), and the deliveries
that started a run, remembered a day so that a replayed delivery starts nothing new.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-06 09:20:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("job", schema=None) as batch_op:
        batch_op.add_column(sa.Column("webhook", sa.JSON(), nullable=True))
    with op.batch_alter_table("pipeline", schema=None) as batch_op:
        batch_op.add_column(sa.Column("webhook", sa.JSON(), nullable=True))
    op.create_table(
        "webhook_delivery",
        sa.Column("project", sa.String(100), nullable=False),
        sa.Column("kind", sa.String(10), nullable=False),
        sa.Column("target", sa.String(100), nullable=False),
        sa.Column("delivery", sa.String(200), nullable=False),
        sa.Column("run", sa.String(36), nullable=True),
        sa.Column("creation_date", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint(
            "project", "kind", "target", "delivery", name="pk_webhook_delivery"
        ),
    )
    op.create_index("ix_webhook_delivery_creation", "webhook_delivery", ["creation_date"])


def downgrade() -> None:
    op.drop_index("ix_webhook_delivery_creation", table_name="webhook_delivery")
    op.drop_table("webhook_delivery")
    with op.batch_alter_table("pipeline", schema=None) as batch_op:
        batch_op.drop_column("webhook")
    with op.batch_alter_table("job", schema=None) as batch_op:
        batch_op.drop_column("webhook")
