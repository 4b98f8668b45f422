"""/projects/{project}/members: who has a role in one project (administrators change it)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, Response
from pydantic import BaseModel, Field, SerializerFunctionWrapHandler, model_serializer

from orchestra.errors import InvalidInput
from orchestra.services.members import Member
from orchestra.storage.members import GROUP, USER
from orchestra.web.api.schemas import Body, Page
from orchestra.web.deps import Cursor, Limit, ServicesDep
from orchestra.web.permissions import API

router = APIRouter(prefix=API, tags=["members"])


class MemberIn(Body):
    """Exactly one of `user` (an identifier) and `group` (a group name)."""

    user: str | None = Field(default=None, max_length=1000)
    group: str | None = Field(default=None, max_length=1000)
    role: str = Field(max_length=100, description="viewer or operator")


class MemberOut(BaseModel):
    """`{"user": ...}` or `{"group": ...}`, with its role and dates."""

    user: str | None = None
    group: str | None = None
    role: str
    creation_date: datetime
    update_date: datetime

    @model_serializer(mode="wrap")
    def _one_of(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        data: dict[str, Any] = handler(self)
        for key in (USER, GROUP):
            if data.get(key) is None:
                data.pop(key, None)
        return data

    @classmethod
    def of(cls, member: Member) -> MemberOut:
        return cls(
            **{member.kind: member.name},
            role=member.role,
            creation_date=member.creation_date,
            update_date=member.update_date,
        )


@router.get("/projects/{project}/members", response_model=Page[MemberOut])
async def list_members(
    project: str, services: ServicesDep, cursor: Cursor = None, limit: Limit = 50
) -> Page[MemberOut]:
    members, _ = found = await services.members.list_members(project, cursor, limit)
    return Page(items=[MemberOut.of(m) for m in members], **found.cursors())


@router.post("/projects/{project}/members", response_model=MemberOut, status_code=201)
async def put_member(
    project: str, body: MemberIn, services: ServicesDep, response: Response
) -> MemberOut:
    """Add a member (201), or change the role of an existing one (200)."""
    if (body.user is None) == (body.group is None):
        raise InvalidInput('give either "user" (an identifier) or "group" (a name)')
    kind, name = (USER, body.user) if body.user is not None else (GROUP, body.group)
    member, created = await services.members.put_member(project, kind, name, body.role)
    response.status_code = 201 if created else 200
    return MemberOut.of(member)


@router.delete("/projects/{project}/members/{member:path}", status_code=204)
async def remove_member(project: str, member: str, services: ServicesDep) -> Response:
    """`member`: a user's identifier, or `group:NAME`."""
    await services.members.remove_member(project, member)
    return Response(status_code=204)
