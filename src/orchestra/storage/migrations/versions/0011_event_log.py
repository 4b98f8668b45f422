"""The change log: one row per change to a run, pipeline run, worker or schedule, written in the
transaction that made it; the outbox of the live event stream and of notifications.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-06 09:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "event_log",
        sa.Column(
            "identifier",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("type", sa.String(40), nullable=False),
        sa.Column("project", sa.String(100), nullable=True),
        sa.Column("subject", sa.String(100), nullable=False),
        sa.Column("status", sa.String(20), nullable=True),
        sa.Column("date", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("identifier", name="pk_event_log"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_event_log_date", "event_log", ["date"])


def downgrade() -> None:
    op.drop_index("ix_event_log_date", table_name="event_log")
    op.drop_table("event_log")
