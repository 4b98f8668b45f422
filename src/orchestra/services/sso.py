"""Single sign-on on the website: a login through the configured OpenID provider, from the
redirect to it to a session here.

The flow's state, nonce, PKCE verifier and destination travel in a sealed value (encrypted and
authenticated with the instance key, bound to its purpose, expiring after FLOW_SECONDS) that the
website keeps in a short-lived HttpOnly cookie: the provider's answer may come back to another
API server of the instance, and none keeps it in memory.

A user is matched by the provider's (issuer, subject), never by identifier: the first login
creates the user (identifier from the configured claim); a local user, or another provider's,
of the same identifier is never taken over. At each login, the user's groups are set from the
groups claim and the roles the group mapping governs follow the groups; other roles, given by
hand, stay.
"""

from __future__ import annotations

import json
import logging
import secrets
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from orchestra.clock import Clock
from orchestra.domain.access import MAX_GROUPS, check_group_name
from orchestra.domain.identifiers import check_text, is_identifier
from orchestra.domain.models import Token, User
from orchestra.errors import Conflict, InvalidInput, OrchestraError
from orchestra.oidc_settings import OidcSettings
from orchestra.services.keyring import Keyring, KeyringError
from orchestra.services.oidc import OidcClient, SignInInvalid
from orchestra.services.users import UserService
from orchestra.services.worker_registry import LOCAL_WORKER_USER
from orchestra.storage import records
from orchestra.storage.engine import Database
from orchestra.storage.schema import user as user_table

log = logging.getLogger(__name__)
# Identifiers single sign-on never gives a user.
RESERVED_IDENTIFIERS = frozenset({LOCAL_WORKER_USER})

FLOW_SECONDS = 600
FLOW_CONTEXT = "sso:flow"
CALLBACK_PATH = "/login/sso/callback"


class SignInRefused(OrchestraError):
    """This sign-in is not accepted here."""

    status_code = 403


@dataclass(frozen=True)
class Flow:
    """A started sign-in: what comes back from the provider must match it."""

    state: str
    nonce: str
    verifier: str
    next: str
    expires: float


