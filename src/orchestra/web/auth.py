"""Who is calling: from a Bearer token, HTTP Basic (user and token), or a website session."""

from __future__ import annotations

import base64
import binascii

from starlette.requests import HTTPConnection

from orchestra.services.users import Caller, UserService

SESSION_COOKIE = "orchestra_session"


async def authenticate(
    connection: HTTPConnection, users: UserService, *, allow_cookie: bool = False
) -> Caller | None:
    """The caller, or None (anonymous) when no valid, enabled credentials were given. The API
    never reads the session cookie (so no cross-site form can act through it); the website
    does, behind its CSRF check."""
    header = connection.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    scheme = scheme.lower()
    value = value.strip()
    if scheme == "bearer" and value:
        return await users.authenticate(value)
    if scheme == "basic" and value:
        try:
            decoded = base64.b64decode(value, validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return None
        user, sep, secret = decoded.partition(":")
        return await users.authenticate(secret, user) if sep else None
    cookie = connection.cookies.get(SESSION_COOKIE) if allow_cookie else None
    if cookie:
        return await users.authenticate(cookie)
    return None
