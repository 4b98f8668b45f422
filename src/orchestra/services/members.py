"""A project's members: users and groups given a role (viewer or operator) in one project."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from orchestra.domain.access import check_group_name, check_member_role
from orchestra.domain.pages import Listing
from orchestra.errors import InvalidInput, NotFound
from orchestra.storage import records
from orchestra.storage.engine import Database
from orchestra.storage.members import GROUP, USER
from orchestra.storage.schema import project as project_table
from orchestra.storage.schema import project_member
from orchestra.storage.schema import user as user_table

GROUP_PREFIX = "group:"


@dataclass(frozen=True)
class Member:
    project: str
    kind: str  # "user" or "group"
    name: str
    role: str
    creation_date: datetime
    update_date: datetime


def parse_member(member: str) -> tuple[str, str]:
    """(kind, name) of a member as a path names it: a user's identifier, or `group:NAME`."""
    if member.startswith(GROUP_PREFIX):
        return GROUP, member.removeprefix(GROUP_PREFIX)
    return USER, member


class MemberService:
    def __init__(self, db: Database, on_change: Callable[[], None]) -> None:
        """`on_change` is told after every change (cached authentications hold rights)."""
        self.db = db
        self.on_change = on_change

    async def list_members(
        self, project: str, cursor: str | None, limit: int | None
    ) -> Listing[Member]:
        query = sa.select(project_member).where(project_member.c.project == project)
        order = [project_member.c.kind, project_member.c.name]
        async with self.db.read() as conn:
            await _project_exists(conn, project)
            found = await records.page(conn, query, order, cursor, limit, types=(str, str))
        return found.map(lambda r: Member(**dict(r)))

    async def put_member(
        self, project: str, kind: str, name: object, role: object
    ) -> tuple[Member, bool]:
        """Add a member, or change its role; returns it and whether it was added."""
        role = check_member_role(role)
        if kind == GROUP:
            name = check_group_name(name)
        elif not isinstance(name, str):
            raise InvalidInput("user must be a user identifier")
        keys = {"project": project, "kind": kind, "name": name}
        async with self.db.transaction() as conn:
            await _project_exists(conn, project)
            if kind == USER and not await records.fetch_one(conn, user_table, {"identifier": name}):
                raise InvalidInput(f"no user {name!r}")
            current = await records.fetch_one(conn, project_member, keys, for_update=True)
            if current is None:
                await records.insert(conn, project_member, {**keys, "role": role})
            elif current["role"] != role:
                await records.update(conn, project_member, keys, {"role": role})
            row = await records.fetch_one(conn, project_member, keys)
        assert row is not None
        self.on_change()
        return Member(**dict(row)), current is None

    async def remove_member(self, project: str, member: str) -> None:
        kind, name = parse_member(member)
        async with self.db.transaction() as conn:
            await _project_exists(conn, project)
            keys = {"project": project, "kind": kind, "name": name}
            if not await records.delete(conn, project_member, keys):
                raise NotFound(f"no member {member!r} in project {project!r}")
        self.on_change()


async def _project_exists(conn: AsyncConnection, project: str) -> None:
    if await records.fetch_one(conn, project_table, {"identifier": project}) is None:
        raise NotFound(f"no project {project!r}")