class SsoService:
    def __init__(
        self,
        db: Database,
        clock: Clock,
        settings: OidcSettings,
        keyring: Keyring,
        users: UserService,
        public_url: str,
    ) -> None:
        self.db = db
        self.clock = clock
        self.settings = settings
        self.keyring = keyring
        self.users = users
        self.redirect_uri = public_url.rstrip("/") + CALLBACK_PATH
        self.client = OidcClient(settings)

    @property
    def name(self) -> str:
        return self.settings.name

    # The flow.

    async def begin(self, next_path: str) -> tuple[str, str]:
        """The provider's URL to send the browser to, and the sealed flow to keep meanwhile."""
        flow = Flow(
            state=secrets.token_urlsafe(32),
            nonce=secrets.token_urlsafe(32),
            verifier=secrets.token_urlsafe(64),  # 86 characters, within PKCE's 43 to 128
            next=next_path,
            expires=self.clock.now().timestamp() + FLOW_SECONDS,
        )
        url = await self.client.authorization_url(
            self.redirect_uri, flow.state, flow.nonce, flow.verifier
        )
        return url, self.seal(flow)

    def seal(self, flow: Flow) -> str:
        return self.keyring.encrypt(json.dumps(flow.__dict__), FLOW_CONTEXT)

    def unseal(self, sealed: str | None) -> Flow:
        if not sealed:
            raise SignInInvalid(
                "this sign-in was not started from this browser, or took too long: "
                "start again from the login page"
            )
        try:
            flow = Flow(**json.loads(self.keyring.decrypt(sealed, FLOW_CONTEXT)))
        except (KeyringError, ValueError, TypeError):
            raise SignInInvalid(
                "this sign-in's state is damaged: start again from the login page"
            ) from None
        if flow.expires < self.clock.now().timestamp():
            raise SignInInvalid("this sign-in took too long: start again from the login page")
        return flow

    async def finish(
        self, sealed: str | None, state: str, code: str, issuer: str = ""
    ) -> tuple[User, Token, str, str]:
        """Check the provider's answer against the flow, exchange the code, check the ID
        token, provision the user and open a session: (user, session, its secret, next).
        `issuer` is the answer's `iss` parameter (RFC 9207), when the provider sends one."""
        flow = self.unseal(sealed)
        if not state or not secrets.compare_digest(state.encode(), flow.state.encode()):
            raise SignInInvalid("the sign-in's state does not match: start again")
        if issuer and issuer.rstrip("/") != self.settings.issuer:
            raise SignInInvalid(f"the answer comes from another issuer ({issuer!r})")
        if not code:
            raise SignInInvalid("the provider's answer has no authorization code")
        tokens = await self.client.exchange(code, flow.verifier, self.redirect_uri)
        claims = await self.client.verify_id_token(tokens["id_token"], flow.nonce)
        claims = await self._complete(claims, tokens.get("access_token"))
        user = await self.provision(claims)
        token, secret = await self.users.open_session(user.identifier)
        return user, token, secret, flow.next

    async def _complete(self, claims: dict[str, Any], access_token: object) -> dict[str, Any]:
        """The ID token's claims, with the identifier and groups claims from userinfo when the
        ID token lacks them (and userinfo speaks of the same subject)."""
        wanted = (self.settings.user_claim, self.settings.groups_claim)
        if all(name in claims for name in wanted) or not isinstance(access_token, str):
            return claims
        extra = await self.client.userinfo(access_token)
        if extra.get("sub") != claims["sub"]:
            return claims
        return {**{k: v for k, v in extra.items() if k in wanted}, **claims}

    # Users.

    def identifier_of(self, claims: dict[str, Any]) -> str:
        claim = self.settings.user_claim
        value = claims.get(claim)
        if value is None and claim == "preferred_username":
            value = claims.get("sub")
        if not is_identifier(value):
            raise SignInRefused(
                f"your sign-in's {claim!r} ({value!r}) cannot be a user identifier here "
                "(letters, digits, '.', '_', '-'; at most 100 characters): ask an administrator"
            )
        assert isinstance(value, str)
        if value in RESERVED_IDENTIFIERS:
            # The local workers' account is approved without an administrator (worker
            # approval): no one signs in as it.
            raise SignInRefused(
                f"your sign-in's {claim!r} ({value!r}) is reserved here: ask an administrator"
            )
        return value

    def groups_of(self, claims: dict[str, Any]) -> list[str]:
        value = claims.get(self.settings.groups_claim)
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list):
            return []
        groups: list[str] = []
        for name in value:
            try:
                name = check_group_name(name)
            except InvalidInput:
                log.warning("single sign-on: group %r ignored (not a group name)", name)
                continue
            if name not in groups:
                groups.append(name)
        if len(groups) > MAX_GROUPS:
            log.warning(
                "single sign-on: %d groups, only the first %d kept", len(groups), MAX_GROUPS
            )
        return groups[:MAX_GROUPS]

    def roles_of(self, current: list[str], groups: list[str]) -> list[str]:
        """The roles set by hand (those the mapping never gives), then the mapping's."""
        mapped = self.settings.mapped_roles
        kept = [role for role in current if role not in mapped]
        return kept + [role for role in self.settings.roles_for(groups) if role not in kept]

    async def provision(self, claims: dict[str, Any]) -> User:
        """The user of this (issuer, subject): created at the first login, refreshed after."""
        issuer, subject = self.settings.issuer, str(claims["sub"])
        groups = self.groups_of(claims)
        async with self.db.transaction() as conn:
            query = sa.select(user_table).where(
                user_table.c.sso_issuer == issuer, user_table.c.sso_subject == subject
            )
            row = (await conn.execute(query)).mappings().first()
            if row is not None:
                if not row["is_enabled"]:
                    raise SignInRefused(f"user {row['identifier']!r} is disabled here")
                identifier = row["identifier"]
                values = {"groups": groups, "roles": self.roles_of(list(row["roles"]), groups)}
                await records.update(conn, user_table, {"identifier": identifier}, values)
            else:
                identifier = self.identifier_of(claims)
                if await records.fetch_one(conn, user_table, {"identifier": identifier}):
                    raise SignInRefused(
                        f"a user {identifier!r} already exists here and is not linked to this "
                        "sign-in: ask an administrator"
                    )
                name = claims.get("name")
                try:
                    display_name = check_text(name, "name", max_length=200)
                except InvalidInput:
                    display_name = identifier
                try:
                    await records.insert(
                        conn,
                        user_table,
                        {
                            "identifier": identifier,
                            "display_name": display_name or identifier,
                            "roles": self.roles_of([], groups),
                            "is_enabled": True,
                            "groups": groups,
                            "sso_issuer": issuer,
                            "sso_subject": subject,
                        },
                    )
                except Conflict:
                    raise SignInRefused("this sign-in raced another: try again") from None
                log.info("single sign-on: user %r created (subject %r)", identifier, subject)
            found = await records.fetch_one(conn, user_table, {"identifier": identifier})
        assert found is not None
        self.users.access_changed()
        return User.from_row(found)
