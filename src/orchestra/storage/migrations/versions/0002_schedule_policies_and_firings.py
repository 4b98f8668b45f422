"""schedule policies and firings

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28 10:59:33.592123
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "schedule_firing",
        sa.Column("project", sa.String(length=100), nullable=False),
        sa.Column("schedule", sa.String(length=100), nullable=False),
        sa.Column("due_date", sa.DateTime(timezone=True), nullable=False),
        sa.Column("run", sa.String(length=36), nullable=True),
        sa.Column("outcome", sa.String(length=20), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("creation_date", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["project", "schedule"],
            ["schedule.project", "schedule.identifier"],
            name=op.f("fk_schedule_firing_project_schedule"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("project", "schedule", "due_date", name=op.f("pk_schedule_firing")),
    )
    with op.batch_alter_table("schedule", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("overlap", sa.String(length=10), server_default="skip", nullable=False)
        )
        batch_op.add_column(
            sa.Column("catchup", sa.String(length=10), server_default="latest", nullable=False)
        )
        batch_op.add_column(sa.Column("catchup_window", sa.Float(), nullable=True))
        batch_op.add_column(sa.Column("catchup_max", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("next_due_date", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("last_fire_date", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("last_skip_date", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("last_skip_reason", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("queued_due_date", sa.DateTime(timezone=True), nullable=True))
        batch_op.create_index("ix_schedule_due", ["is_enabled", "next_due_date"], unique=False)
        batch_op.create_index("ix_schedule_queued", ["queued_due_date"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("schedule", schema=None) as batch_op:
        batch_op.drop_index("ix_schedule_queued")
        batch_op.drop_index("ix_schedule_due")
        batch_op.drop_column("queued_due_date")
        batch_op.drop_column("last_skip_reason")
        batch_op.drop_column("last_skip_date")
        batch_op.drop_column("last_fire_date")
        batch_op.drop_column("next_due_date")
        batch_op.drop_column("catchup_max")
        batch_op.drop_column("catchup_window")
        batch_op.drop_column("catchup")
        batch_op.drop_column("overlap")

    op.drop_table("schedule_firing")
