"""Who is calling: from a Bearer token, HTTP Basic (user and token), or a website session."""

from __future__ import annotations

from starlette.requests import HTTPConnection

from orchestra.domain.authorization import credentials_from_header
from orchestra.services.users import Caller, UserService

SESSION_COOKIE = "orchestra_session"


async def authenticate(
    connection: HTTPConnection, users: UserService, *, allow_cookie: bool = False
) -> Caller | None:
    """The caller, or None (anonymous) when no valid, enabled credentials were given. The API
    never reads the session cookie (so no cross-site form can act through it); the website
    does, behind its CSRF check."""
    given = credentials_from_header(connection.headers.get("authorization", ""))
    if given is not None:
        return await users.authenticate(given.secret, given.user) if given.secret else None
    cookie = connection.cookies.get(SESSION_COOKIE) if allow_cookie else None
    if cookie:
        return await users.authenticate(cookie)
    return None
