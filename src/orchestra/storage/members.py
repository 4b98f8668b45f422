"""Queries on project members: a user's roles in projects, and the members of a project."""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from orchestra.storage.schema import project_member

USER = "user"
GROUP = "group"


async def memberships(
    conn: AsyncConnection, user: str, groups: Sequence[str]
) -> list[tuple[str, str]]:
    """(project, role) of every membership of the user, their own and their groups'."""
    who = sa.and_(project_member.c.kind == USER, project_member.c.name == user)
    if groups:
        who = sa.or_(
            who,
            sa.and_(project_member.c.kind == GROUP, project_member.c.name.in_(list(groups))),
        )
    query = sa.select(project_member.c.project, project_member.c.role).where(who)
    return [(row.project, row.role) for row in await conn.execute(query)]


async def delete_user_memberships(conn: AsyncConnection, user: str) -> None:
    await conn.execute(
        project_member.delete().where(project_member.c.kind == USER, project_member.c.name == user)
    )
