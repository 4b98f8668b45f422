"""The website's sessions and CSRF protection.

A session is a login token kept in an HttpOnly, SameSite=Lax cookie (Secure behind HTTPS); it
expires with the token. Every form carries a CSRF token, an HMAC under a key every server of the
instance derives from the instance key (`Keyring.derive("website csrf")`), so any server checks
it and nobody without that key can make one: for a session, of the session's secret (bound to
it); before login, of a random value kept in a cookie set with the form (a signed double submit:
whoever can plant a cookie still cannot compute the form's value for it).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import datetime

from fastapi import Request
from starlette.responses import Response

from orchestra.errors import Forbidden, OrchestraError, Unauthenticated
from orchestra.services.container import Services
from orchestra.services.users import Caller
from orchestra.web.auth import SESSION_COOKIE, authenticate
from orchestra.web.deps import check_access, route_project
from orchestra.web.permissions import permission_for

LOGIN_CSRF_COOKIE = "orchestra_login_csrf"
CSRF_FIELD = "csrf_token"
CSRF_PURPOSE = "website csrf"


class LoginRequired(OrchestraError):
    """Log in to see this page."""

    status_code = 401


class CsrfRefused(OrchestraError):
    """The form is stale or did not come from this site; reload the page and try again."""

    status_code = 403


def _csrf_key(request: Request) -> bytes:
    services: Services = request.app.state.services
    return services.keyring.derive(CSRF_PURPOSE)


def session_csrf(key: bytes, session_secret: str) -> str:
    """The CSRF token of a session's forms."""
    return hmac.new(key, b"session\0" + session_secret.encode(), hashlib.sha256).hexdigest()


def login_csrf(key: bytes, nonce: str) -> str:
    """The CSRF token of the login form whose cookie holds `nonce`."""
    return hmac.new(key, b"login\0" + nonce.encode(), hashlib.sha256).hexdigest()


def new_login_form(request: Request) -> str:
    """A fresh nonce for the login form about to be rendered, whose CSRF token it sets; the
    response must carry it (`set_login_cookie`)."""
    nonce = secrets.token_urlsafe(32)
    request.state.csrf_token = login_csrf(_csrf_key(request), nonce)
    return nonce


def set_login_cookie(response: Response, request: Request, nonce: str) -> None:
    response.set_cookie(
        LOGIN_CSRF_COOKIE, nonce, httponly=True, samesite="strict", secure=is_secure(request)
    )


def login_form_csrf(request: Request) -> str:
    """The CSRF token of the login form this request's cookie belongs to ("" without one)."""
    nonce = request.cookies.get(LOGIN_CSRF_COOKIE)
    return login_csrf(_csrf_key(request), nonce) if nonce else ""


def is_secure(request: Request) -> bool:
    """HTTPS, directly or through a trusted proxy (uvicorn sets the scheme from the
    X-Forwarded-Proto of the proxies named by --trusted-proxies, and from nobody else)."""
    return request.url.scheme == "https"


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
        request.state.csrf_token = session_csrf(_csrf_key(request), cookie)
    else:
        request.state.csrf_token = login_form_csrf(request)
    if request.method == "POST":
        await _check_csrf(request, caller)
    try:
        check_access(caller, action, route_project(request, route.path))
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
        expected = session_csrf(_csrf_key(request), cookie)
    else:
        expected = login_form_csrf(request)
    if not expected or not hmac.compare_digest(given, expected):
        raise CsrfRefused()
