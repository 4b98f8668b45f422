"""The website's sessions and CSRF protection.

A session is a login token kept in an HttpOnly, SameSite=Lax cookie (Secure behind HTTPS); it
expires with the token. Every form carries a CSRF token: for a session, an HMAC of the session
secret (so any server can check it and no cross-site page can compute it); before login, a
random value that must match a cookie set with the form (double submit).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import datetime

from fastapi import Request
from starlette.responses import Response

from orchestra.domain.permissions import require
from orchestra.errors import Forbidden, OrchestraError, Unauthenticated
from orchestra.services.container import Services
from orchestra.services.users import Caller
from orchestra.web.auth import SESSION_COOKIE, authenticate
from orchestra.web.permissions import permission_for

LOGIN_CSRF_COOKIE = "orchestra_login_csrf"
CSRF_FIELD = "csrf_token"


class LoginRequired(OrchestraError):
    """Log in to see this page."""

    status_code = 401


class CsrfRefused(OrchestraError):
    """The form is stale or did not come from this site; reload the page and try again."""

    status_code = 403


def session_csrf(session_secret: str) -> str:
    return hmac.new(session_secret.encode(), b"orchestra-csrf", hashlib.sha256).hexdigest()


def is_secure(request: Request) -> bool:
    forwarded = request.headers.get("x-forwarded-proto", "")
    return request.url.scheme == "https" or forwarded.lower() == "https"


def set_session(
    response: Response, request: Request, secret: str, expires: datetime | None
) -> None:
    response.set_cookie(
        SESSION_COOKIE,
        secret,
        expires=expires,
        httponly=True,
        samesite="lax",
        secure=is_secure(request),
        path="/",
    )


def clear_session(response: Response) -> None:
    response.delete_cookie(SESSION_COOKIE, path="/")


async def site_authorize(request: Request) -> None:
    """Router-wide dependency of the website: the permission table, the session cookie, and the
    CSRF check on every POST."""
    services: Services = request.app.state.services
    route = request.scope["route"]
    action = permission_for(request.method, route.path)
    caller = await authenticate(request, services.users, allow_cookie=True)
    request.state.caller = caller
    cookie = request.cookies.get(SESSION_COOKIE)
    if caller is not None and cookie:
        request.state.csrf_token = session_csrf(cookie)
    else:
        request.state.csrf_token = request.cookies.get(LOGIN_CSRF_COOKIE) or secrets.token_urlsafe(
            32
        )
    if request.method == "POST":
        await _check_csrf(request, caller)
    try:
        require(caller.user.roles if caller else None, action)
    except Unauthenticated:
        raise LoginRequired() from None
    except Forbidden:
        raise Forbidden("your roles do not allow this page") from None


async def _check_csrf(request: Request, caller: Caller | None) -> None:
    form = await request.form()
    given = form.get(CSRF_FIELD)
    if not isinstance(given, str) or not given:
        raise CsrfRefused()
    cookie = request.cookies.get(SESSION_COOKIE)
    if caller is not None and cookie:
        expected = session_csrf(cookie)
    else:
        expected = request.cookies.get(LOGIN_CSRF_COOKIE) or ""
    if not expected or not hmac.compare_digest(given, expected):
        raise CsrfRefused()
