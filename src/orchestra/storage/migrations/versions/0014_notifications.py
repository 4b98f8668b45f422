"""Notifications out: notification (a project's targets), notification_delivery (one event
to send to one of them, with its attempts) and notification_relay (the relay's place in the
change log).

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-06 10:00:00.000000
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def _dates() -> list[sa.Column[object]]:
    return [
        sa.Column("creation_date", sa.DateTime(timezone=True), nullable=False),
        sa.Column("update_date", sa.DateTime(timezone=True), nullable=False),
    ]


def upgrade() -> None:
    op.create_table(
        "notification",
        sa.Column("project", sa.String(100), nullable=False),
        sa.Column("identifier", sa.String(100), nullable=False),
        sa.Column("events", sa.JSON(), nullable=False),
        sa.Column("jobs", sa.JSON(), nullable=True),
        sa.Column("pipelines", sa.JSON(), nullable=True),
        sa.Column("url", sa.Text(), nullable=True),
        sa.Column("email", sa.String(320), nullable=True),
        sa.Column("secret", sa.Text(), nullable=True),
        sa.Column("format", sa.String(10), nullable=False),
        sa.Column("is_enabled", sa.Boolean(), nullable=False),
        *_dates(),
        sa.ForeignKeyConstraint(
            ["project"],
            ["project.identifier"],
            name="fk_notification_project_project",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("project", "identifier", name="pk_notification"),
    )
    op.create_table(
        "notification_delivery",
        sa.Column(
            "identifier",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("message", sa.String(64), nullable=False),
        sa.Column("project", sa.String(100), nullable=False),
        sa.Column("notification", sa.String(100), nullable=False),
        sa.Column("event", sa.String(250), nullable=False),
        sa.Column("type", sa.String(40), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_date", sa.DateTime(timezone=True), nullable=True),
        sa.Column("retry_delay", sa.Float(), nullable=True),
        sa.Column("lease_holder", sa.String(200), nullable=True),
        sa.Column("lease_date", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_attempt_date", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_status_code", sa.Integer(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("delivery_date", sa.DateTime(timezone=True), nullable=True),
        *_dates(),
        sa.ForeignKeyConstraint(
            ["project", "notification"],
            ["notification.project", "notification.identifier"],
            name="fk_notification_delivery_project_notification",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("identifier", name="pk_notification_delivery"),
        sa.UniqueConstraint("message", name="uq_notification_delivery_message"),
        sa.UniqueConstraint(
            "project",
            "notification",
            "event",
            name="uq_notification_delivery_project_notification_event",
        ),
    )
    op.create_index(
        "ix_notification_delivery_due", "notification_delivery", ["status", "next_attempt_date"]
    )
    op.create_index(
        "ix_notification_delivery_queue",
        "notification_delivery",
        ["project", "notification", "status", "identifier"],
    )
    relay = op.create_table(
        "notification_relay",
        sa.Column("name", sa.String(40), nullable=False),
        sa.Column("position", sa.BigInteger(), nullable=False),
        sa.Column("seen", sa.JSON(), nullable=False),
        sa.Column("gap_date", sa.DateTime(timezone=True), nullable=True),
        sa.Column("update_date", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_notification_relay"),
    )
    # No notification exists yet: the relay may start after every row already logged.
    position = op.get_bind().scalar(sa.text("SELECT max(identifier) FROM event_log")) or 0
    op.bulk_insert(
        relay,
        [{"name": "relay", "position": position, "seen": [], "update_date": datetime.now(UTC)}],
    )


def downgrade() -> None:
    op.drop_table("notification_relay")
    op.drop_index("ix_notification_delivery_queue", table_name="notification_delivery")
    op.drop_index("ix_notification_delivery_due", table_name="notification_delivery")
    op.drop_table("notification_delivery")
    op.drop_table("notification")
