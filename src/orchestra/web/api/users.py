"""/users: administrators manage users and their tokens; auditors read them."""

from __future__ import annotations

from fastapi import APIRouter, Response

from orchestra.web.api.schemas import (
    Page,
    TokenCreated,
    TokenIn,
    TokenOut,
    UserIn,
    UserOut,
    UserPatch,
)
from orchestra.web.deps import CallerDep, Cursor, Limit, ServicesDep
from orchestra.web.permissions import API

router = APIRouter(prefix=API, tags=["users"])


@router.get("/users", response_model=Page[UserOut])
async def list_users(
    services: ServicesDep, cursor: Cursor = None, limit: Limit = 50
) -> Page[UserOut]:
    users, _ = found = await services.users.list_users(cursor, limit)
    return Page(items=[UserOut.model_validate(u) for u in users], **found.cursors())


@router.post("/users", response_model=UserOut, status_code=201)
async def create_user(body: UserIn, services: ServicesDep) -> UserOut:
    user = await services.users.create_user(
        body.identifier,
        display_name=body.display_name,
        roles=body.roles,
        password=body.password,
        is_enabled=body.is_enabled,
    )
    return UserOut.model_validate(user)


@router.get("/users/{user}", response_model=UserOut)
async def get_user(user: str, services: ServicesDep) -> UserOut:
    return UserOut.model_validate(await services.users.get_user(user))


@router.patch("/users/{user}", response_model=UserOut)
async def update_user(
    user: str, body: UserPatch, caller: CallerDep, services: ServicesDep
) -> UserOut:
    changes = body.changes()
    revoke_tokens = bool(changes.pop("revoke_tokens", False))
    updated = await services.users.update_user(
        user, changes, revoke_tokens=revoke_tokens, keep_token=caller.token
    )
    return UserOut.model_validate(updated)


@router.delete("/users/{user}", status_code=204)
async def delete_user(user: str, services: ServicesDep) -> Response:
    await services.users.delete_user(user)
    return Response(status_code=204)


@router.get("/users/{user}/tokens", response_model=Page[TokenOut])
async def list_user_tokens(
    user: str, services: ServicesDep, cursor: Cursor = None, limit: Limit = 50
) -> Page[TokenOut]:
    tokens, _ = found = await services.users.list_tokens(user, cursor, limit)
    return Page(items=[TokenOut.model_validate(t) for t in tokens], **found.cursors())


@router.post("/users/{user}/tokens", response_model=TokenCreated, status_code=201)
async def create_user_token(
    user: str, caller: CallerDep, services: ServicesDep, body: TokenIn | None = None
) -> TokenCreated:
    body = body or TokenIn()
    token, secret = await services.users.create_token(
        user,
        body.description,
        body.expiration_date,
        scopes=body.scopes,
        projects=body.projects,
        creator=caller.access,
    )
    return TokenCreated(**TokenOut.model_validate(token).model_dump(), secret=secret)


@router.delete("/users/{user}/tokens/{token}", status_code=204)
async def revoke_user_token(user: str, token: str, services: ServicesDep) -> Response:
    await services.users.revoke_token(user, token)
    return Response(status_code=204)
