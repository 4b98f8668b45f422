"""Pipelines and results: pipeline, pipeline_run and pipeline_node; a run's results and the
pipeline node that started it; schedules of pipelines (schedule.job may now be null).

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-06 07:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def _dates() -> list[sa.Column[object]]:
    return [
        sa.Column("creation_date", sa.DateTime(timezone=True), nullable=False),
        sa.Column("update_date", sa.DateTime(timezone=True), nullable=False),
    ]


def upgrade() -> None:
    with op.batch_alter_table("run", schema=None) as batch_op:
        batch_op.add_column(sa.Column("results", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("pipeline_run", sa.String(36), nullable=True))
        batch_op.add_column(sa.Column("pipeline_node", sa.String(100), nullable=True))
        batch_op.create_index("ix_run_pipeline_run", ["pipeline_run"])
    with op.batch_alter_table("schedule", schema=None) as batch_op:
        batch_op.alter_column("job", existing_type=sa.String(100), nullable=True)
        batch_op.add_column(sa.Column("pipeline", sa.String(100), nullable=True))
    op.create_table(
        "pipeline",
        sa.Column("project", sa.String(100), nullable=False),
        sa.Column("identifier", sa.String(100), nullable=False),
        sa.Column("display_name", sa.Text(), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("parameters", sa.JSON(), nullable=False),
        sa.Column("nodes", sa.JSON(), nullable=False),
        sa.Column("is_enabled", sa.Boolean(), nullable=False),
        *_dates(),
        sa.ForeignKeyConstraint(
            ["project"],
            ["project.identifier"],
            name="fk_pipeline_project_project",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("project", "identifier", name="pk_pipeline"),
    )
    op.create_table(
        "pipeline_run",
        sa.Column("identifier", sa.String(36), nullable=False),
        sa.Column("project", sa.String(100), nullable=False),
        sa.Column("pipeline", sa.String(100), nullable=False),
        sa.Column("parameters", sa.JSON(), nullable=False),
        sa.Column("secret_parameters", sa.JSON(), nullable=True),
        sa.Column("source", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("nodes", sa.JSON(), nullable=False),
        sa.Column("should_cancel", sa.Boolean(), nullable=False),
        sa.Column("advance_date", sa.DateTime(timezone=True), nullable=True),
        sa.Column("start_date", sa.DateTime(timezone=True), nullable=True),
        sa.Column("completion_date", sa.DateTime(timezone=True), nullable=True),
        *_dates(),
        sa.ForeignKeyConstraint(
            ["project"],
            ["project.identifier"],
            name="fk_pipeline_run_project_project",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("identifier", name="pk_pipeline_run"),
    )
    op.create_index(
        "ix_pipeline_run_project_creation",
        "pipeline_run",
        ["project", "creation_date", "identifier"],
    )
    op.create_index(
        "ix_pipeline_run_project_pipeline_creation",
        "pipeline_run",
        ["project", "pipeline", "creation_date", "identifier"],
    )
    op.create_index("ix_pipeline_run_advance", "pipeline_run", ["advance_date"])
    op.create_index("ix_pipeline_run_status", "pipeline_run", ["status"])
    op.create_table(
        "pipeline_node",
        sa.Column("pipeline_run", sa.String(36), nullable=False),
        sa.Column("node", sa.String(100), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("run", sa.String(36), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("decided_by", sa.String(100), nullable=True),
        sa.Column("comment", sa.Text(), nullable=True),
        sa.Column("decision_date", sa.DateTime(timezone=True), nullable=True),
        *_dates(),
        sa.ForeignKeyConstraint(
            ["pipeline_run"],
            ["pipeline_run.identifier"],
            name="fk_pipeline_node_pipeline_run_pipeline_run",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("pipeline_run", "node", name="pk_pipeline_node"),
    )
    op.create_index("ix_pipeline_node_run", "pipeline_node", ["run"])


def downgrade() -> None:
    op.drop_index("ix_pipeline_node_run", table_name="pipeline_node")
    op.drop_table("pipeline_node")
    for index in (
        "ix_pipeline_run_status",
        "ix_pipeline_run_advance",
        "ix_pipeline_run_project_pipeline_creation",
        "ix_pipeline_run_project_creation",
    ):
        op.drop_index(index, table_name="pipeline_run")
    op.drop_table("pipeline_run")
    op.drop_table("pipeline")
    with op.batch_alter_table("schedule", schema=None) as batch_op:
        batch_op.drop_column("pipeline")
        batch_op.alter_column("job", existing_type=sa.String(100), nullable=False)
    with op.batch_alter_table("run", schema=None) as batch_op:
        batch_op.drop_index("ix_run_pipeline_run")
        batch_op.drop_column("pipeline_node")
        batch_op.drop_column("pipeline_run")
        batch_op.drop_column("results")
