"""A followed log (`?follow=true`) streams until its run ends, which may be hours: its caller is
checked again every RECHECK_SECONDS, and the stream ends once they may no longer read it (their
token revoked or expired, their user disabled, their rights taken away)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

from starlette.requests import Request

from orchestra.errors import OrchestraError
from orchestra.services.container import Services
from orchestra.web.auth import authenticate
from orchestra.web.deps import check_access, route_project
from orchestra.web.permissions import permission_for

RECHECK_SECONDS = 3.0


async def still_allowed(request: Request, *, allow_cookie: bool) -> bool:
    """Whether the request's credentials still allow its route (as when it began)."""
    services: Services = request.app.state.services
    path = request.scope["route"].path
    try:
        caller = await authenticate(request, services.users, allow_cookie=allow_cookie)
        check_access(caller, permission_for(request.method, path), route_project(request, path))
    except OrchestraError:
        return False
    return True


async def while_allowed(
    request: Request, chunks: AsyncIterator[bytes], *, allow_cookie: bool = False
) -> AsyncIterator[bytes]:
    """`chunks`, ended early when the caller may no longer read them. The next chunk is
    awaited in a task, so a quiet log is checked as often as a busy one."""
    iterator = aiter(chunks)
    pending: asyncio.Future[bytes] | None = None
    next_check = time.monotonic() + RECHECK_SECONDS
    try:
        while True:
            if pending is None:
                pending = asyncio.ensure_future(anext(iterator))
            await asyncio.wait({pending}, timeout=max(0.0, next_check - time.monotonic()))
            if pending.done():
                try:
                    chunk = pending.result()
                except StopAsyncIteration:
                    return
                pending = None
                yield chunk
            if time.monotonic() >= next_check:
                if not await still_allowed(request, allow_cookie=allow_cookie):
                    return
                next_check = time.monotonic() + RECHECK_SECONDS
    finally:
        if pending is not None and not pending.done():
            pending.cancel()
            await asyncio.wait({pending})
            if not pending.cancelled():
                pending.exception()  # retrieved: it is of no use now
        closing = getattr(iterator, "aclose", None)
        if closing is not None:
            await closing()
