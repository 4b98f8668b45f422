"""/me: the caller's profile, login, logout, password and own tokens."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from orchestra.web.api.schemas import (
    LoginIn,
    LoginOut,
    Page,
    PasswordIn,
    TokenCreated,
    TokenIn,
    TokenOut,
    UserOut,
)
from orchestra.web.deps import CallerDep, Cursor, Limit, ServicesDep
from orchestra.web.permissions import API

router = APIRouter(prefix=API, tags=["me"])


@router.post("/me/login", response_model=LoginOut)
async def login(body: LoginIn, request: Request, services: ServicesDep) -> LoginOut:
    address = request.client.host if request.client else "unknown"
    token, secret = await services.users.login(body.user, body.password, address)
    return LoginOut(user=token.user, token=secret, expiration_date=token.expiration_date)


@router.get("/me", response_model=UserOut)
async def me(caller: CallerDep) -> UserOut:
    return UserOut.model_validate(caller.user)


@router.post("/me/logout", status_code=204)
async def logout(caller: CallerDep, services: ServicesDep) -> Response:
    if caller.token is not None:
        await services.users.revoke_token(caller.user.identifier, caller.token)
    return Response(status_code=204)


@router.post("/me/password", status_code=204)
async def change_password(
    body: PasswordIn, request: Request, caller: CallerDep, services: ServicesDep
) -> Response:
    await services.users.change_password(
        caller.user.identifier,
        body.old_password,
        body.new_password,
        address=request.client.host if request.client else "unknown",
        keep_token=caller.token,
        revoke_tokens=body.revoke_tokens,
    )
    return Response(status_code=204)


@router.get("/me/tokens", response_model=Page[TokenOut])
async def list_tokens(
    caller: CallerDep, services: ServicesDep, cursor: Cursor = None, limit: Limit = 50
) -> Page[TokenOut]:
    tokens, _ = found = await services.users.list_tokens(caller.user.identifier, cursor, limit)
    return Page(items=[TokenOut.model_validate(t) for t in tokens], **found.cursors())


@router.post("/me/tokens", response_model=TokenCreated, status_code=201)
async def create_token(
    caller: CallerDep, services: ServicesDep, body: TokenIn | None = None
) -> TokenCreated:
    body = body or TokenIn()
    token, secret = await services.users.create_token(
        caller.user.identifier,
        body.description,
        body.expiration_date,
        scopes=body.scopes,
        projects=body.projects,
        creator=caller.access,
    )
    return TokenCreated(**TokenOut.model_validate(token).model_dump(), secret=secret)


@router.delete("/me/tokens/{token}", status_code=204)
async def revoke_token(token: str, caller: CallerDep, services: ServicesDep) -> Response:
    await services.users.revoke_token(caller.user.identifier, token)
    return Response(status_code=204)
