"""FastAPI dependencies: the services, the authorised caller, pagination parameters."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Query, Request
from starlette.requests import HTTPConnection

from orchestra.domain.pages import DEFAULT_LIMIT, MAX_LIMIT
from orchestra.domain.permissions import require
from orchestra.errors import Unauthenticated
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
    the caller and refuse (401 or 403) unless the table grants the route to their roles.
    WebSocket endpoints check the same table themselves, to close with a reason."""
    if request.scope["type"] != "http":
        return
    assert isinstance(request, Request)
    route = request.scope["route"]
    action = permission_for(request.method, route.path)
    caller = await authenticate(request, services_of(request).users)
    require(caller.user.roles if caller else None, action)
    request.state.caller = caller


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
