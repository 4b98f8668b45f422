"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-28 10:45:25.301843
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:

    op.create_table(
        "project",
        sa.Column("identifier", sa.String(length=100), nullable=False),
        sa.Column("display_name", sa.Text(), nullable=False),
        sa.Column("services", sa.JSON(), nullable=False),
        sa.Column("is_enabled", sa.Boolean(), nullable=False),
        sa.Column("creation_date", sa.DateTime(timezone=True), nullable=False),
        sa.Column("update_date", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("identifier", name=op.f("pk_project")),
    )
    op.create_table(
        "user",
        sa.Column("identifier", sa.String(length=100), nullable=False),
        sa.Column("display_name", sa.Text(), nullable=False),
        sa.Column("roles", sa.JSON(), nullable=False),
        sa.Column("is_enabled", sa.Boolean(), nullable=False),
        sa.Column("creation_date", sa.DateTime(timezone=True), nullable=False),
        sa.Column("update_date", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("identifier", name=op.f("pk_user")),
    )
    op.create_table(
        "job",
        sa.Column("project", sa.String(length=100), nullable=False),
        sa.Column("identifier", sa.String(length=100), nullable=False),
        sa.Column("display_name", sa.Text(), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("workspace", sa.Text(), nullable=False),
        sa.Column("steps", sa.JSON(), nullable=False),
        sa.Column("parameters", sa.JSON(), nullable=False),
        sa.Column("properties", sa.JSON(), nullable=False),
        sa.Column("is_enabled", sa.Boolean(), nullable=False),
        sa.Column("lease", sa.Float(), nullable=True),
        sa.Column("creation_date", sa.DateTime(timezone=True), nullable=False),
        sa.Column("update_date", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["project"],
            ["project.identifier"],
            name=op.f("fk_job_project_project"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("project", "identifier", name=op.f("pk_job")),
    )
    op.create_table(
        "run",
        sa.Column("identifier", sa.String(length=36), nullable=False),
        sa.Column("project", sa.String(length=100), nullable=False),
        sa.Column("job", sa.String(length=100), nullable=False),
        sa.Column("parameters", sa.JSON(), nullable=False),
        sa.Column("source", sa.JSON(), nullable=False),
        sa.Column("worker", sa.String(length=100), nullable=True),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("workspace", sa.Text(), nullable=False),
        sa.Column("start_date", sa.DateTime(timezone=True), nullable=True),
        sa.Column("completion_date", sa.DateTime(timezone=True), nullable=True),
        sa.Column("should_cancel", sa.Boolean(), nullable=False),
        sa.Column("should_abort", sa.Boolean(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("assignment_date", sa.DateTime(timezone=True), nullable=True),
        sa.Column("master", sa.String(length=200), nullable=True),
        sa.Column("lease", sa.Float(), nullable=True),
        sa.Column("late_report", sa.Text(), nullable=True),
        sa.Column("event_sequence", sa.Integer(), nullable=False),
        sa.Column("log_size", sa.BigInteger(), nullable=False),
        sa.Column("creation_date", sa.DateTime(timezone=True), nullable=False),
        sa.Column("update_date", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["project"],
            ["project.identifier"],
            name=op.f("fk_run_project_project"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("identifier", name=op.f("pk_run")),
    )
    with op.batch_alter_table("run", schema=None) as batch_op:
        batch_op.create_index("ix_run_creation", ["creation_date", "identifier"], unique=False)
        batch_op.create_index(
            "ix_run_project_creation", ["project", "creation_date", "identifier"], unique=False
        )
        batch_op.create_index(
            "ix_run_project_job_creation",
            ["project", "job", "creation_date", "identifier"],
            unique=False,
        )
        batch_op.create_index(
            "ix_run_project_status_creation",
            ["project", "status", "creation_date", "identifier"],
            unique=False,
        )
        batch_op.create_index(
            "ix_run_project_worker_creation",
            ["project", "worker", "creation_date", "identifier"],
            unique=False,
        )
        batch_op.create_index("ix_run_status_creation", ["status", "creation_date"], unique=False)
        batch_op.create_index("ix_run_worker_status", ["worker", "status"], unique=False)

    op.create_table(
        "schedule",
        sa.Column("project", sa.String(length=100), nullable=False),
        sa.Column("identifier", sa.String(length=100), nullable=False),
        sa.Column("display_name", sa.Text(), nullable=False),
        sa.Column("job", sa.String(length=100), nullable=False),
        sa.Column("parameters", sa.JSON(), nullable=False),
        sa.Column("expression", sa.Text(), nullable=False),
        sa.Column("time_zone", sa.String(length=100), nullable=False),
        sa.Column("is_enabled", sa.Boolean(), nullable=False),
        sa.Column("last_run", sa.String(length=36), nullable=True),
        sa.Column("creation_date", sa.DateTime(timezone=True), nullable=False),
        sa.Column("update_date", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["project"],
            ["project.identifier"],
            name=op.f("fk_schedule_project_project"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("project", "identifier", name=op.f("pk_schedule")),
    )
    op.create_table(
        "user_authentication",
        sa.Column("identifier", sa.String(length=36), nullable=False),
        sa.Column("user", sa.String(length=100), nullable=False),
        sa.Column("type", sa.String(length=20), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("hash_function", sa.String(length=50), nullable=False),
        sa.Column("hash_function_parameters", sa.JSON(), nullable=False),
        sa.Column("hash_function_salt", sa.String(length=200), nullable=False),
        sa.Column("secret", sa.String(length=200), nullable=False),
        sa.Column("expiration_date", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_used_date", sa.DateTime(timezone=True), nullable=True),
        sa.Column("creation_date", sa.DateTime(timezone=True), nullable=False),
        sa.Column("update_date", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["user"],
            ["user.identifier"],
            name=op.f("fk_user_authentication_user_user"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("identifier", name=op.f("pk_user_authentication")),
    )
    with op.batch_alter_table("user_authentication", schema=None) as batch_op:
        batch_op.create_index("ix_user_authentication_secret", ["secret"], unique=False)
        batch_op.create_index("ix_user_authentication_user", ["user", "type"], unique=False)

    op.create_table(
        "worker",
        sa.Column("identifier", sa.String(length=100), nullable=False),
        sa.Column("owner", sa.String(length=100), nullable=False),
        sa.Column("version", sa.String(length=100), nullable=False),
        sa.Column("display_name", sa.Text(), nullable=False),
        sa.Column("properties", sa.JSON(), nullable=False),
        sa.Column("is_enabled", sa.Boolean(), nullable=False),
        sa.Column("is_active", sa.Boolean(), nullable=False),
        sa.Column("should_disconnect", sa.Boolean(), nullable=False),
        sa.Column("executors", sa.Integer(), nullable=False),
        sa.Column("master", sa.String(length=200), nullable=True),
        sa.Column("last_seen_date", sa.DateTime(timezone=True), nullable=True),
        sa.Column("creation_date", sa.DateTime(timezone=True), nullable=False),
        sa.Column("update_date", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["owner"], ["user.identifier"], name=op.f("fk_worker_owner_user"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("identifier", name=op.f("pk_worker")),
    )
    op.create_table(
        "run_log",
        sa.Column("run", sa.String(length=36), nullable=False),
        sa.Column("offset", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("step_index", sa.Integer(), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(
            ["run"], ["run.identifier"], name=op.f("fk_run_log_run_run"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("run", "offset", name=op.f("pk_run_log")),
    )
    op.create_table(
        "run_step",
        sa.Column("run", sa.String(length=36), nullable=False),
        sa.Column("index", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("command", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("exit_code", sa.Integer(), nullable=True),
        sa.Column("start_date", sa.DateTime(timezone=True), nullable=True),
        sa.Column("completion_date", sa.DateTime(timezone=True), nullable=True),
        sa.Column("log_size", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["run"], ["run.identifier"], name=op.f("fk_run_step_run_run"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("run", "index", name=op.f("pk_run_step")),
    )


def downgrade() -> None:

    op.drop_table("run_step")
    op.drop_table("run_log")
    op.drop_table("worker")
    with op.batch_alter_table("user_authentication", schema=None) as batch_op:
        batch_op.drop_index("ix_user_authentication_user")
        batch_op.drop_index("ix_user_authentication_secret")

    op.drop_table("user_authentication")
    op.drop_table("schedule")
    with op.batch_alter_table("run", schema=None) as batch_op:
        batch_op.drop_index("ix_run_worker_status")
        batch_op.drop_index("ix_run_status_creation")
        batch_op.drop_index("ix_run_project_worker_creation")
        batch_op.drop_index("ix_run_project_status_creation")
        batch_op.drop_index("ix_run_project_job_creation")
        batch_op.drop_index("ix_run_project_creation")
        batch_op.drop_index("ix_run_creation")

    op.drop_table("run")
    op.drop_table("job")
    op.drop_table("user")
    op.drop_table("project")
