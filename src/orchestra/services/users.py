"""Users, their passwords and tokens, logins and authentication."""

from __future__ import annotations

import asyncio
import hmac
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from orchestra.clock import Clock
from orchestra.domain.access import MAX_GROUPS as MAX_GROUPS  # re-exported: services/sso.py
from orchestra.domain.access import (
    Access,
    check_groups,
    check_scopes,
    check_token_projects,
    highest_roles,
)
from orchestra.domain.access import check_group_name as check_group_name
from orchestra.domain.identifiers import check_identifier, check_text
from orchestra.domain.models import Token, User
from orchestra.domain.pages import Listing
from orchestra.domain.permissions import check_roles
from orchestra.errors import Conflict, InvalidInput, NotFound, Unauthenticated
from orchestra.services import credentials
from orchestra.services.events import Events
from orchestra.services.throttle import LoginThrottle
from orchestra.storage import members as member_storage
from orchestra.storage import records
from orchestra.storage.engine import Database
from orchestra.storage.schema import project as project_table
from orchestra.storage.schema import user as user_table
from orchestra.storage.schema import user_authentication as auth_table

PASSWORD = "password"
TOKEN = "token"
LOGIN_TOKEN_LIFETIME = timedelta(hours=12)
DEFAULT_TOKEN_LIFETIME = timedelta(days=365)
MAX_TOKEN_LIFETIME = timedelta(days=3650)
LAST_USED_PRECISION = timedelta(minutes=1)
# How long a token's lookup is trusted: a revocation or a disabled user made through another
# process is honoured within this (the promise is 5 seconds, on every API server).
AUTH_CACHE_SECONDS = 2.0
AUTH_CACHE_SIZE = 10_000
USER_FIELDS = frozenset({"display_name", "roles", "is_enabled", "password", "groups"})


@dataclass(frozen=True)
class Caller:
    """Who is making a request: the user, the token they used (None for a session), and
    what they may do (their roles, memberships, and the token's scopes and projects)."""

    user: User
    token: str | None
    access: Access


@dataclass(frozen=True)
class _Authenticated:
    """A token as the database described it, and when (time.monotonic()) it was read."""

    caller: Caller
    expiration_date: datetime | None
    loaded: float


