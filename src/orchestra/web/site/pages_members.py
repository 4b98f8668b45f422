"""Website forms for a project's members (administrators): add or change one, remove one."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from orchestra.errors import InvalidInput
from orchestra.services.container import Services
from orchestra.storage.members import GROUP, USER
from orchestra.web.site.forms import back, form_of, text

router = APIRouter()


def services_of(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


@router.post("/projects/{project}/members")
async def put_member(request: Request, project: str) -> Response:
    form = await form_of(request)
    kind = text(form, "kind")
    if kind not in (USER, GROUP):
        raise InvalidInput("a member is a user or a group")
    _member, created = await services_of(request).members.put_member(
        project, kind, text(form, "name"), text(form, "role")
    )
    message = "Member added." if created else "Member's role changed."
    return back(f"/projects/{project}", message)


@router.post("/projects/{project}/members/remove")
async def remove_member(request: Request, project: str) -> Response:
    form = await form_of(request)
    await services_of(request).members.remove_member(project, text(form, "member"))
    return back(f"/projects/{project}", "Member removed.")
