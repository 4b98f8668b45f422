"""job controls

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28 11:22:43.302509
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("job", schema=None) as batch_op:
        batch_op.add_column(sa.Column("timeout", sa.Float(), nullable=True))
        batch_op.add_column(sa.Column("retry", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("concurrency", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("priority", sa.Integer(), server_default="0", nullable=False))
        batch_op.add_column(sa.Column("expiry", sa.Float(), nullable=True))

    with op.batch_alter_table("project", schema=None) as batch_op:
        batch_op.add_column(sa.Column("concurrency", sa.Integer(), nullable=True))

    with op.batch_alter_table("run", schema=None) as batch_op:
        batch_op.add_column(sa.Column("timeout", sa.Float(), nullable=True))
        batch_op.add_column(sa.Column("retry", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("priority", sa.Integer(), server_default="0", nullable=False))
        batch_op.add_column(sa.Column("expiry_date", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("attempt", sa.Integer(), server_default="1", nullable=False))
        batch_op.add_column(sa.Column("retry_of", sa.String(length=36), nullable=True))
        batch_op.add_column(sa.Column("not_before", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("secret_parameters", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("warning", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("forced_by", sa.String(length=100), nullable=True))
        batch_op.create_index(
            "ix_run_dispatch", ["status", "project", "priority", "creation_date"], unique=False
        )
        batch_op.create_unique_constraint(batch_op.f("uq_run_retry_of"), ["retry_of"])

    with op.batch_alter_table("run_step", schema=None) as batch_op:
        batch_op.add_column(sa.Column("timeout", sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("run_step", schema=None) as batch_op:
        batch_op.drop_column("timeout")

    with op.batch_alter_table("run", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("uq_run_retry_of"), type_="unique")
        batch_op.drop_index("ix_run_dispatch")
        batch_op.drop_column("forced_by")
        batch_op.drop_column("warning")
        batch_op.drop_column("secret_parameters")
        batch_op.drop_column("not_before")
        batch_op.drop_column("retry_of")
        batch_op.drop_column("attempt")
        batch_op.drop_column("expiry_date")
        batch_op.drop_column("priority")
        batch_op.drop_column("retry")
        batch_op.drop_column("timeout")

    with op.batch_alter_table("project", schema=None) as batch_op:
        batch_op.drop_column("concurrency")

    with op.batch_alter_table("job", schema=None) as batch_op:
        batch_op.drop_column("expiry")
        batch_op.drop_column("priority")
        batch_op.drop_column("concurrency")
        batch_op.drop_column("retry")
        batch_op.drop_column("timeout")