class UserService:
    def __init__(
        self,
        db: Database,
        clock: Clock,
        throttle: LoginThrottle | None = None,
        events: Events | None = None,
        local_login: str = "all",
    ) -> None:
        self.db = db
        self.clock = clock
        self.throttle = throttle or LoginThrottle(db, clock)
        self.events = events
        # Who may log in with a password: "all", or "administrators" (with single sign-on).
        self.local_login = local_login
        self._auth_cache: dict[str, _Authenticated] = {}

    # Users.

    async def create_user(
        self,
        identifier: str,
        *,
        display_name: str | None = None,
        roles: list[str] | None = None,
        password: str | None = None,
        is_enabled: bool = True,
    ) -> User:
        identifier = check_identifier(identifier, "user identifier")
        values = {
            "identifier": identifier,
            "display_name": check_text(display_name or identifier, "display_name"),
            "roles": check_roles(roles or []),
            "is_enabled": is_enabled,
        }
        hashed = None
        if password is not None:
            credentials.check_password_strength(password, (identifier, display_name or ""))
            hashed = await asyncio.to_thread(credentials.hash_password, password)
        async with self.db.transaction() as conn:
            if await records.fetch_one(conn, user_table, {"identifier": identifier}):
                raise Conflict(f"user {identifier!r} already exists")
            await records.insert(conn, user_table, values)
            if hashed is not None:
                await self._store_password(conn, identifier, hashed)
            return await self._user(conn, identifier)

    async def list_users(self, cursor: str | None, limit: int | None) -> Listing[User]:
        async with self.db.read() as conn:
            found = await records.page(
                conn, sa.select(user_table), [user_table.c.identifier], cursor, limit
            )
        return found.map(User.from_row)

    async def get_user(self, identifier: str) -> User:
        async with self.db.read() as conn:
            return await self._user(conn, identifier)

    async def update_user(
        self,
        identifier: str,
        changes: Mapping[str, Any],
        *,
        revoke_tokens: bool = False,
        keep_token: str | None = None,
    ) -> User:
        """Change a user. A new password (a reset) ends every login session of theirs, and
        with `revoke_tokens` every API token too, except `keep_token` (the caller's own)."""
        unknown = sorted(set(changes) - USER_FIELDS)
        if unknown:
            raise InvalidInput(f"unknown fields: {', '.join(unknown)}")
        values: dict[str, Any] = {}
        if changes.get("display_name") is not None:
            values["display_name"] = check_text(changes["display_name"], "display_name")
        if changes.get("roles") is not None:
            if not isinstance(changes["roles"], list):
                raise InvalidInput("roles must be a list")
            values["roles"] = check_roles(changes["roles"])
        if changes.get("is_enabled") is not None:
            if not isinstance(changes["is_enabled"], bool):
                raise InvalidInput("is_enabled must be true or false")
            values["is_enabled"] = changes["is_enabled"]
        if changes.get("groups") is not None:
            values["groups"] = check_groups(changes["groups"])
        hashed = None
        if changes.get("password") is not None:
            known = (identifier, str(changes.get("display_name") or ""))
            password = credentials.check_password_strength(changes["password"], known)
            hashed = await asyncio.to_thread(credentials.hash_password, password)
        async with self.db.transaction() as conn:
            await self._user(conn, identifier)
            await records.update(conn, user_table, {"identifier": identifier}, values)
            if hashed is not None:
                await self._store_password(conn, identifier, hashed)
                await _end_sessions(conn, identifier, revoke_tokens, keep_token)
            user = await self._user(conn, identifier)
        self._credentials_changed()
        return user

    async def delete_user(self, identifier: str) -> None:
        async with self.db.transaction() as conn:
            if not await records.delete(conn, user_table, {"identifier": identifier}):
                raise NotFound(f"no user {identifier!r}")
            await member_storage.delete_user_memberships(conn, identifier)
        self._credentials_changed()

    def access_changed(self) -> None:
        """Someone's rights changed elsewhere (a project member): forget cached lookups."""
        self._credentials_changed()

    def _credentials_changed(self) -> None:
        """Masters re-check the credentials of open worker connections at once; this
        process's cached authentications are dropped."""
        self._auth_cache.clear()
        if self.events is not None:
            self.events.publish("control")

    async def _user(self, conn: AsyncConnection, identifier: str) -> User:
        row = await records.fetch_one(conn, user_table, {"identifier": identifier})
        if row is None:
            raise NotFound(f"no user {identifier!r}")
        return User.from_row(row)

    # Passwords.

    async def _store_password(
        self, conn: AsyncConnection, identifier: str, hashed: credentials.HashedSecret
    ) -> None:
        await conn.execute(
            auth_table.delete().where(
                auth_table.c.user == identifier, auth_table.c.type == PASSWORD
            )
        )
        await records.insert(
            conn,
            auth_table,
            {
                "identifier": str(uuid.uuid4()),
                "user": identifier,
                "type": PASSWORD,
                "description": "password",
                **_hashed_columns(hashed),
                "expiration_date": None,
            },
        )

    async def _password_row(self, identifier: str) -> sa.RowMapping | None:
        async with self.db.read() as conn:
            query = sa.select(auth_table).where(
                auth_table.c.user == identifier, auth_table.c.type == PASSWORD
            )
            return (await conn.execute(query)).mappings().first()

    async def check_password(self, identifier: str, password: str) -> User | None:
        """The enabled user if the password is right, else None, in about the same time."""
        row = await self._password_row(identifier)
        if row is None:
            await asyncio.to_thread(credentials.burn_password_time, password)
            return None
        stored = _stored(row)
        if not await asyncio.to_thread(credentials.verify_password, password, stored):
            return None
        if credentials.needs_rehash(stored):
            rehashed = await asyncio.to_thread(credentials.hash_password, password)
            async with self.db.transaction() as conn:
                await self._store_password(conn, identifier, rehashed)
        async with self.db.read() as conn:
            user = await self._user(conn, identifier)
        return user if user.is_enabled else None

    async def login(self, identifier: str, password: str, address: str) -> tuple[Token, str]:
        """Check the password (throttled per user and address) and open a session token."""
        if not isinstance(identifier, str) or not isinstance(password, str):
            raise InvalidInput("user and password must be strings")
        attempt = await self.throttle.begin(identifier, address)
        user = await self.check_password(identifier, password)
        if user is None:
            raise Unauthenticated("wrong user or password")  # the attempt stays a failure
        if self.local_login == "administrators" and "administrator" not in user.roles:
            raise Unauthenticated(
                "password login is kept for administrators here: sign in with single sign-on"
            )  # the attempt stays a failure too
        await self.throttle.succeeded(attempt)
        return await self.open_session(user.identifier)

    async def open_session(self, identifier: str) -> tuple[Token, str]:
        """A login session (the website's cookie, `POST /me/login`): a token marked
        `is_session`, which lasts LOGIN_TOKEN_LIFETIME and ends when the password changes."""
        expiration = self.clock.now() + LOGIN_TOKEN_LIFETIME
        return await self.create_token(identifier, "login", expiration, is_session=True)

    async def change_password(
        self,
        identifier: str,
        old_password: str,
        new_password: str,
        *,
        address: str,
        keep_token: str | None = None,
        revoke_tokens: bool = False,
    ) -> int:
        """Change one's own password. Wrong old passwords count as failed logins (the login
        throttle, per user and `address`). Every other login session of the user ends, and
        with `revoke_tokens` every API token too, except `keep_token` (the credential the
        change is made with); the number of sessions and tokens ended."""
        if not isinstance(old_password, str) or not isinstance(new_password, str):
            raise InvalidInput("old_password and new_password must be strings")
        user = await self.get_user(identifier)
        credentials.check_password_strength(new_password, (identifier, user.display_name))
        attempt = await self.throttle.begin(identifier, address)
        if await self.check_password(identifier, old_password) is None:
            raise InvalidInput("the old password is wrong")  # the attempt stays a failure
        await self.throttle.succeeded(attempt)
        hashed = await asyncio.to_thread(credentials.hash_password, new_password)
        async with self.db.transaction() as conn:
            await self._store_password(conn, identifier, hashed)
            ended = await _end_sessions(conn, identifier, revoke_tokens, keep_token)
        self._credentials_changed()
        return ended

    # Tokens.

    async def create_token(
        self,
        identifier: str,
        description: str | None,
        expiration_date: datetime | None,
        *,
        scopes: list[str] | None = None,
        projects: list[str] | None = None,
        creator: Access | None = None,
        is_session: bool = False,
    ) -> tuple[Token, str]:
        """A new token; its secret is returned here and never again. `scopes` and `projects`
        narrow it (None: all its user's rights); a `creator` limited to projects may only make
        tokens limited to some of them, and names only projects it may read."""
        scopes = check_scopes(scopes)
        projects = check_token_projects(projects, creator)
        now = self.clock.now()
        if expiration_date is None:
            expiration_date = now + DEFAULT_TOKEN_LIFETIME
        if expiration_date.tzinfo is None:
            raise InvalidInput("expiration_date must have a time zone (Z or +00:00)")
        if not now < expiration_date <= now + MAX_TOKEN_LIFETIME:
            raise InvalidInput("expiration_date must be in the future, within ten years")
        secret = credentials.new_token_secret()
        token_id = str(uuid.uuid4())
        async with self.db.transaction() as conn:
            await self._user(conn, identifier)
            if projects:
                await _projects_exist(conn, projects)
            await records.insert(
                conn,
                auth_table,
                {
                    "identifier": token_id,
                    "user": identifier,
                    "type": TOKEN,
                    "description": check_text(description or "", "description", max_length=1000),
                    **_hashed_columns(credentials.hash_token(secret)),
                    "expiration_date": expiration_date,
                    "scopes": scopes,
                    "projects": projects,
                    "is_session": is_session,
                },
            )
            row = await records.fetch_one(conn, auth_table, {"identifier": token_id})
        assert row is not None
        return Token.from_row(row), secret

    async def list_tokens(
        self, identifier: str, cursor: str | None, limit: int | None
    ) -> Listing[Token]:
        async with self.db.read() as conn:
            await self._user(conn, identifier)
            query = sa.select(auth_table).where(  # API tokens: login sessions are not listed
                auth_table.c.user == identifier,
                auth_table.c.type == TOKEN,
                auth_table.c.is_session.is_(False),
            )
            found = await records.page(conn, query, [auth_table.c.identifier], cursor, limit)
        return found.map(Token.from_row)

    async def revoke_token(self, identifier: str, token_id: str) -> None:
        async with self.db.transaction() as conn:
            result = await conn.execute(
                auth_table.delete().where(
                    auth_table.c.identifier == token_id,
                    auth_table.c.user == identifier,
                    auth_table.c.type == TOKEN,
                )
            )
            if result.rowcount != 1:
                raise NotFound(f"no token {token_id!r} for user {identifier!r}")
        self._credentials_changed()

    async def authenticate(self, secret: str, user: str | None = None) -> Caller | None:
        """The caller a token belongs to, or None when the token is unknown, expired, belongs
        to another user than `user` (HTTP Basic) or to a disabled user.

        What the database said about a token is kept AUTH_CACHE_SECONDS (every request
        authenticates; most come in bursts with the same token). A revocation, a disabled
        user or a role change made here clears it at once; one made through another process
        is seen within AUTH_CACHE_SECONDS. Expiry is checked at every use."""
        if not secret.startswith(credentials.TOKEN_PREFIX) or len(secret) > 200:
            return None
        digest = credentials.token_digest(secret)
        now = self.clock.now()
        found = self._auth_cache.get(digest)
        if found is None or time.monotonic() - found.loaded >= AUTH_CACHE_SECONDS:
            found = await self._load_token(digest, now)
            if found is None:
                self._auth_cache.pop(digest, None)
                return None
        if found.expiration_date is not None and found.expiration_date <= now:
            return None
        if not found.caller.user.is_enabled or (
            user is not None and found.caller.user.identifier != user
        ):
            return None
        return found.caller

    async def _load_token(self, digest: str, now: datetime) -> _Authenticated | None:
        user_columns = [c.label(f"user_{c.name}") for c in user_table.c]
        async with self.db.read() as conn:
            query = (
                sa.select(auth_table, *user_columns)
                .join(user_table, user_table.c.identifier == auth_table.c.user)
                .where(auth_table.c.secret == digest, auth_table.c.type == TOKEN)
            )
            row = (await conn.execute(query)).mappings().first()
            if row is None or not hmac.compare_digest(row["secret"], digest):
                return None
            groups = list(row["user_groups"] or [])
            joined = await member_storage.memberships(conn, row["user"], groups)
        last_used = row["last_used_date"]
        if last_used is None or now - last_used > LAST_USED_PRECISION:
            async with self.db.transaction() as conn:
                await conn.execute(
                    auth_table.update()
                    .where(auth_table.c.identifier == row["identifier"])
                    .values(last_used_date=now)
                )
        found_user = User.from_row({c.name: row[f"user_{c.name}"] for c in user_table.c})
        access = Access.build(
            found_user.roles, highest_roles(joined), row["scopes"], row["projects"]
        )
        found = _Authenticated(
            Caller(user=found_user, token=row["identifier"], access=access),
            row["expiration_date"],
            time.monotonic(),
        )
        if len(self._auth_cache) >= AUTH_CACHE_SIZE:
            self._auth_cache.clear()
        self._auth_cache[digest] = found
        return found


