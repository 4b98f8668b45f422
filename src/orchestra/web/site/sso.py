"""Website routes of single sign-on: off to the OpenID provider, and back from it to a session.

The started flow (state, nonce, PKCE verifier, destination) is sealed by services/sso.py and kept
in a short-lived HttpOnly cookie scoped to these two routes; whichever API server the provider
sends the browser back to can open it."""

from __future__ import annotations

import logging

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from orchestra.errors import NotFound, OrchestraError
from orchestra.services.sso import FLOW_SECONDS, SignInRefused, SsoService
from orchestra.web.site.forms import back
from orchestra.web.site.pages_runs import services_of
from orchestra.web.site.render import render
from orchestra.web.site.security import is_secure, set_session

log = logging.getLogger(__name__)
router = APIRouter()
FLOW_COOKIE = "orchestra_sso_flow"
FLOW_COOKIE_PATH = "/login/sso"
MAX_PARAMETER = 4000


def _sso(request: Request) -> SsoService:
    sso = services_of(request).sso
    if sso is None:
        raise NotFound("single sign-on is not configured on this instance")
    return sso


def _parameter(request: Request, name: str, limit: int = MAX_PARAMETER) -> str:
    return request.query_params.get(name, "")[:limit]


def _safe_next(target: str) -> str:
    if not target.startswith("/") or target.startswith("//") or target.startswith("/login"):
        return "/"
    return target


def _refused(request: Request, exc: OrchestraError) -> Response:
    """The error page of a sign-in that failed, logged in one line; the flow is dropped."""
    one_line = "".join(c if c.isprintable() else repr(c)[1:-1] for c in exc.message)
    log.warning("single sign-on failed (%d): %s", exc.status_code, one_line)
    response = render(request, "sso_error.html", status_code=exc.status_code, error=exc.message)
    response.delete_cookie(FLOW_COOKIE, path=FLOW_COOKIE_PATH)
    return response


@router.get("/login/sso")
async def sso_start(request: Request) -> Response:
    sso = _sso(request)
    try:
        url, sealed = await sso.begin(_safe_next(_parameter(request, "next", 1000)))
    except OrchestraError as exc:
        return _refused(request, exc)
    response = RedirectResponse(url, status_code=303)
    response.set_cookie(
        FLOW_COOKIE,
        sealed,
        max_age=FLOW_SECONDS,
        httponly=True,
        samesite="lax",  # sent on the provider's top-level redirect back here
        secure=is_secure(request),
        path=FLOW_COOKIE_PATH,
    )
    return response


@router.get("/login/sso/callback")
async def sso_callback(request: Request) -> Response:
    sso = _sso(request)
    error = _parameter(request, "error", 200)
    if error:
        description = _parameter(request, "error_description", 500)
        detail = f"{error}: {description}" if description else error
        return _refused(request, SignInRefused(f"the sign-in provider refused ({detail})"))
    try:
        user, token, secret, target = await sso.finish(
            request.cookies.get(FLOW_COOKIE),
            _parameter(request, "state"),
            _parameter(request, "code"),
            _parameter(request, "iss", 1000),
        )
    except OrchestraError as exc:
        return _refused(request, exc)
    log.info("single sign-on: %r logged in", user.identifier)
    response = back(target)
    set_session(response, request, secret, token.expiration_date)
    response.delete_cookie(FLOW_COOKIE, path=FLOW_COOKIE_PATH)
    return response
