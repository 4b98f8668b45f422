"""FastAPI dependencies: the services, the authorised caller, pagination parameters."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Query, Request
from starlette.requests import HTTPConnection

from orchestra.domain.pages import DEFAULT_LIMIT, MAX_LIMIT
from orchestra.domain.permissions import Action
from orchestra.errors import Forbidden, NotFound, Unauthenticated
from orchestra.services.container import Services
from orchestra.services.users import Caller
from orchestra.web.auth import authenticate
from orchestra.web.permissions import permission_for


def services_of(connection: HTTPConnection) -> Services:
    services: Services = connection.app.state.services
    return services


# The dependencies are `async def`: FastAPI runs a plain `def` one in a worker thread, a thread
# round trip per request for what is an attribute read.
async def get_services(connection: HTTPConnection) -> Services:
    return services_of(connection)


async def authorize(request: HTTPConnection) -> None:
    """Router-wide dependency: look the matched route up in the permission table, authenticate
    the caller and refuse unless they may do it (in the route's project, if it has one): 401
    anonymous, 404 a project they may not see (as an unknown one), else 403.
    WebSocket endpoints check the same table themselves, to close with a reason."""
    if request.scope["type"] != "http":
        return
    assert isinstance(request, Request)
    route = request.scope["route"]
    action = permission_for(request.method, route.path)
    caller = await authenticate(request, services_of(request).users)
    check_access(caller, action, route_project(request, route.path))
    request.state.caller = caller


def route_project(request: HTTPConnection, path: str) -> str | None:
    """The project a route acts in: its `{project}` path parameter, if it has one."""
    if "{project}" not in path:
        return None
    project = request.path_params.get("project")
    return project if isinstance(project, str) else None


def check_access(caller: Caller | None, action: Action, project: str | None) -> None:
    """Raise Unauthenticated, NotFound (a project the caller may not see, answered as an
    unknown project) or Forbidden unless the caller may do `action` (in `project`)."""
    if action is Action.PUBLIC:
        return
    if caller is None:
        raise Unauthenticated()
    if caller.access.may(action, project):
        return
    if project is not None and not caller.access.sees(project):
        raise NotFound(f"no project {project!r}")
    raise Forbidden(f"this needs the permission {action.value}")


async def get_caller(request: Request) -> Caller:
    caller: Caller | None = getattr(request.state, "caller", None)
    if caller is None:
        raise Unauthenticated()
    return caller


ServicesDep = Annotated[Services, Depends(get_services)]
CallerDep = Annotated[Caller, Depends(get_caller)]
Cursor = Annotated[str | None, Query(max_length=1000, description="from next_cursor")]
Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT)]
DEFAULT_PAGE = DEFAULT_LIMIT