async def _end_sessions(
    conn: AsyncConnection, identifier: str, tokens_too: bool, keep: str | None
) -> int:
    """Delete the user's login sessions (and API tokens when `tokens_too`), except `keep`."""
    query = auth_table.delete().where(auth_table.c.user == identifier, auth_table.c.type == TOKEN)
    if not tokens_too:
        query = query.where(auth_table.c.is_session.is_(True))
    if keep is not None:
        query = query.where(auth_table.c.identifier != keep)
    return int((await conn.execute(query)).rowcount)


async def still_allowed(db: Database, tokens: Iterable[str], role: str, now: datetime) -> set[str]:
    """Those of these token identifiers that are still valid (not revoked, not expired) and
    whose user is enabled and still has `role`: open connections are held to this too."""
    identifiers = list(tokens)
    if not identifiers:
        return set()
    async with db.read() as conn:
        query = (
            sa.select(auth_table.c.identifier, auth_table.c.expiration_date, user_table.c.roles)
            .join(user_table, user_table.c.identifier == auth_table.c.user)
            .where(auth_table.c.identifier.in_(identifiers), user_table.c.is_enabled.is_(True))
        )
        rows = list(await conn.execute(query))
    return {
        r.identifier
        for r in rows
        if (r.expiration_date is None or r.expiration_date > now) and role in r.roles
    }


async def _projects_exist(conn: AsyncConnection, projects: list[str]) -> None:
    query = sa.select(project_table.c.identifier).where(project_table.c.identifier.in_(projects))
    found = set((await conn.execute(query)).scalars())
    for project in projects:
        if project not in found:
            raise InvalidInput(f"no project {project!r}")


def _hashed_columns(hashed: credentials.HashedSecret) -> dict[str, Any]:
    return {
        "hash_function": hashed.hash_function,
        "hash_function_parameters": hashed.hash_function_parameters,
        "hash_function_salt": hashed.hash_function_salt,
        "secret": hashed.secret,
    }


def _stored(row: sa.RowMapping) -> credentials.HashedSecret:
    return credentials.HashedSecret(
        row["hash_function"],
        dict(row["hash_function_parameters"]),
        row["hash_function_salt"],
        row["secret"],
    )
