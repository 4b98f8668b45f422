"""Artifacts: a run's stored files (artifact), the uploads in progress (artifact_upload), the
job's artifacts entries (copied to the run at trigger) and the run's JUnit counts.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-06 09:10:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("job", schema=None) as batch_op:
        batch_op.add_column(sa.Column("artifacts", sa.JSON(), nullable=True))
    with op.batch_alter_table("run", schema=None) as batch_op:
        batch_op.add_column(sa.Column("artifact_rules", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("tests", sa.JSON(), nullable=True))
    op.create_table(
        "artifact",
        sa.Column("run", sa.String(36), nullable=False),
        sa.Column("path", sa.String(1000), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("creation_date", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["run"], ["run.identifier"], name="fk_artifact_run_run", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("run", "path", name="pk_artifact"),
    )
    op.create_table(
        "artifact_upload",
        sa.Column("run", sa.String(36), nullable=False),
        sa.Column("path", sa.String(1000), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("offset", sa.BigInteger(), nullable=False),
        sa.Column("key", sa.String(100), nullable=False),
        sa.Column("store_upload", sa.Text(), nullable=True),
        sa.Column("parts", sa.JSON(), nullable=False),
        sa.Column("junit", sa.JSON(), nullable=True),
        sa.Column("creation_date", sa.DateTime(timezone=True), nullable=False),
        sa.Column("update_date", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["run"], ["run.identifier"], name="fk_artifact_upload_run_run", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("run", "path", name="pk_artifact_upload"),
    )


def downgrade() -> None:
    op.drop_table("artifact_upload")
    op.drop_table("artifact")
    with op.batch_alter_table("run", schema=None) as batch_op:
        batch_op.drop_column("tests")
        batch_op.drop_column("artifact_rules")
    with op.batch_alter_table("job", schema=None) as batch_op:
        batch_op.drop_column("artifacts")
