"""Website pages for logging in, the caller's profile, workers and users."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from orchestra.domain.models import Run
from orchestra.domain.pages import Listing
from orchestra.domain.permissions import Action, Role, allowed
from orchestra.errors import Conflict, InvalidInput, TooManyRequests, Unauthenticated
from orchestra.web.site.forms import back, form_of, text
from orchestra.web.site.pages_runs import services_of
from orchestra.web.site.render import render
from orchestra.web.site.security import (
    LOGIN_CSRF_COOKIE,
    clear_session,
    login_form_csrf,
    new_login_form,
    set_login_cookie,
    set_session,
)

router = APIRouter()
Cursor = Annotated[str | None, Query(max_length=1000)]
ROLES = [r.value for r in Role]


def _safe_next(target: str | None) -> str:
    if not target or not target.startswith("/") or target.startswith("//"):
        return "/"
    return target


@router.get("/login")
async def login_page(request: Request, next: str | None = None) -> Response:
    if request.state.caller is not None:
        return back(_safe_next(next))
    nonce = new_login_form(request)
    response = render(request, "login.html", next=_safe_next(next))
    set_login_cookie(response, request, nonce)
    return response


@router.post("/login")
async def login(request: Request) -> Response:
    form = await form_of(request)
    user = str(form.get("user") or "")
    password = str(form.get("password") or "")
    target = _safe_next(str(form.get("next") or "/"))
    address = request.client.host if request.client else "unknown"
    try:
        token, secret = await services_of(request).users.login(user, password, address)
    except (Unauthenticated, TooManyRequests, InvalidInput) as exc:
        request.state.csrf_token = login_form_csrf(request)
        return render(
            request,
            "login.html",
            status_code=exc.status_code,
            error=str(exc),
            next=target,
            user=user,
        )
    response = back(target)
    set_session(response, request, secret, token.expiration_date)
    response.delete_cookie(LOGIN_CSRF_COOKIE)
    return response


@router.post("/logout")
async def logout(request: Request) -> Response:
    caller = request.state.caller
    if caller.token is not None:
        await services_of(request).users.revoke_token(caller.user.identifier, caller.token)
    response = back("/login", "You are logged out.")
    clear_session(response)
    return response


# The caller's own profile.


@router.get("/profile")
async def profile(request: Request) -> Response:
    caller = request.state.caller
    tokens, _ = await services_of(request).users.list_tokens(caller.user.identifier, None, 500)
    return render(request, "profile.html", user=caller.user, tokens=tokens, session=caller.token)


@router.post("/profile/password")
async def change_password(request: Request) -> Response:
    form = await form_of(request)
    caller = request.state.caller
    try:
        ended = await services_of(request).users.change_password(
            caller.user.identifier,
            text(form, "old_password"),
            text(form, "new_password"),
            address=request.client.host if request.client else "unknown",
            keep_token=caller.token,
            revoke_tokens=form.get("revoke_tokens") == "true",
        )
    except (InvalidInput, TooManyRequests) as exc:
        return back("/profile", error=str(exc))
    return back("/profile", f"Password changed; {ended} other sessions or tokens ended.")


@router.post("/profile/tokens")
async def create_own_token(request: Request) -> Response:
    caller = request.state.caller
    return await _create_token(request, caller.user.identifier, "profile.html", "/profile")


@router.post("/profile/tokens/{token}/revoke")
async def revoke_own_token(request: Request, token: str) -> Response:
    caller = request.state.caller
    await services_of(request).users.revoke_token(caller.user.identifier, token)
    if token == caller.token:
        response = back("/login", "Your session's token was revoked.")
        clear_session(response)
        return response
    return back("/profile", "Token revoked.")


async def _create_token(request: Request, user: str, template: str, path: str) -> Response:
    form = await form_of(request)
    services = services_of(request)
    description = text(form, "description", required=False)
    scopes = [s for s in form.getlist("scopes") if isinstance(s, str)] or None
    projects = text(form, "projects", required=False).replace(",", " ").split() or None
    try:
        token, secret = await services.users.create_token(
            user,
            description or None,
            None,
            scopes=scopes,
            projects=projects,
            creator=request.state.caller.access,
        )
    except InvalidInput as exc:
        return back(path, error=str(exc))
    found = await services.users.get_user(user)
    tokens, _ = await services.users.list_tokens(user, None, 500)
    caller = request.state.caller
    return render(
        request,
        template,
        user=found,
        tokens=tokens,
        session=caller.token,
        new_token=token,
        new_secret=secret,
        roles=ROLES,
    )


# Workers.


@router.get("/workers")
async def workers(request: Request, cursor: Cursor = None) -> Response:
    items, _ = pages = await services_of(request).workers.list_workers(cursor, 100)
    return render(request, "workers.html", workers=items, pages=pages)


@router.get("/workers/{worker}")
async def worker_page(request: Request, worker: str, cursor: Cursor = None) -> Response:
    services = services_of(request)
    found = await services.workers.get_worker(worker)
    pages: Listing[Run] = Listing([], None)
    if allowed(request.state.caller.user.roles, Action.RUN_READ):
        pages = await services.runs.list_runs(None, worker=worker, cursor=cursor, limit=25)
    return render(request, "worker.html", worker=found, runs=pages.items, pages=pages)


@router.post("/workers/{worker}/state")
async def worker_state(request: Request, worker: str) -> Response:
    form = await form_of(request)
    enabled = form.get("is_enabled") == "true"
    await services_of(request).workers.update_worker(worker, {"is_enabled": enabled})
    return back(f"/workers/{worker}", f"Worker {'enabled' if enabled else 'disabled'}.")


@router.post("/workers/{worker}/approval")
async def worker_approval(request: Request, worker: str) -> Response:
    form = await form_of(request)
    approved = form.get("is_approved") == "true"
    await services_of(request).workers.update_worker(worker, {"is_approved": approved})
    return back(
        f"/workers/{worker}", "Worker approved." if approved else "Worker's approval withdrawn."
    )


@router.post("/workers/{worker}/disconnect")
async def worker_disconnect(request: Request, worker: str) -> Response:
    await services_of(request).workers.disconnect(worker)
    return back(f"/workers/{worker}", "Disconnect requested.")


# The audit log (auditors and administrators).


@router.get("/audit")
async def audit(
    request: Request,
    cursor: Cursor = None,
    actor: Annotated[str | None, Query(max_length=100)] = None,
) -> Response:
    try:
        events, _ = pages = await services_of(request).audit.list_events(
            actor=actor or None, cursor=cursor, limit=100
        )
    except InvalidInput as exc:
        return back("/audit", error=str(exc))
    return render(request, "audit.html", events=events, pages=pages, actor=actor)


# Users (administrators; auditors read).


@router.get("/users")
async def users(request: Request, cursor: Cursor = None) -> Response:
    items, _ = pages = await services_of(request).users.list_users(cursor, 100)
    return render(request, "users.html", users=items, pages=pages, roles=ROLES)


@router.post("/users")
async def create_user(request: Request) -> Response:
    form = await form_of(request)
    roles = [r for r in form.getlist("roles") if isinstance(r, str)]
    try:
        user = await services_of(request).users.create_user(
            text(form, "identifier"),
            display_name=text(form, "display_name", required=False) or None,
            roles=roles,
            password=text(form, "password", required=False) or None,
        )
    except (InvalidInput, Conflict) as exc:
        return back("/users", error=str(exc))
    return back(f"/users/{user.identifier}", "User created.")


@router.get("/users/{user}")
async def user_page(request: Request, user: str) -> Response:
    services = services_of(request)
    found = await services.users.get_user(user)
    tokens, _ = await services.users.list_tokens(user, None, 500)
    return render(request, "user.html", user=found, tokens=tokens, roles=ROLES, session=None)


@router.post("/users/{user}")
async def update_user(request: Request, user: str) -> Response:
    form = await form_of(request)
    groups = [g.strip() for g in text(form, "groups", required=False).splitlines() if g.strip()]
    changes: dict[str, object] = {
        "display_name": text(form, "display_name"),
        "roles": [r for r in form.getlist("roles") if isinstance(r, str)],
        "is_enabled": form.get("is_enabled") == "true",
        "groups": groups,
    }
    password = text(form, "password", required=False)
    if password:
        changes["password"] = password
    try:
        await services_of(request).users.update_user(
            user,
            changes,
            revoke_tokens=form.get("revoke_tokens") == "true",
            keep_token=request.state.caller.token,
        )
    except InvalidInput as exc:
        return back(f"/users/{user}", error=str(exc))
    return back(f"/users/{user}", "User saved.")


@router.post("/users/{user}/tokens")
async def create_user_token(request: Request, user: str) -> Response:
    return await _create_token(request, user, "user.html", f"/users/{user}")


@router.post("/users/{user}/tokens/{token}/revoke")
async def revoke_user_token(request: Request, user: str, token: str) -> Response:
    await services_of(request).users.revoke_token(user, token)
    return back(f"/users/{user}", "Token revoked.")
