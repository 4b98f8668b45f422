"""Access for many teams: project members and secrets, token scopes, user groups and single
sign-on identities, login sessions apart from tokens, worker approval, job environments, and the
instance's shared settings.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-06 06:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def _dates() -> list[sa.Column[object]]:
    return [
        sa.Column("creation_date", sa.DateTime(timezone=True), nullable=False),
        sa.Column("update_date", sa.DateTime(timezone=True), nullable=False),
    ]


def upgrade() -> None:
    for table in ("job", "run"):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(sa.Column("environment", sa.JSON(), nullable=True))
    with op.batch_alter_table("user", schema=None) as batch_op:
        batch_op.add_column(sa.Column("groups", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("sso_issuer", sa.String(1000), nullable=True))
        batch_op.add_column(sa.Column("sso_subject", sa.String(255), nullable=True))
        batch_op.create_index("ix_user_sso", ["sso_issuer", "sso_subject"], unique=True)
    with op.batch_alter_table("user_authentication", schema=None) as batch_op:
        batch_op.add_column(sa.Column("scopes", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("projects", sa.JSON(), nullable=True))
        batch_op.add_column(
            sa.Column("is_session", sa.Boolean(), nullable=False, server_default=sa.false())
        )
    # Tokens opened by a login so far were described "login": they are sessions.
    op.execute("UPDATE user_authentication SET is_session = true WHERE description = 'login'")
    with op.batch_alter_table("worker", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("is_approved", sa.Boolean(), nullable=False, server_default=sa.true())
        )
    op.create_table(
        "project_member",
        sa.Column("project", sa.String(100), nullable=False),
        sa.Column("kind", sa.String(10), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("role", sa.String(20), nullable=False),
        *_dates(),
        sa.ForeignKeyConstraint(
            ["project"],
            ["project.identifier"],
            name="fk_project_member_project_project",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("project", "kind", "name", name="pk_project_member"),
    )
    op.create_index("ix_project_member_kind_name", "project_member", ["kind", "name"])
    op.create_table(
        "project_secret",
        sa.Column("project", sa.String(100), nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        *_dates(),
        sa.ForeignKeyConstraint(
            ["project"],
            ["project.identifier"],
            name="fk_project_secret_project_project",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("project", "name", name="pk_project_secret"),
    )
    op.create_table(
        "instance_setting",
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.Column("update_date", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_instance_setting"),
    )


def downgrade() -> None:
    op.drop_table("instance_setting")
    op.drop_table("project_secret")
    op.drop_index("ix_project_member_kind_name", table_name="project_member")
    op.drop_table("project_member")
    with op.batch_alter_table("worker", schema=None) as batch_op:
        batch_op.drop_column("is_approved")
    with op.batch_alter_table("user_authentication", schema=None) as batch_op:
        batch_op.drop_column("is_session")
        batch_op.drop_column("projects")
        batch_op.drop_column("scopes")
    with op.batch_alter_table("user", schema=None) as batch_op:
        batch_op.drop_index("ix_user_sso")
        batch_op.drop_column("sso_subject")
        batch_op.drop_column("sso_issuer")
        batch_op.drop_column("groups")
    for table in ("run", "job"):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_column("environment")
