"""Website forms for project secrets: set (create or replace) and delete. The project page
lists their names and dates (templates/project_secrets.html); a value is never shown."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from orchestra.errors import InvalidInput, NotFound
from orchestra.services.container import Services
from orchestra.web.site.forms import back, form_of, text

router = APIRouter()


def _services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


@router.post("/projects/{project}/secrets")
async def set_secret(request: Request, project: str) -> Response:
    form = await form_of(request)
    page = f"/projects/{project}"
    try:
        name = text(form, "name")
        value = text(form, "value")
        _secret, created = await _services(request).secrets.put_secret(project, name, value)
    except InvalidInput as exc:
        return back(page, error=str(exc))
    return back(page, f"Secret {name} {'created' if created else 'replaced'}.")


@router.post("/projects/{project}/secrets/{name}/delete")
async def delete_secret(request: Request, project: str, name: str) -> Response:
    page = f"/projects/{project}"
    try:
        await _services(request).secrets.delete_secret(project, name)
    except NotFound as exc:
        return back(page, error=str(exc))
    return back(page, f"Secret {name} deleted.")
